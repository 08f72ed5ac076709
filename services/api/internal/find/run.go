package find

import (
	"errors"
	"fmt"
	"io"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// DefaultScanLimit is SCAN_LIMIT's default: the records one request may
// read to test filters no index answers.
const DefaultScanLimit = 100_000

// Gen is one open generation: its header (Count bounds everything), its
// data file, its offset index and its lookup indexes (nil: none).
type Gen struct {
	Header  schema.Header
	Data    io.ReaderAt
	Index   Ranger
	Indexes *Indexes
}

// Ranger finds records in the data file: schema.Index.Range's contract.
type Ranger interface {
	Range(first, n uint64) (start, end int64, err error)
}

// Page bounds one answer.
type Page struct {
	Limit     int    // records returned at most, ≥ 1
	Offset    uint64 // matches skipped first (answers from an index only)
	ScanLimit uint64 // records a scan may read, ≥ 1
	// MaxBytes, when > 0, ends the page once the records handed to emit
	// reach it (after one record at least): the page says where the next
	// one starts, as it does at Limit.
	MaxBytes int
}

// Result says what Run answered.
type Result struct {
	// Count is the number of matches when it is known: always from an
	// index, and for a scan that started at the beginning and read every
	// candidate. nil otherwise.
	Count *uint64
	// Returned is the number of records handed to emit.
	Returned int
	// NextOffset is the offset of the next page of an index answer; nil
	// at the end and for scans.
	NextOffset *uint64
	// Scan is set when filters had to be tested record by record.
	Scan *Scan
}

// Scan is the progress of a bounded scan.
type Scan struct {
	// Indexed names the field whose index chose the candidates; empty:
	// every record was a candidate.
	Indexed string
	// Scanned is the number of records this request read.
	Scanned uint64
	// Next continues the scan; nil when every candidate was read.
	Next *Cursor
}

// ErrOffsetInScan refuses an offset where matches are found by a scan:
// a scan pages with its cursor.
var ErrOffsetInScan = errors.New("offset applies to answers from an index; a filtered scan continues with cursor=<next_cursor>")

// ErrCursorGeneration refuses a cursor of another generation.
var ErrCursorGeneration = errors.New("the cursor belongs to another generation")

// Run answers req from g, handing each record of the page to emit, in
// file order: the record's JSON object without its '\n', projected to
// req.Fields when set. The bytes are valid only during the call. An
// error of emit stops Run and is returned wrapped (errors.Is sees it).
//
// Candidates: with an index on a filtered field (the one with the fewest
// matches when several have one) the records holding that value, else
// every record. With no other filter the answer is the candidates at
// Offset, and Count is exact: O(1) whatever the size. Otherwise each
// candidate from the cursor on is read and tested, at most ScanLimit of
// them, until Limit matches; the Result's Scan says how far it went.
func Run(g Gen, req Request, page Page, emit func(rec []byte) error) (Result, error) {
	if page.Limit < 1 || page.ScanLimit < 1 {
		return Result{}, fmt.Errorf("page %+v: limit and scan limit must be at least 1", page)
	}
	r, err := newReader(g, req)
	if err != nil {
		return Result{}, err
	}
	defer r.release()
	c, rest, err := r.candidates(req.Filters)
	if err != nil {
		return Result{}, err
	}
	if req.Cursor != nil && req.Cursor.Generation != g.Header.Generation {
		return Result{}, ErrCursorGeneration
	}
	if len(rest) == 0 && req.Cursor == nil {
		return r.fromIndex(c, page, emit)
	}
	if page.Offset != 0 {
		return Result{}, ErrOffsetInScan
	}
	return r.scan(c, rest, req.Cursor, page, emit)
}

// fromIndex answers candidates [offset, offset+limit): every candidate
// matches.
func (r *reader) fromIndex(c candidates, page Page, emit func([]byte) error) (Result, error) {
	n := c.len()
	res := Result{Count: &n}
	_, err := r.walk(c, page.Offset, uint64(page.Limit), func(line []byte) (bool, error) {
		res.Returned++
		err := r.emit(line, emit)
		return r.more(page), err
	})
	if next := page.Offset + uint64(res.Returned); next < n {
		res.NextOffset = &next
	}
	return res, err
}

// scan tests candidates from the cursor on against the filters in rest.
func (r *reader) scan(c candidates, rest []Filter, from *Cursor, page Page, emit func([]byte) error) (Result, error) {
	res := Result{Scan: &Scan{}}
	if c.postings != nil {
		res.Scan.Indexed = r.g.Header.Fields[c.field]
	}
	var start uint64
	if from != nil {
		start = from.Position
	}
	var matched uint64
	pos, err := r.walk(c, start, page.ScanLimit, func(line []byte) (bool, error) {
		res.Scan.Scanned++
		ok, err := r.test(line, rest)
		if err != nil || !ok {
			return true, err
		}
		matched++
		res.Returned++
		err = r.emit(line, emit)
		return res.Returned < page.Limit && r.more(page), err
	})
	if err != nil {
		return res, err
	}
	if pos < c.len() {
		res.Scan.Next = &Cursor{Generation: r.g.Header.Generation, Position: pos}
	} else if start == 0 {
		res.Count = &matched
	}
	return res, nil
}

// walk reads the candidates from position pos on, at most max of them,
// and hands each record to visit until it returns false or an error. It
// returns the position after the last candidate read.
func (r *reader) walk(c candidates, pos, max uint64, visit func(line []byte) (bool, error)) (uint64, error) {
	end := pos + min(max, c.len()-min(pos, c.len()))
	for pos < end {
		recs, err := r.read(c, pos, int(min(end-pos, batch)))
		if err != nil {
			return pos, err
		}
		for _, rec := range recs {
			line, err := r.record(rec)
			if err != nil {
				return pos, err
			}
			pos++
			more, err := visit(line)
			if err != nil {
				return pos, fmt.Errorf("record %d: %w", rec, err)
			}
			if !more {
				return pos, nil
			}
		}
	}
	return pos, nil
}
