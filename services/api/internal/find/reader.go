package find

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// batch is how many candidates are read from an index at once.
const batch = 256

// reader reads and tests the records of one request: it owns the only
// record buffer, which grows to the largest record read.
type reader struct {
	g       Gen
	dec     *schema.RecordDecoder
	proj    *schema.RecordEncoder // nil: no projection
	slot    []int                 // field → its position in the projection, -1 if not projected
	vals    []string              // projected values of the record at hand
	want    [][]string            // field → the values the filters under test require
	buf     []byte                // the record at hand
	scratch []byte                // unescaped values
	out     []byte                // the projected record
	recs    []uint64              // candidate record numbers
	emitted int                   // bytes handed to emit
}

func newReader(g Gen, req Request) (*reader, error) {
	var shape *Shape
	if g.Indexes != nil {
		shape = g.Indexes.Shape()
	} else {
		var err error
		if shape, err = NewShape(g.Header.Fields); err != nil {
			return nil, err
		}
	}
	r := readers.Get().(*reader)
	*r = reader{g: g, dec: shape.dec, buf: r.buf[:0], scratch: r.scratch[:0], out: r.out[:0], recs: r.recs[:0]}
	if req.Fields != nil {
		names := make([]string, len(req.Fields))
		r.slot = make([]int, len(g.Header.Fields))
		for i := range r.slot {
			r.slot[i] = -1
		}
		for i, f := range req.Fields {
			names[i], r.slot[f] = g.Header.Fields[f], i
		}
		var err error
		if r.proj, err = schema.NewRecordEncoder(names); err != nil {
			return nil, err
		}
		r.vals = make([]string, len(names))
	}
	return r, nil
}

// readers keep the buffers of finished requests for the next ones.
var readers = sync.Pool{New: func() any { return new(reader) }}

// maxKept is the largest record buffer a reader keeps for the next
// request: records are a few KB, up to 1 MiB.
const maxKept = 64 << 10

// release gives r back once its request is done with it.
func (r *reader) release() {
	if cap(r.buf) > maxKept {
		r.buf = nil
	}
	if cap(r.out) > maxKept {
		r.out = nil
	}
	if cap(r.scratch) > maxKept {
		r.scratch = nil
	}
	r.g, r.want, r.vals, r.slot, r.proj = Gen{}, nil, nil, nil, nil
	readers.Put(r)
}

// candidates are the records a request looks at, in file order: the
// postings of one value of an indexed field, or every record.
type candidates struct {
	field    int
	postings *schema.Postings // nil: every record
	count    uint64           // every record: 0 … count-1
}

func (c candidates) len() uint64 {
	if c.postings != nil {
		return c.postings.Len()
	}
	return c.count
}

// candidates picks the candidates for filters and returns the filters
// left to test on each record.
func (r *reader) candidates(filters []Filter) (candidates, []Filter, error) {
	all := candidates{count: r.g.Header.Count}
	best, bestAt := all, -1
	for i, f := range filters {
		lk := r.g.Indexes.For(f.Field, r.g.Header.Count)
		if lk == nil {
			continue
		}
		p, ok, err := lk.Find([]byte(f.Value))
		if err != nil {
			return best, nil, err
		}
		if !ok {
			p = schema.Postings{} // no record holds it: nothing to read
		}
		if bestAt < 0 || p.Len() < best.len() {
			best, bestAt = candidates{field: f.Field, postings: &p}, i
		}
	}
	var rest []Filter
	for i, f := range filters {
		if i != bestAt {
			rest = append(rest, f)
		}
	}
	return best, rest, nil
}

// read returns up to max candidate record numbers from position pos on.
func (r *reader) read(c candidates, pos uint64, max int) ([]uint64, error) {
	n := min(uint64(max), uint64(batch), c.len()-pos)
	if cap(r.recs) < int(n) {
		r.recs = make([]uint64, n)
	}
	recs := r.recs[:n]
	if c.postings == nil {
		for i := range recs {
			recs[i] = pos + uint64(i)
		}
		return recs, nil
	}
	got, err := c.postings.Read(recs, pos)
	return recs[:got], err
}

// record reads record i (i < Count) without its '\n' into the buffer.
func (r *reader) record(i uint64) ([]byte, error) {
	start, end, err := r.g.Index.Range(i, 1)
	if err != nil {
		return nil, err
	}
	size := end - start
	if size > schema.MaxMessageBytes+1 {
		return nil, fmt.Errorf("%w: record %d is %d bytes", schema.ErrIndexFormat, i, size)
	}
	if int64(cap(r.buf)) < size {
		r.buf = make([]byte, size)
	}
	b := r.buf[:size]
	if _, err := r.g.Data.ReadAt(b, start); err != nil {
		return nil, fmt.Errorf("record %d: %w", i, err)
	}
	if b[size-1] != '\n' {
		return nil, fmt.Errorf("%w: record %d does not end its line", schema.ErrIndexFormat, i)
	}
	return b[:size-1], nil
}

var errNoMatch = errors.New("no match")

// test reports whether the record holds every filter's value.
func (r *reader) test(line []byte, filters []Filter) (bool, error) {
	if len(filters) == 0 {
		return true, nil
	}
	if r.want == nil {
		r.want = make([][]string, len(r.g.Header.Fields))
		for _, f := range filters {
			r.want[f.Field] = append(r.want[f.Field], f.Value)
		}
	}
	var err error
	r.scratch, err = r.dec.Decode(line, r.scratch, func(i int, value []byte) error {
		for _, w := range r.want[i] {
			if string(value) != w {
				return errNoMatch
			}
		}
		return nil
	})
	if errors.Is(err, errNoMatch) {
		return false, nil
	}
	return err == nil, err
}

// more reports whether the page has room for another record.
func (r *reader) more(page Page) bool { return page.MaxBytes <= 0 || r.emitted < page.MaxBytes }

// emit hands the record, projected if asked, to fn.
func (r *reader) emit(line []byte, fn func([]byte) error) error {
	if r.proj == nil {
		r.emitted += len(line)
		return fn(line)
	}
	var err error
	r.scratch, err = r.dec.Decode(line, r.scratch, func(i int, value []byte) error {
		if s := r.slot[i]; s >= 0 {
			r.vals[s] = string(value)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if r.out, err = r.proj.Append(r.out[:0], r.vals); err != nil {
		return err
	}
	r.emitted += len(r.out)
	return fn(r.out)
}
