package deploy

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Helpers shared by the tests that run the real pipeline (cluster_test.go,
// runbook_test.go): a CSV generator, an oracle that reads the CSV with
// encoding/csv and the writer's files with encoding/json, free loopback
// ports.

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer that several goroutines may write.
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

// tail is the last n bytes of s, for failure messages.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// productHeader is the header of the generated CSV: a trimmed Shopify
// product export.
var productHeader = []string{
	"Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published",
	"Variant SKU", "Variant Price", "Variant Inventory Qty", "Image Alt Text", "Status",
}

var (
	adjectives = []string{"Classic", "Organic", "Vintage", "Ultra-Light", "Handmade", "Recycled", "Señorita", "Größe"}
	nouns      = []string{"Mug", "T-Shirt", "Backpack", "Candle", "Notebook", "Café Blend", "Teapot", "靴下"}
	vendors    = []string{"Acme", "Nordic \"Goods\"", "Blue, Ltd.", "Zoë & Co"}
	bodies     = []string{
		`<p>Soft, durable and made to last.</p>`,
		`<p>Our "best seller", now in more colours.</p>`,
		"<ul>\n<li>Dishwasher safe</li>\n<li>350 ml</li>\n</ul>",
		`<p>Naïve café crème — 100% recyclé.</p>`,
	}
)

// writeProductsCSV writes a deterministic product CSV of rows data rows
// (about 300 bytes each, with quotes, commas, newlines and non-ASCII text in
// quoted fields) with encoding/csv.
func writeProductsCSV(t *testing.T, path string, rows int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := csv.NewWriter(bw)
	if err := w.Write(productHeader); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, uint64(rows)))
	rec := make([]string, len(productHeader))
	for i := range rows {
		adj, noun := adjectives[r.IntN(len(adjectives))], nouns[r.IntN(len(nouns))]
		handle := strings.ToLower(strings.ReplaceAll(adj+"-"+noun, " ", "-")) + "-" + strconv.Itoa(i/3)
		rec[0] = handle
		rec[1] = adj + " " + noun
		rec[2] = bodies[r.IntN(len(bodies))]
		rec[3] = vendors[r.IntN(len(vendors))]
		rec[4] = noun
		rec[5] = fmt.Sprintf("%s, %s, sale-%d", strings.ToLower(adj), strings.ToLower(noun), r.IntN(50))
		rec[6] = strconv.FormatBool(r.IntN(5) != 0)
		rec[7] = fmt.Sprintf("SKU-%07d-%c", i, 'A'+rune(i%3))
		rec[8] = fmt.Sprintf("%d.%02d", 3+r.IntN(200), r.IntN(100))
		rec[9] = strconv.Itoa(r.IntN(1000) - 20)
		rec[10] = ""
		if r.IntN(4) == 0 {
			rec[10] = fmt.Sprintf("%s %s, front view (%d×%d)", adj, noun, 800, 600)
		}
		rec[11] = []string{"active", "draft", "archived"}[r.IntN(3)]
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// decodeRecord parses one NDJSON record as an ordered list of members:
// it checks that the line is one JSON object whose values are strings, and
// returns keys and values in the order they appear.
func decodeRecord(line []byte) (keys, values []string, err error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("not a JSON object: starts with %v", tok)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		v, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		vs, ok := v.(string)
		if !ok {
			return nil, nil, fmt.Errorf("member %v: value %v is not a string", k, v)
		}
		keys, values = append(keys, k.(string)), append(values, vs)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("bytes after the object")
	}
	return keys, values, nil
}

// checkDatasetMatchesCSV checks the current generation of dataset under
// dataDir against csvPath, read independently with encoding/csv: the
// header is complete and counts every row; record i is the JSON object of
// CSV row i (keys = the header, in order; values = the cells); there is
// nothing else in the file (no duplicate, no missing row); and index entry
// i ends exactly where record i ends, with increasing stream sequences.
// It returns the metadata header.
func checkDatasetMatchesCSV(t *testing.T, dataDir, dataset, csvPath string) schema.Header {
	t.Helper()
	dir := filepath.Join(dataDir, dataset)
	cur, err := os.ReadFile(filepath.Join(dir, schema.CurrentFile))
	if err != nil {
		t.Fatalf("dataset %s has no current generation: %v", dataset, err)
	}
	gen, ok := schema.ParseCurrent(cur)
	if !ok {
		t.Fatalf("%s: unreadable CURRENT %q", dir, cur)
	}
	data, err := os.Open(filepath.Join(dir, schema.DataFile(gen)))
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	h, err := schema.ReadHeader(data)
	if err != nil {
		t.Fatalf("%s: header: %v", schema.DataFile(gen), err)
	}
	if h.State != "complete" || h.Generation != gen || h.Dataset != dataset {
		t.Fatalf("header: state %q generation %d dataset %q; want complete, %d, %s", h.State, h.Generation, h.Dataset, gen, dataset)
	}
	idxFile, err := os.Open(filepath.Join(dir, schema.IndexFile(gen)))
	if err != nil {
		t.Fatal(err)
	}
	defer idxFile.Close()
	idx, err := schema.OpenIndex(idxFile)
	if err != nil {
		t.Fatal(err)
	}
	if idx.DataStart() != int64(h.Size) {
		t.Fatalf("index data start %d, header size %d", idx.DataStart(), h.Size)
	}

	src, err := os.Open(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cr := csv.NewReader(bufio.NewReaderSize(src, 1<<20))
	header, err := cr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(h.Fields, "\x00") != strings.Join(header, "\x00") {
		t.Fatalf("header fields %q, CSV header %q", h.Fields, header)
	}

	if _, err := data.Seek(int64(h.Size), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(data, 1<<20)
	off := int64(h.Size)
	var n, lastSeq uint64
	for {
		want, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("CSV row %d: %v", n+1, err)
		}
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("record %d (CSV row %d): %v; the file holds %d records, the CSV more", n, n+1, err, n)
		}
		off += int64(len(line))
		keys, values, err := decodeRecord(line[:len(line)-1])
		if err != nil {
			t.Fatalf("record %d: %v: %.200s", n, err, line)
		}
		if strings.Join(keys, "\x00") != strings.Join(header, "\x00") || strings.Join(values, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("record %d differs from CSV row %d:\n got %q = %q\nwant %q = %q", n, n+1, keys, values, header, want)
		}
		if n < h.Count {
			end, seq, err := idx.Entry(n)
			if err != nil {
				t.Fatalf("index entry %d: %v", n, err)
			}
			if end != off {
				t.Fatalf("index entry %d ends at %d, record %d ends at %d", n, end, n, off)
			}
			if seq <= lastSeq {
				t.Fatalf("index entry %d: stream seq %d after %d", n, seq, lastSeq)
			}
			lastSeq = seq
		}
		n++
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Fatalf("%d bytes after the last CSV row's record: %.200q", len(rest), rest)
	}
	if h.Count != n {
		t.Fatalf("header count %d, CSV rows %d", h.Count, n)
	}
	if h.LastSeq < lastSeq {
		t.Fatalf("header last_seq %d is before the last record's seq %d", h.LastSeq, lastSeq)
	}
	if h.Rejected != 0 {
		t.Fatalf("header rejected %d, want 0", h.Rejected)
	}
	if st, err := idxFile.Stat(); err != nil || st.Size() < schema.IndexSize(n) {
		t.Fatalf("index file: %v, size %d < %d", err, st.Size(), schema.IndexSize(n))
	}
	return h
}
