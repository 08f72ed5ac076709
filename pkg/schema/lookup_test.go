package schema

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// buildLookup writes the lookup index of values (record i holds values[i])
// the simple way: every key and its records sorted in memory.
func buildLookup(t testing.TB, gen uint64, column int, name string, values []string) []byte {
	t.Helper()
	type entry struct {
		key LookupKey
		rec uint64
	}
	entries := make([]entry, len(values))
	for i, v := range values {
		entries[i] = entry{LookupKeyOf([]byte(v)), uint64(i)}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if c := a.key.Compare(&b.key); c != 0 {
			return c
		}
		return int(a.rec) - int(b.rec)
	})
	path := filepath.Join(t.TempDir(), LookupFile(gen, column))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewLookupWriter(f, gen, uint64(len(values)), column, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Add(e.key, e.rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// find returns every record number of value in the index b.
func find(t testing.TB, b []byte, value string) []uint64 {
	t.Helper()
	x, err := OpenLookup(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := x.Find([]byte(value))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return nil
	}
	out := make([]uint64, p.Len())
	// Read in uneven pieces, as pages do.
	for i := uint64(0); i < p.Len(); {
		n, err := p.Read(out[i:min(i+3, p.Len())], i)
		if err != nil || n == 0 {
			t.Fatalf("read postings at %d: %d, %v", i, n, err)
		}
		i += uint64(n)
	}
	return out
}

func bruteForce(values []string, value string) []uint64 {
	var out []uint64
	for i, v := range values {
		if v == value {
			out = append(out, uint64(i))
		}
	}
	return out
}

func TestLookupFindsEveryValueAsABruteForceScanDoes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 7, 8, 9, 100, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			values := make([]string, n)
			for i := range values {
				switch rng.IntN(5) {
				case 0:
					values[i] = "" // variant rows leave most cells empty
				case 1:
					values[i] = fmt.Sprintf("handle-%d", rng.IntN(n/3+1)) // many rows per handle
				case 2:
					values[i] = fmt.Sprintf("Café \"%d\" 🍵 \\ \n", i)
				default:
					values[i] = fmt.Sprintf("SKU-%06d", i)
				}
			}
			b := buildLookup(t, 42, 3, "Variant SKU", values)
			m, err := VerifyLookup(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			distinct := map[string]bool{}
			for _, v := range values {
				distinct[v] = true
			}
			if m.Count != uint64(n) || m.Keys != uint64(len(distinct)) || m.Generation != 42 || m.Column != 3 || m.Name != "Variant SKU" {
				t.Fatalf("meta %+v, want %d records and %d keys", m, n, len(distinct))
			}
			for v := range distinct {
				if got, want := find(t, b, v), bruteForce(values, v); !slices.Equal(got, want) {
					t.Fatalf("%q: index says %v, scan says %v", v, got, want)
				}
			}
			for _, absent := range []string{"absent", "SKU-", "handle-", " "} {
				if !distinct[absent] && find(t, b, absent) != nil {
					t.Fatalf("%q found though no record holds it", absent)
				}
			}
		})
	}
}

func TestLookupIsTheSameBytesForTheSameInput(t *testing.T) {
	values := []string{"b", "a", "b", "", "c", "a"}
	if a, b := buildLookup(t, 7, 0, "Handle", values), buildLookup(t, 7, 0, "Handle", values); !bytes.Equal(a, b) {
		t.Fatal("two builds of the same values differ")
	}
}

func TestLookupWriterRefusesWhatWouldBreakTheFormat(t *testing.T) {
	k1, k2 := LookupKeyOf([]byte("x")), LookupKeyOf([]byte("y"))
	if k1.Compare(&k2) > 0 {
		k1, k2 = k2, k1
	}
	cases := map[string]func(w *LookupWriter) error{
		"keys out of order":    func(w *LookupWriter) error { w.Add(k2, 0); return w.Add(k1, 1) },
		"records out of order": func(w *LookupWriter) error { w.Add(k1, 1); return w.Add(k1, 0) },
		"a record past count":  func(w *LookupWriter) error { return w.Add(k1, 2) },
		"too few records": func(w *LookupWriter) error {
			w.Add(k1, 0)
			_, err := w.Close()
			return err
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "x"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w, err := NewLookupWriter(f, 1, 2, 0, "Handle")
			if err != nil {
				t.Fatal(err)
			}
			if c(w) == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestOpenLookupRefusesDamage(t *testing.T) {
	good := buildLookup(t, 3, 1, "Name", []string{"#1001", "#1001", "#1002", "", "#1003"})
	damage := map[string]func(b []byte) []byte{
		"empty":           func(b []byte) []byte { return nil },
		"magic":           func(b []byte) []byte { b[0] = 'X'; return b },
		"version":         func(b []byte) []byte { b[4] = 2; return b },
		"header checksum": func(b []byte) []byte { b[16]++; return b },
		"name":            func(b []byte) []byte { b[LookupHeaderSize]++; return b },
		"truncated":       func(b []byte) []byte { return b[:len(b)-1] },
		"longer":          func(b []byte) []byte { return append(b, 0) },
	}
	for name, d := range damage {
		t.Run(name, func(t *testing.T) {
			b := d(bytes.Clone(good))
			if _, err := OpenLookup(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrLookupFormat) {
				t.Fatalf("OpenLookup: %v, want ErrLookupFormat", err)
			}
		})
	}
	// Damage past the header passes OpenLookup but not VerifyLookup.
	for off := int(LookupMeta{Name: "Name"}.layout().table); off < len(good); off++ {
		b := bytes.Clone(good)
		b[off] ^= 0x40
		if _, err := VerifyLookup(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrLookupFormat) {
			t.Fatalf("a flipped byte at %d: VerifyLookup says %v", off, err)
		}
	}
}

func TestLookupFileNames(t *testing.T) {
	name := LookupFile(42, 3)
	if name != "gen-42.lookup-3.idx" {
		t.Fatalf("LookupFile = %q", name)
	}
	if g, c, ok := LookupFileOf(name); !ok || g != 42 || c != 3 {
		t.Fatalf("LookupFileOf(%q) = %d, %d, %v", name, g, c, ok)
	}
	if g, ok := GenerationOf(name); !ok || g != 42 {
		t.Fatalf("GenerationOf(%q) = %d, %v", name, g, ok)
	}
	for _, bad := range []string{"gen-42.lookup-03.idx", "gen-0.lookup-1.idx", "gen-42.lookup--1.idx", "gen-42.lookup-1.idx.tmp", "gen-42.lookup-.idx", "gen-42.idx"} {
		if _, _, ok := LookupFileOf(bad); ok {
			t.Errorf("LookupFileOf(%q) accepted it", bad)
		}
	}
}

func TestValidateIndexColumns(t *testing.T) {
	fields := []string{"Handle", "Title", "Variant SKU"}
	if cols, err := ValidateIndexColumns(fields, []string{"Variant SKU", "Handle"}); err != nil || !slices.Equal(cols, []int{2, 0}) {
		t.Fatalf("= %v, %v", cols, err)
	}
	for _, bad := range [][]string{{"SKU"}, {"Handle", "Handle"}} {
		if _, err := ValidateIndexColumns(fields, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzOpenLookup feeds arbitrary bytes to the decoder: it must never
// panic, and whatever VerifyLookup accepts, Find answers consistently
// with (postings in range, ascending).
func FuzzOpenLookup(f *testing.F) {
	f.Add(buildLookup(f, 1, 0, "Handle", []string{"a", "b", "a", ""}), []byte("a"))
	f.Add(buildLookup(f, 2, 1, "Name", nil), []byte(""))
	f.Add(buildLookup(f, 3, 2, "SKU", []string{"x", "y", "z", "x", "y", "z", "x", "y", "z", "w"}), []byte("z"))
	f.Fuzz(func(t *testing.T, b []byte, value []byte) {
		x, err := OpenLookup(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrLookupFormat) {
				t.Fatalf("OpenLookup: %v does not wrap ErrLookupFormat", err)
			}
			return
		}
		_, verr := VerifyLookup(bytes.NewReader(b), int64(len(b)))
		p, ok, err := x.Find(value)
		if err != nil {
			if verr == nil {
				t.Fatalf("a verified index: Find: %v", err)
			}
			return
		}
		if !ok {
			return
		}
		dst := make([]uint64, min(p.Len(), 64))
		n, err := p.Read(dst, 0)
		if err != nil {
			if verr == nil {
				t.Fatalf("a verified index: Read: %v", err)
			}
			return
		}
		for i := range n {
			if dst[i] >= x.Meta().Count || i > 0 && dst[i] <= dst[i-1] {
				t.Fatalf("postings %v", dst[:n])
			}
		}
	})
}

// FuzzLookupSections keeps a valid header and name and fuzzes what
// follows: OpenLookup accepts it, and Find and Read must refuse what is
// damaged rather than panic or answer records out of range.
func FuzzLookupSections(f *testing.F) {
	values := []string{"x", "y", "z", "x", "y", "z", "x", "y", "z", "w", "", ""}
	base := buildLookup(f, 3, 2, "SKU", values)
	body := LookupMeta{Name: "SKU"}.layout().table
	f.Add(bytes.Clone(base[body:]), []byte("x"))
	f.Add(make([]byte, len(base)-int(body)), []byte(""))
	f.Fuzz(func(t *testing.T, sections []byte, value []byte) {
		b := bytes.Clone(base)
		copy(b[body:], sections)
		x, err := OpenLookup(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("the header is intact: %v", err)
		}
		p, ok, err := x.Find(value)
		if err != nil || !ok {
			return
		}
		dst := make([]uint64, p.Len())
		n, err := p.Read(dst, 0)
		if err != nil {
			return
		}
		for i := range n {
			if dst[i] >= uint64(len(values)) || i > 0 && dst[i] <= dst[i-1] {
				t.Fatalf("postings %v", dst[:n])
			}
		}
	})
}
