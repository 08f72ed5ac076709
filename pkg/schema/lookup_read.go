package schema

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// Lookup reads a lookup index with a few small reads per key, whatever
// its size. It holds no table, slot or posting in memory and is safe for
// concurrent use if r is.
type Lookup struct {
	r    io.ReaderAt
	meta LookupMeta
	l    lookupLayout
}

// OpenLookup checks the header of the index in r, which is size bytes
// long: magic, version, header checksum, and that the sections it
// declares fill exactly size bytes. It reads the header and the name
// only: the sections are checked as they are read (Find, Postings.Read)
// or all at once by VerifyLookup. Errors wrap ErrLookupFormat.
func OpenLookup(r io.ReaderAt, size int64) (*Lookup, error) {
	var b [LookupHeaderSize]byte
	if err := readFullAt(r, b[:], 0); err != nil {
		return nil, fmt.Errorf("%w: read header: %v", ErrLookupFormat, err)
	}
	m, nameLen, _, err := decodeLookupHeader(b[:])
	if err != nil {
		return nil, err
	}
	l := m.layoutWithName(nameLen)
	if l.size != size {
		return nil, fmt.Errorf("%w: the header describes %d bytes, the file has %d", ErrLookupFormat, l.size, size)
	}
	padded := make([]byte, l.table-LookupHeaderSize)
	if err := readFullAt(r, padded, LookupHeaderSize); err != nil {
		return nil, fmt.Errorf("%w: read column name: %v", ErrLookupFormat, err)
	}
	if err := checkLookupName(b[:], &m, padded, nameLen); err != nil {
		return nil, err
	}
	return &Lookup{r: r, meta: m, l: l}, nil
}

// Meta is what the index says about itself.
func (x *Lookup) Meta() LookupMeta { return x.meta }

// Postings are the record numbers of one key, ascending.
type Postings struct {
	x     *Lookup
	first uint64
	n     uint64
}

// Len is the number of records holding the key.
func (p Postings) Len() uint64 { return p.n }

// Read fills dst with the record numbers from the i-th on (0-based) and
// returns how many it read: min(len(dst), Len()-i). Each is checked to be
// below the index's count and above the one before it in dst.
func (p Postings) Read(dst []uint64, i uint64) (int, error) {
	if i >= p.n {
		return 0, nil
	}
	dst = dst[:min(uint64(len(dst)), p.n-i)]
	if len(dst) == 0 {
		return 0, nil
	}
	buf := make([]byte, 8*len(dst))
	if err := readFullAt(p.x.r, buf, p.x.l.postings+8*int64(p.first+i)); err != nil {
		return 0, fmt.Errorf("%w: read postings: %v", ErrLookupFormat, err)
	}
	for j := range dst {
		rec := binary.LittleEndian.Uint64(buf[8*j:])
		if rec >= p.x.meta.Count || j > 0 && rec <= dst[j-1] {
			return 0, fmt.Errorf("%w: posting %d of a key is record %d", ErrLookupFormat, p.first+i+uint64(j), rec)
		}
		dst[j] = rec
	}
	return len(dst), nil
}

// slotsPerRead is how many slots Find reads at once.
const slotsPerRead = 32

// findBufs hold the slots Find reads: a buffer passed to an io.ReaderAt
// escapes, so a stack array would cost an allocation per lookup.
var findBufs = sync.Pool{New: func() any { return new([slotsPerRead * LookupSlotSize]byte) }}

// Find returns the postings of value (the decoded cell string). ok is
// false when no record holds it. Find reads the two table entries of the
// value's bucket, then the bucket's slots (LookupBucketLoad on average).
func (x *Lookup) Find(value []byte) (p Postings, ok bool, err error) {
	return x.FindKey(LookupKeyOf(value))
}

// FindKey is Find for a key already computed.
func (x *Lookup) FindKey(key LookupKey) (p Postings, ok bool, err error) {
	b := key.bucket(x.meta.Bits)
	buf := findBufs.Get().(*[slotsPerRead * LookupSlotSize]byte)
	defer findBufs.Put(buf)
	tb := buf[:16]
	if err := readFullAt(x.r, tb, x.l.table+8*int64(b)); err != nil {
		return p, false, fmt.Errorf("%w: read bucket %d: %v", ErrLookupFormat, b, err)
	}
	lo, hi := binary.LittleEndian.Uint64(tb), binary.LittleEndian.Uint64(tb[8:])
	if lo > hi || hi > x.meta.Keys {
		return p, false, fmt.Errorf("%w: bucket %d spans slots %d..%d of %d", ErrLookupFormat, b, lo, hi, x.meta.Keys)
	}
	for lo < hi {
		n := min(hi-lo, slotsPerRead)
		chunk := buf[:n*LookupSlotSize]
		if err := readFullAt(x.r, chunk, x.l.slots+LookupSlotSize*int64(lo)); err != nil {
			return p, false, fmt.Errorf("%w: read slots: %v", ErrLookupFormat, err)
		}
		for s := 0; s < len(chunk); s += LookupSlotSize {
			if LookupKey(chunk[s:s+LookupKeySize]) != key {
				continue
			}
			first, cnt := binary.LittleEndian.Uint64(chunk[s+16:]), binary.LittleEndian.Uint64(chunk[s+24:])
			if cnt == 0 || first > x.meta.Count || cnt > x.meta.Count-first {
				return p, false, fmt.Errorf("%w: slot %d holds postings %d+%d of %d", ErrLookupFormat, lo+uint64(s/LookupSlotSize), first, cnt, x.meta.Count)
			}
			return Postings{x: x, first: first, n: cnt}, true, nil
		}
		lo += n
	}
	return p, false, nil
}

// VerifyLookup reads the whole index in r (size bytes) and checks every
// rule of docs/lookup.md: the header, each section's checksum, a table
// that rises from 0 to the number of keys, keys in ascending order each in
// its own bucket, postings that partition 0 … count-1 in key order and
// rise within each key. It reads sequentially and holds one buffer per
// section, whatever the size. Errors wrap ErrLookupFormat.
func VerifyLookup(r io.ReaderAt, size int64) (LookupMeta, error) {
	x, err := OpenLookup(r, size)
	if err != nil {
		return LookupMeta{}, err
	}
	var b [LookupHeaderSize]byte
	if err := readFullAt(r, b[:], 0); err != nil {
		return LookupMeta{}, fmt.Errorf("%w: read header: %v", ErrLookupFormat, err)
	}
	_, _, sums, _ := decodeLookupHeader(b[:])
	m, l := x.meta, x.l
	bad := func(format string, args ...any) (LookupMeta, error) {
		return LookupMeta{}, fmt.Errorf("%w: "+format, append([]any{ErrLookupFormat}, args...)...)
	}
	table := newSectionReader(r, l.table, l.postings)
	postings := newSectionReader(r, l.postings, l.slots)
	slots := newSectionReader(r, l.slots, l.size)

	// The table and the slots together: bucket b's entry is the first slot
	// whose key is in bucket b or later.
	buckets := uint64(1) << m.Bits
	entry, err := table.u64()
	if err != nil {
		return bad("table: %v", err)
	}
	if entry != 0 {
		return bad("the table starts at slot %d", entry)
	}
	var prev LookupKey
	var next uint64 // next expected posting index
	slot := make([]byte, LookupSlotSize)
	var bucket uint64 // bucket whose end entry is read next
	nextEntry, err := table.u64()
	if err != nil {
		return bad("table: %v", err)
	}
	for k := uint64(0); k < m.Keys; k++ {
		if _, err := io.ReadFull(slots.br, slot); err != nil {
			return bad("slot %d: %v", k, err)
		}
		key := LookupKey(slot[:LookupKeySize])
		if k > 0 && key.Compare(&prev) <= 0 {
			return bad("slot %d: keys out of order", k)
		}
		prev = key
		kb := key.bucket(m.Bits)
		for bucket < kb { // entries of buckets before kb end at or before k
			if nextEntry != k {
				return bad("table entry %d is %d, slot %d is the first of a later bucket", bucket+1, nextEntry, k)
			}
			bucket++
			if nextEntry, err = table.u64(); err != nil {
				return bad("table: %v", err)
			}
		}
		if nextEntry <= k {
			return bad("table entry %d is %d, slot %d is in bucket %d", bucket+1, nextEntry, k, kb)
		}
		first, cnt := binary.LittleEndian.Uint64(slot[16:]), binary.LittleEndian.Uint64(slot[24:])
		if first != next || cnt == 0 || cnt > m.Count-first {
			return bad("slot %d holds postings %d+%d, want them from %d", k, first, cnt, next)
		}
		var last uint64
		for j := uint64(0); j < cnt; j++ {
			rec, err := postings.u64()
			if err != nil {
				return bad("postings: %v", err)
			}
			if rec >= m.Count || j > 0 && rec <= last {
				return bad("posting %d of slot %d is record %d", first+j, k, rec)
			}
			last = rec
		}
		next += cnt
	}
	for bucket < buckets {
		if nextEntry != m.Keys {
			return bad("table entry %d is %d after the last slot, want %d", bucket+1, nextEntry, m.Keys)
		}
		bucket++
		if bucket < buckets {
			if nextEntry, err = table.u64(); err != nil {
				return bad("table: %v", err)
			}
		}
	}
	if next != m.Count {
		return bad("the slots hold %d postings, the index covers %d", next, m.Count)
	}
	for name, s := range map[string]struct {
		sec  *sectionReader
		want uint32
	}{"table": {table, sums.table}, "postings": {postings, sums.postings}, "slots": {slots, sums.slots}} {
		if err := s.sec.finish(); err != nil {
			return bad("%s: %v", name, err)
		}
		if got := s.sec.sum.Sum32(); got != s.want {
			return bad("%s checksum %08x, the header says %08x", name, got, s.want)
		}
	}
	return m, nil
}

// sectionReader reads one section sequentially, summing what it reads.
type sectionReader struct {
	br  *bufio.Reader
	sum interface {
		io.Writer
		Sum32() uint32
	}
}

func newSectionReader(r io.ReaderAt, from, to int64) *sectionReader {
	s := &sectionReader{sum: crc32.New(castagnoli)}
	s.br = bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(r, from, to-from), s.sum), 32<<10)
	return s
}

func (s *sectionReader) u64() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(s.br, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// finish checks nothing is left in the section and reads it all into the sum.
func (s *sectionReader) finish() error {
	n, err := io.Copy(io.Discard, s.br)
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("%d bytes left over", n)
	}
	return nil
}
