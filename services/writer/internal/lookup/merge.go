package lookup

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func writeEntry(w *bufio.Writer, e entry) error {
	b := append(w.AvailableBuffer(), e.key[:]...)
	_, err := w.Write(binary.LittleEndian.AppendUint64(b, e.rec))
	return err
}

func readEntry(r *bufio.Reader) (entry, error) {
	b, err := r.Peek(entrySize)
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return entry{}, err
	}
	e := entry{key: schema.LookupKey(b[:schema.LookupKeySize]), rec: binary.LittleEndian.Uint64(b[schema.LookupKeySize:])}
	_, err = r.Discard(entrySize)
	return e, err
}

// run is one sorted run being merged: its next entry and the rest.
type run struct {
	head entry
	r    *bufio.Reader
	left int64 // entries not read yet
	i    int   // its position: earlier runs hold earlier records
}

// runHeap orders runs by their head entry, then by position.
type runHeap []*run

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if c := compareEntries(h[i].head, h[j].head); c != 0 {
		return c < 0
	}
	return h[i].i < h[j].i
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*run)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// merge streams the entries of the sorted runs of f, which end at the
// offsets in ends, to emit in ascending order. The runs share budget
// bytes of read buffers (4 KiB each at least).
func merge(ctx context.Context, f io.ReaderAt, ends []int64, budget int, emit func(schema.LookupKey, uint64) error) error {
	size := min(max(budget/len(ends), 4<<10), 256<<10)
	h := make(runHeap, 0, len(ends))
	var start int64
	for i, end := range ends {
		r := &run{r: bufio.NewReaderSize(io.NewSectionReader(f, start, end-start), size), left: (end - start) / entrySize, i: i}
		start = end
		if err := r.advance(); err != nil {
			return err
		}
		h = append(h, r)
	}
	heap.Init(&h)
	for n := 0; len(h) > 0; n++ {
		if n&0xffff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r := h[0]
		if err := emit(r.head.key, r.head.rec); err != nil {
			return err
		}
		if r.left == 0 {
			heap.Pop(&h)
			continue
		}
		if err := r.advance(); err != nil {
			return err
		}
		heap.Fix(&h, 0)
	}
	return nil
}

func (r *run) advance() error {
	e, err := readEntry(r.r)
	if err != nil {
		return fmt.Errorf("read run %d: %w", r.i, err)
	}
	r.head, r.left = e, r.left-1
	return nil
}
