package main

import (
	"bytes"
	"encoding/csv"
	"io"
	"strings"
	"testing"
)

// TestGeneratedCSVIsDeterministicAndWellFormed: the same kind, rows and
// seed give the same bytes, another seed other bytes; every record has
// the header's width, and the products carry what makes a real export
// hard (multi-line quoted HTML, doubled quotes, non-ASCII, empty cells).
func TestGeneratedCSVIsDeterministicAndWellFormed(t *testing.T) {
	for _, kind := range []string{"products", "orders"} {
		var a, b, c bytes.Buffer
		if err := writeCSV(&a, kind, 2000, 1); err != nil {
			t.Fatal(err)
		}
		writeCSV(&b, kind, 2000, 1)
		writeCSV(&c, kind, 2000, 2)
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: two runs with seed 1 differ", kind)
		}
		if bytes.Equal(a.Bytes(), c.Bytes()) {
			t.Errorf("%s: seeds 1 and 2 give the same bytes", kind)
		}
		r := csv.NewReader(bytes.NewReader(a.Bytes()))
		header, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		rows, multiLine, empty := 0, 0, 0
		for {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: row %d: %v", kind, rows+1, err)
			}
			rows++
			for _, f := range rec {
				if strings.Contains(f, "\n") {
					multiLine++
				}
				if f == "" {
					empty++
				}
			}
			if len(rec) != len(header) {
				t.Fatalf("%s: row %d has %d fields, the header %d", kind, rows, len(rec), len(header))
			}
		}
		if rows != 2000 || multiLine == 0 || empty < rows*len(header)/3 {
			t.Errorf("%s: %d rows, %d multi-line cells, %d empty cells", kind, rows, multiLine, empty)
		}
		if kind == "products" && (!bytes.Contains(a.Bytes(), []byte(`""`)) || !bytes.Contains(a.Bytes(), []byte("Crème"))) {
			t.Errorf("products: no doubled quote or non-ASCII text")
		}
	}
}
