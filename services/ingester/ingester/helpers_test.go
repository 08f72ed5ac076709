package ingester

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

// env is one embedded JetStream server and a connection to it.
type env struct {
	t   testing.TB
	srv *jstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := jstest.Start(t)
	nc := srv.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, nc: nc, js: js}
}

// config is a Config for a test: defaults, no progress output.
func (e *env) config(dataset, source string) Config {
	return Config{Dataset: dataset, Source: source, Progress: "off", PublishGiveUp: 30 * time.Second, WaitTimeout: 30 * time.Second}
}

type outcome struct {
	res    Result
	err    error
	stdout string
	stderr string
}

func (e *env) run(ctx context.Context, cfg Config) outcome {
	e.t.Helper()
	var stdout, stderr syncBuffer
	log := slog.New(slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	res, err := Run(ctx, cfg, e.nc, log, &stdout, &stderr)
	return outcome{res: res, err: err, stdout: stdout.String(), stderr: stderr.String()}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// msg is one stored message of a dataset's subject.
type msg struct {
	Seq   uint64
	Env   schema.Envelope
	MsgID string // Nats-Msg-Id, which rowpipe never sets
	Body  []byte
}

// messages returns every message stored on rows.<dataset>, in stream order.
func (e *env) messages(dataset string) []msg {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, schema.DefaultStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []msg
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.Subject(dataset)}})
	if err != nil {
		e.t.Fatal(err)
	}
	last := info.State.LastSeq
	for {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				e.t.Fatal(err)
			}
			env, err := schema.ParseEnvelope(m.Headers())
			if err != nil {
				e.t.Fatalf("seq %d: %v", md.Sequence.Stream, err)
			}
			out = append(out, msg{Seq: md.Sequence.Stream, Env: env, MsgID: m.Headers().Get(jetstream.MsgIDHeader), Body: m.Data()})
			if md.Sequence.Stream >= last {
				return out
			}
		}
		if batch.Error() != nil {
			e.t.Fatal(batch.Error())
		}
		if n == 0 {
			return out
		}
	}
}

// putState stores a dataset state as the writer would.
func (e *env) putState(st schema.DatasetState) {
	e.t.Helper()
	ctx := context.Background()
	kv, err := schema.EnsureStateBucket(ctx, e.js, schema.StreamOptions{Name: schema.DefaultStream, Replicas: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := kv.Put(ctx, st.Dataset, schema.EncodeState(st)); err != nil {
		e.t.Fatal(err)
	}
}

// ensureStream creates the stream as the ingester does.
func (e *env) ensureStream() jetstream.Stream {
	e.t.Helper()
	s, err := schema.EnsureStream(context.Background(), e.js, schema.StreamOptions{Name: schema.DefaultStream, Replicas: 1, MaxBytes: schema.DefaultStreamMaxBytes})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// encodeRows is what the row messages of records must hold: schema's
// encoding of each record under the header's unique fields.
func encodeRows(t testing.TB, header []string, records [][]string) [][]byte {
	t.Helper()
	fields, _ := schema.UniqueFields(header)
	enc, err := schema.NewRecordEncoder(fields)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, r := range records {
		b, err := enc.Append(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// applied is what the writer makes of one sync (see applyLikeWriter).
type applied struct {
	Begin    schema.Begin
	BeginSeq uint64
	Rows     [][]byte
	Rejects  []schema.Reject
	End      *schema.End
	Abort    *schema.Abort
	Failed   string // a gap or a count mismatch: the writer would fail it
}

// applyLikeWriter replays messages the way the design says the writer
// does: a begin opens a sync (the same sync id again resumes it), rows
// whose index is <= the count so far are duplicates and skipped, a row
// index beyond count+1 is a gap that fails the sync, end checks the count.
func applyLikeWriter(t testing.TB, msgs []msg) map[string]*applied {
	t.Helper()
	syncs := map[string]*applied{}
	for _, m := range msgs {
		a := syncs[m.Env.Sync]
		switch m.Env.Event {
		case schema.EventBegin:
			if a == nil {
				a = &applied{BeginSeq: m.Seq}
				syncs[m.Env.Sync] = a
				if err := json.Unmarshal(m.Body, &a.Begin); err != nil {
					t.Fatalf("begin body: %v", err)
				}
			}
			continue
		}
		if a == nil {
			t.Fatalf("seq %d: %s of sync %s before its begin", m.Seq, m.Env.Event, m.Env.Sync)
		}
		if a.Failed != "" && m.Env.Event != schema.EventAbort {
			continue // a failed sync only takes its abort
		}
		switch m.Env.Event {
		case schema.EventRow:
			switch n := uint64(len(a.Rows)); {
			case m.Env.Row <= n:
			case m.Env.Row == n+1:
				a.Rows = append(a.Rows, m.Body)
			default:
				a.Failed = fmt.Sprintf("gap: row %d after %d rows (seq %d)", m.Env.Row, n, m.Seq)
			}
		case schema.EventReject:
			var r schema.Reject
			if err := json.Unmarshal(m.Body, &r); err != nil {
				t.Fatalf("reject body: %v", err)
			}
			a.Rejects = append(a.Rejects, r)
		case schema.EventEnd:
			var end schema.End
			if err := json.Unmarshal(m.Body, &end); err != nil {
				t.Fatalf("end body: %v", err)
			}
			a.End = &end
			if end.Rows != uint64(len(a.Rows)) {
				a.Failed = fmt.Sprintf("end says %d rows, %d arrived", end.Rows, len(a.Rows))
			}
		case schema.EventAbort:
			var ab schema.Abort
			if err := json.Unmarshal(m.Body, &ab); err != nil {
				t.Fatalf("abort body: %v", err)
			}
			a.Abort = &ab
		}
	}
	return syncs
}

// fakeWriter plays the writer's part for --wait tests, minimally: it reads
// the dataset's subject and, for each end or abort, publishes the
// DatasetState a writer would (generation = the begin's sequence).
// failWith, if set, makes it report every ended sync as failed.
func (e *env) fakeWriter(ctx context.Context, dataset string, failWith string) {
	e.t.Helper()
	s := e.ensureStream()
	kv, err := schema.EnsureStateBucket(ctx, e.js, schema.StreamOptions{Name: schema.DefaultStream, Replicas: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.Subject(dataset)}})
	if err != nil {
		e.t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		e.t.Fatal(err)
	}
	go func() { <-ctx.Done(); it.Stop() }()
	go func() {
		var st schema.DatasetState
		st.Dataset = dataset
		begins := map[string]schema.Begin{}
		beginSeq := map[string]uint64{}
		rows := map[string]uint64{}
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			md, _ := m.Metadata()
			env, err := schema.ParseEnvelope(m.Headers())
			if err != nil {
				continue
			}
			switch env.Event {
			case schema.EventBegin:
				var b schema.Begin
				json.Unmarshal(m.Data(), &b)
				if _, ok := begins[env.Sync]; !ok {
					begins[env.Sync], beginSeq[env.Sync] = b, md.Sequence.Stream
				}
				continue
			case schema.EventRow:
				if env.Row == rows[env.Sync]+1 {
					rows[env.Sync]++
				}
				continue
			case schema.EventEnd:
				var end schema.End
				json.Unmarshal(m.Data(), &end)
				gen := beginSeq[env.Sync]
				st.Seq = md.Sequence.Stream
				if failWith != "" {
					st.Last = &schema.SyncOutcome{Sync: env.Sync, Outcome: schema.OutcomeFailed, Reason: failWith}
				} else {
					st.Current = &schema.GenerationState{Generation: gen, Sync: env.Sync, Count: rows[env.Sync],
						Rejected: end.Rejected, SHA256: end.Source.SHA256, UpdatedAt: md.Timestamp}
					st.Last = &schema.SyncOutcome{Sync: env.Sync, Outcome: schema.OutcomeCommitted, Generation: gen,
						Rows: rows[env.Sync], Rejected: end.Rejected}
				}
			case schema.EventAbort:
				var ab schema.Abort
				json.Unmarshal(m.Data(), &ab)
				st.Seq = md.Sequence.Stream
				st.Last = &schema.SyncOutcome{Sync: env.Sync, Outcome: schema.OutcomeAborted, Reason: ab.Code + ": " + ab.Reason}
			default:
				continue
			}
			st.Building = nil
			if _, err := kv.Put(context.Background(), dataset, schema.EncodeState(st)); err != nil && ctx.Err() == nil {
				e.t.Errorf("fake writer: put state: %v", err)
			}
		}
	}()
}

// productsCSV writes a Shopify-like products export of n rows (about 1 KB
// a row as JSON, with quoted multi-line HTML), deterministic.
func productsCSV(n int) string {
	var b strings.Builder
	b.WriteString("Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Published,Option1 Name,Option1 Value," +
		"Variant SKU,Variant Grams,Variant Price,Variant Barcode,Image Src,SEO Title,SEO Description,Status\n")
	adjectives := []string{"Classic", "Organic", "Crème", "Ärmellos", "北欧", "Édition Limitée"}
	nouns := []string{"T-Shirt", "Hoodie", "Mug", "Backpack", "Candle", "Notebook"}
	for i := range n {
		title := adjectives[i%len(adjectives)] + " " + nouns[(i/7)%len(nouns)]
		handle := strings.ToLower(strings.ReplaceAll(title, " ", "-")) + "-" + strconv.Itoa(i/3)
		body := fmt.Sprintf("\"<p>Our %s is made for every day, rain or shine.</p>\n<ul>\n<li>Size: 9\"\" x 12\"\", \"\"fits most\"\"</li>\n"+
			"<li>Care: wash cold, hang dry</li>\n</ul><p>Batch %d — ships in %d days.</p>\"", title, i*7919%99991, 1+i%9)
		fmt.Fprintf(&b, "%s,%s,%s,Maison Dupré,Apparel & Accessories > Clothing > Shirts & Tops,Shirts,\"summer, sale\",true,Size,%s,"+
			"SKU-%08d,%d,%d.%02d,'0850%08d,https://cdn.shopify.com/s/files/1/0000/%04d/products/%s.jpg?v=%d,%s | Maison Dupré,"+
			"\"Buy the %s online. Free shipping over $50, 30-day returns.\",active\n",
			handle, title, body, []string{"S", "M", "L", "XL"}[i%4], i, 100+i%900, 10+i%190, i%100, i, i%10000, handle, 1600000000+i, title, title)
	}
	return b.String()
}

// splitCSV parses a CSV without carriage returns the standard way, to
// build expectations independently of package csvsource.
func splitCSV(t testing.TB, s string) (header []string, records [][]string) {
	t.Helper()
	all, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return all[0], all[1:]
}

// publishRaw publishes one message with schema's headers, synchronously.
func publishRaw(t testing.TB, e *env, dataset string, env schema.Envelope, body []byte) {
	t.Helper()
	m := &nats.Msg{Subject: schema.Subject(dataset), Data: body, Header: nats.Header(env.Headers())}
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// streamMsgs returns how many messages the stream holds.
func streamMsgs(nc *nats.Conn) (uint64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := js.Stream(ctx, schema.DefaultStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}
