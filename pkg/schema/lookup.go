package schema

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// The lookup index of one column of a generation (docs/lookup.md): a
// persistent hash table from each value of the column to the numbers of
// the records holding it.
//
//	┌───────────────────────┐ 0
//	│ header, 64 bytes      │ magic "RPLX", version, bucket bits, generation,
//	│                       │ count, keys, column, name length, 3 CRC-32C, header CRC
//	├───────────────────────┤ 64
//	│ column name, 0-padded │ to a multiple of 8
//	├───────────────────────┤ table
//	│ bucket table          │ (2^bits + 1) × u64: first key slot of each bucket
//	├───────────────────────┤ postings
//	│ postings              │ count × u64: record numbers, grouped by key
//	├───────────────────────┤ slots
//	│ key slots             │ keys × 32 bytes: digest[16], first u64, n u64
//	└───────────────────────┘ size
const (
	// LookupMagic opens every lookup index file.
	LookupMagic = "RPLX"
	// LookupVersion is the format in docs/lookup.md; OpenLookup refuses others.
	LookupVersion = 1
	// LookupHeaderSize is the size of the fixed header; the column name follows.
	LookupHeaderSize = 64
	// LookupSlotSize is the size of one key slot.
	LookupSlotSize = 32
	// LookupKeySize is the size of a key's digest: the first bytes of the
	// SHA-256 of the value.
	LookupKeySize = 16
	// LookupBucketLoad is the number of records per bucket the table is
	// sized for: 2^bits is the smallest power of two ≥ count/LookupBucketLoad.
	LookupBucketLoad = 8
	// MaxLookupColumnName bounds the column name a reader accepts.
	MaxLookupColumnName = 64 << 10
	// maxLookupBits bounds the bucket bits a reader accepts: 2^40 buckets
	// would be an 8 TiB table.
	maxLookupBits = 40

	lookupSuffix = ".idx"
	lookupInfix  = ".lookup-"
)

// ErrLookupFormat is wrapped by every error about a lookup index's bytes.
var ErrLookupFormat = errors.New("not a valid rowpipe lookup index")

// LookupKey is the identity of a value in a lookup index: the first 16
// bytes of the SHA-256 of its UTF-8 bytes. Two values are one key if and
// only if their digests are equal; finding two values with the same
// digest is computationally infeasible, and SHA-256 spreads any set of
// values evenly over the buckets.
type LookupKey [LookupKeySize]byte

// LookupKeyOf returns the key of value, the decoded cell string.
func LookupKeyOf(value []byte) LookupKey {
	sum := sha256.Sum256(value)
	return LookupKey(sum[:LookupKeySize])
}

// Compare orders keys as big-endian numbers: the order of the slots.
func (k *LookupKey) Compare(o *LookupKey) int {
	for i := 0; i < LookupKeySize; i += 8 {
		a, b := binary.BigEndian.Uint64(k[i:]), binary.BigEndian.Uint64(o[i:])
		if a != b {
			if a < b {
				return -1
			}
			return 1
		}
	}
	return 0
}

// bucket is the bucket of k in a table of 2^bits buckets: the top bits of
// its first 8 bytes read big-endian.
func (k LookupKey) bucket(bits uint8) uint64 {
	if bits == 0 {
		return 0
	}
	return binary.BigEndian.Uint64(k[:8]) >> (64 - bits)
}

// LookupBits is the bucket bits of an index of count records: the
// smallest b with 2^b × LookupBucketLoad ≥ count.
func LookupBits(count uint64) uint8 {
	var b uint8
	for b < maxLookupBits && uint64(LookupBucketLoad)<<b < count {
		b++
	}
	return b
}

// LookupMeta is what a lookup index says about itself.
type LookupMeta struct {
	Generation uint64 // the generation whose records it indexes
	Count      uint64 // the records it covers: 0 … Count-1, every one exactly once
	Keys       uint64 // distinct values
	Column     int    // the column's 0-based position in the header's fields
	Name       string // the column's name
	Bits       uint8  // the table has 2^Bits buckets
}

// lookupLayout is where each section of an index starts.
type lookupLayout struct {
	table, postings, slots, size int64
}

func (m LookupMeta) layout() lookupLayout { return m.layoutWithName(len(m.Name)) }

// layoutWithName is the layout of m with a name of nameLen bytes.
func (m LookupMeta) layoutWithName(nameLen int) lookupLayout {
	var l lookupLayout
	l.table = LookupHeaderSize + int64(nameLen+7)/8*8
	l.postings = l.table + 8*(int64(1)<<m.Bits+1)
	l.slots = l.postings + 8*int64(m.Count)
	l.size = l.slots + LookupSlotSize*int64(m.Keys)
	return l
}

// lookupSums are the CRC-32C of the three sections after the name.
type lookupSums struct{ table, postings, slots uint32 }

// encodeLookupHeader returns the header followed by the padded name.
func encodeLookupHeader(m LookupMeta, sums lookupSums) []byte {
	l := m.layout()
	b := make([]byte, l.table)
	copy(b, LookupMagic)
	b[4] = LookupVersion
	b[5] = m.Bits
	binary.LittleEndian.PutUint64(b[8:], m.Generation)
	binary.LittleEndian.PutUint64(b[16:], m.Count)
	binary.LittleEndian.PutUint64(b[24:], m.Keys)
	binary.LittleEndian.PutUint32(b[32:], uint32(m.Column))
	binary.LittleEndian.PutUint32(b[36:], uint32(len(m.Name)))
	binary.LittleEndian.PutUint32(b[40:], sums.table)
	binary.LittleEndian.PutUint32(b[44:], sums.postings)
	binary.LittleEndian.PutUint32(b[48:], sums.slots)
	copy(b[LookupHeaderSize:], m.Name)
	binary.LittleEndian.PutUint32(b[60:], lookupHeaderSum(b[:60], m.Name))
	return b
}

// lookupHeaderSum is the header's checksum: CRC-32C of bytes 0–59, then
// of the name's bytes.
func lookupHeaderSum(head []byte, name string) uint32 {
	sum := crc32.Update(0, castagnoli, head)
	return crc32.Update(sum, castagnoli, []byte(name))
}

// decodeLookupHeader checks b, the first LookupHeaderSize bytes of a file,
// and returns its meta and section checksums; the name is read separately
// (nameLen bytes at LookupHeaderSize) and checked by checkLookupName.
func decodeLookupHeader(b []byte) (m LookupMeta, nameLen int, sums lookupSums, err error) {
	if len(b) < LookupHeaderSize {
		return m, 0, sums, fmt.Errorf("%w: %d bytes, the header needs %d", ErrLookupFormat, len(b), LookupHeaderSize)
	}
	if string(b[:4]) != LookupMagic {
		return m, 0, sums, fmt.Errorf("%w: bad magic %q", ErrLookupFormat, b[:4])
	}
	if b[4] != LookupVersion {
		return m, 0, sums, fmt.Errorf("%w: version %d (this build reads %d)", ErrLookupFormat, b[4], LookupVersion)
	}
	m.Bits = b[5]
	m.Generation = binary.LittleEndian.Uint64(b[8:])
	m.Count = binary.LittleEndian.Uint64(b[16:])
	m.Keys = binary.LittleEndian.Uint64(b[24:])
	column := binary.LittleEndian.Uint32(b[32:])
	nameLen64 := binary.LittleEndian.Uint32(b[36:])
	sums = lookupSums{binary.LittleEndian.Uint32(b[40:]), binary.LittleEndian.Uint32(b[44:]), binary.LittleEndian.Uint32(b[48:])}
	switch {
	case b[6] != 0 || b[7] != 0 || binary.LittleEndian.Uint32(b[52:]) != 0 || binary.LittleEndian.Uint32(b[56:]) != 0:
		return m, 0, sums, fmt.Errorf("%w: reserved bytes are not zero", ErrLookupFormat)
	case m.Bits != LookupBits(m.Count):
		return m, 0, sums, fmt.Errorf("%w: %d bucket bits for %d records, want %d", ErrLookupFormat, m.Bits, m.Count, LookupBits(m.Count))
	case m.Count > 1<<56 || m.Keys > m.Count || (m.Count > 0) != (m.Keys > 0):
		return m, 0, sums, fmt.Errorf("%w: %d keys for %d records", ErrLookupFormat, m.Keys, m.Count)
	case column > 1<<20:
		return m, 0, sums, fmt.Errorf("%w: column %d", ErrLookupFormat, column)
	case nameLen64 == 0 || nameLen64 > MaxLookupColumnName:
		return m, 0, sums, fmt.Errorf("%w: column name of %d bytes", ErrLookupFormat, nameLen64)
	}
	m.Column = int(column)
	return m, int(nameLen64), sums, nil
}

// checkLookupName checks the padded name that follows header b and the
// header's checksum, and sets m.Name.
func checkLookupName(b []byte, m *LookupMeta, padded []byte, nameLen int) error {
	name := padded[:nameLen]
	for _, c := range padded[nameLen:] {
		if c != 0 {
			return fmt.Errorf("%w: name padding is not zero", ErrLookupFormat)
		}
	}
	if lookupHeaderSum(b[:60], string(name)) != binary.LittleEndian.Uint32(b[60:]) {
		return fmt.Errorf("%w: header checksum mismatch", ErrLookupFormat)
	}
	m.Name = string(name)
	return nil
}

// LookupFile is the lookup index of the column at 0-based position column
// of generation gen: "gen-<G>.lookup-<column>.idx".
func LookupFile(gen uint64, column int) string {
	return LookupFilePrefix(gen) + strconv.Itoa(column) + lookupSuffix
}

// LookupFilePrefix starts the name of every lookup index of generation
// gen, and of the temporary files a build of one leaves: "gen-<G>.lookup-".
func LookupFilePrefix(gen uint64) string {
	return genPrefix + strconv.FormatUint(gen, 10) + lookupInfix
}

// LookupFileOf parses a LookupFile name.
func LookupFileOf(name string) (gen uint64, column int, ok bool) {
	rest, ok := strings.CutPrefix(name, genPrefix)
	if !ok {
		return 0, 0, false
	}
	if rest, ok = strings.CutSuffix(rest, lookupSuffix); !ok {
		return 0, 0, false
	}
	g, c, ok := strings.Cut(rest, lookupInfix)
	if !ok {
		return 0, 0, false
	}
	gen, err := strconv.ParseUint(g, 10, 64)
	if err != nil || gen == 0 || strconv.FormatUint(gen, 10) != g {
		return 0, 0, false
	}
	col, err := strconv.Atoi(c)
	if err != nil || col < 0 || strconv.Itoa(col) != c {
		return 0, 0, false
	}
	return gen, col, true
}

// ValidateIndexColumns checks the columns a begin declares for lookup
// indexes: each one of fields, none twice. It returns their positions in
// fields, in the order given.
func ValidateIndexColumns(fields, index []string) ([]int, error) {
	pos := make(map[string]int, len(fields))
	for i, f := range fields {
		pos[f] = i
	}
	cols := make([]int, 0, len(index))
	seen := make(map[string]bool, len(index))
	for _, name := range index {
		i, ok := pos[name]
		if !ok {
			return nil, fmt.Errorf("index column %q is not a field (fields: %s)", name, strings.Join(fields, ", "))
		}
		if seen[name] {
			return nil, fmt.Errorf("index column %q is named twice", name)
		}
		seen[name] = true
		cols = append(cols, i)
	}
	return cols, nil
}
