package dataset

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
)

// errFault is an I/O failure the fuzz target injects.
var errFault = errors.New("injected I/O fault")

// FuzzMessageSequences feeds the state machine a sequence of messages
// read from the input: arbitrary subjects, headers and bodies (routed as
// the writer routes them), well-formed messages of a few syncs with
// arbitrary row indexes and counts, whole valid syncs, restarts, and I/O
// faults on one message (applied again once the disk is back, as the
// writer retries). After every message: no panic, no error but a refusal
// or the injected fault, and the files decode (CURRENT's generation:
// header, index, records; the state names only files that exist). At the
// end, a valid sync commits.
//
// The seeds run in go test; explore with
// go test -fuzz FuzzMessageSequences ./internal/dataset/.
func FuzzMessageSequences(f *testing.F) {
	f.Add([]byte{0, 3, 0, 2, 4, 1, 9, 2, 3})
	f.Add([]byte{1, 'a', 'b', 2, '{', '}', 6, 0, 5, 8, 0, 4})
	f.Add([]byte{0, 5, 1, 8, 3, 3, 7, 3, 4, 4, 9, 0, 3})
	f.Add([]byte{10, 3, 1, 2, 3, 4, 3, 1, 4, 3, 2, 2, 8, 5, 1})
	f.Add([]byte("\x00\x02\x01{\"version\":1,\"dataset\":\"products\",\"sync\":\"s1\",\"mode\":\"append\",\"fields\":[\"a\"]}\x03\x01\x05\x04\x00"))
	f.Add([]byte{11, 3, 'x', '.', 'y', 12, 200, 1, 0, 5, 2, 9, 5, 0, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 || len(in) > 256 {
			return // long sequences explore nothing short ones do not
		}
		faulty := disk.NewFaulty(disk.OS{})
		r := newRigPolicy(t, faulty, int(in[0]%3)+1, generation.SyncOff)
		defer func() { r.d.Close() }()
		g := &gen{in: in, s: newStream()}
		for i := 0; g.more() && i < 64; i++ {
			g.step(t, r, faulty)
		}
		// A valid sync after any of it commits.
		sync := fmt.Sprintf("z%d", g.s.seq)
		n := uint64(g.byte()%5) + 1
		ms := g.s.sync(sync, schema.ModeReplace, n)
		r.mustApply(ms...)
		checkFiles(t, r.dir)
		cur, _ := readCurrent(disk.OS{}, r.d.cfg.Dir)
		if cur != ms[0].Seq || len(records(t, r.dir)) != int(n) {
			t.Fatalf("after the sequence a valid sync of %d rows did not commit: CURRENT %d (want %d), %d records", n, cur, ms[0].Seq, len(records(t, r.dir)))
		}
	})
}

// gen reads messages from fuzz input.
type gen struct {
	in []byte
	s  *stream
}

func (g *gen) more() bool { return len(g.in) > 0 }

func (g *gen) byte() byte {
	if len(g.in) == 0 {
		return 0
	}
	b := g.in[0]
	g.in = g.in[1:]
	return b
}

// bytes takes a length byte and that many bytes.
func (g *gen) bytes() []byte {
	n := min(int(g.byte()), len(g.in))
	b := g.in[:n]
	g.in = g.in[n:]
	return b
}

// sync is one of a few sync ids, so messages meet the syncs they belong to.
func (g *gen) sync() string { return "s" + strconv.Itoa(int(g.byte()%4)) }

func (g *gen) mode() schema.Mode {
	if g.byte()%2 == 0 {
		return schema.ModeReplace
	}
	return schema.ModeAppend
}

func (g *gen) step(t *testing.T, r *rig, faulty *disk.Faulty) {
	s := g.s
	var m Msg
	switch op := g.byte() % 13; op {
	case 0: // a whole valid sync
		sync := g.sync() + "v" + strconv.Itoa(int(s.seq))
		ms := s.sync(sync, g.mode(), uint64(g.byte()%4))
		for _, m := range ms[:len(ms)-1] {
			g.apply(t, r, m)
		}
		m = ms[len(ms)-1]
	case 1: // a begin of an arbitrary body
		m = s.msg(schema.EventBegin, g.sync(), 0, g.bytes())
	case 2: // a valid begin
		m = s.begin(g.sync(), g.mode())
	case 3: // a valid record, at an arbitrary row index
		sync := g.sync()
		m = s.msg(schema.EventRow, sync, uint64(g.byte()%8)+1, s.record(sync, 1))
	case 4: // a row of an arbitrary body
		m = s.msg(schema.EventRow, g.sync(), uint64(g.byte()%8)+1, g.bytes())
	case 5: // an end of arbitrary counts
		m = s.end(g.sync(), uint64(g.byte()%8), uint64(g.byte()%3))
	case 6: // an end of an arbitrary body
		m = s.msg(schema.EventEnd, g.sync(), 0, g.bytes())
	case 7: // an abort
		m = s.abort(g.sync(), schema.AbortInterrupted)
	case 8: // an abort of an arbitrary body
		m = s.msg(schema.EventAbort, g.sync(), 0, g.bytes())
	case 9: // a reject, valid or not
		if g.byte()%2 == 0 {
			m = s.reject(g.sync(), uint64(g.byte()%8)+1)
		} else {
			m = s.msg(schema.EventReject, g.sync(), uint64(g.byte()%8)+1, g.bytes())
		}
	case 10: // a restart
		r.restart()
		checkFiles(t, r.dir)
		return
	case 11: // arbitrary subject and headers, routed as the writer does
		subject, h := string(g.bytes()), map[string][]string{}
		for range g.byte() % 4 {
			h[string(g.bytes())] = []string{string(g.bytes())}
		}
		if g.byte()%2 == 0 {
			h[schema.HeaderEvent] = []string{[]string{"begin", "row", "reject", "end", "abort"}[g.byte()%5]}
			h[schema.HeaderSync] = []string{g.sync()}
			h[schema.HeaderRow] = []string{strconv.Itoa(int(g.byte() % 8))}
		}
		var ok bool
		if m, ok = route(t, subject, h, g.bytes()); !ok {
			return
		}
		s.seq++
		m.Seq, m.Time = s.seq, epoch.Add(s.seqTime())
	case 12: // a message meets an I/O fault, then is applied again
		sync := g.sync()
		next := []Msg{s.row(sync, uint64(g.byte()%8)+1), s.end(sync, uint64(g.byte()%8), 0), s.begin(sync, g.mode())}[g.byte()%3]
		faulty.Fail(errFault)
		err := r.apply(next)
		faulty.Fail(nil)
		_, refused := schema.RefusalOf(err)
		switch {
		case err == nil || refused:
		case errors.Is(err, errFault):
			checkFiles(t, r.dir)
			g.apply(t, r, next) // the writer's retry
		default:
			t.Fatalf("%s seq %d under a fault: %v", next.Env.Event, next.Seq, err)
		}
		checkFiles(t, r.dir)
		return
	}
	g.apply(t, r, m)
}

// apply applies m: a refusal is fine, nothing else is.
func (g *gen) apply(t *testing.T, r *rig, m Msg) {
	t.Helper()
	if err := r.apply(m); err != nil {
		if _, ok := schema.RefusalOf(err); !ok {
			t.Fatalf("%s seq %d (%.60q): %v", m.Env.Event, m.Seq, m.Body, err)
		}
	}
	checkFiles(t, r.dir)
}

// route is the writer's routing of a message to dataset "products": ok
// is false for one the writer refuses before the dataset or sends to
// another dataset.
func route(t *testing.T, subject string, h map[string][]string, body []byte) (Msg, bool) {
	name, err := schema.DatasetOf(subject)
	if err != nil || name != "products" || schema.CheckEnvelopeSize(subject, h) != nil {
		return Msg{}, false
	}
	env, err := schema.ParseEnvelope(h)
	if err != nil || len(body) > schema.MaxMessageBytes {
		return Msg{}, false
	}
	return Msg{Env: env, Body: body}, true
}
