// Package datadirtest builds DATA_DIR layouts for the tests of readers,
// with pkg/schema's own encoders: the metadata header, the offset index, the
// records and CURRENT, byte for byte as the writer lays them out. It never formats those
// bytes by hand, so a test over its files is a test over the real formats.
package datadirtest

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Gen describes one generation to write.
type Gen struct {
	Dataset    string
	Generation uint64
	// Fields are the record keys; default id, name, ver.
	Fields []string
	// Rows is the number of records.
	Rows int
	// Row fills vals (len(Fields)) for record i; default RowDefault with Tag.
	Row func(i int, vals []string)
	// Tag is what RowDefault puts in the "ver" field; default "A".
	Tag string
	// State defaults to schema.StateComplete.
	State string
	// Mode defaults to schema.ModeReplace.
	Mode schema.Mode
}

// DefaultFields are the fields of a Gen that names none.
var DefaultFields = []string{"id", "name", "ver"}

// BaseTime is the CreatedAt of every generation written here.
var BaseTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func (g *Gen) defaults() {
	if len(g.Fields) == 0 {
		g.Fields = DefaultFields
	}
	if g.Tag == "" {
		g.Tag = "A"
	}
	if g.Row == nil {
		tag := g.Tag
		g.Row = func(i int, vals []string) { RowDefault(i, tag, vals) }
	}
	if g.State == "" {
		g.State = schema.StateComplete
	}
	if g.Mode == "" {
		g.Mode = schema.ModeReplace
	}
}

// RowDefault fills the default fields: id = i, name = "item i", ver = tag.
func RowDefault(i int, tag string, vals []string) {
	vals[0] = strconv.Itoa(i)
	if len(vals) > 1 {
		vals[1] = "item " + strconv.Itoa(i)
	}
	if len(vals) > 2 {
		vals[2] = tag
	}
}

// Header returns the header Write puts at the start of g's data file.
func (g Gen) Header() schema.Header {
	g.defaults()
	h := schema.Header{
		Version:    schema.HeaderVersion,
		Dataset:    g.Dataset,
		Generation: g.Generation,
		State:      g.State,
		Mode:       g.Mode,
		Sync:       "0123456789abcdef",
		Count:      uint64(g.Rows),
		Fields:     append([]string(nil), g.Fields...),
		Source:     schema.Source{Name: g.Dataset + ".csv", Size: int64(g.Rows) * 40, SHA256: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"},
		CreatedAt:  BaseTime,
		UpdatedAt:  BaseTime.Add(time.Duration(g.Generation) * time.Second),
		LastSeq:    g.Generation + uint64(g.Rows) + 1,
	}
	h.Size = schema.HeaderSizeFor(h)
	return h
}

// Line returns record i of g as the writer stores it, without its '\n'.
func (g Gen) Line(tb testing.TB, i int) []byte {
	tb.Helper()
	g.defaults()
	enc, err := schema.NewRecordEncoder(g.Fields)
	if err != nil {
		tb.Fatal(err)
	}
	vals := make([]string, len(g.Fields))
	g.Row(i, vals)
	line, err := enc.Append(nil, vals)
	if err != nil {
		tb.Fatal(err)
	}
	return line
}

// Paths returns the data and index file of a generation.
func Paths(dataDir, dataset string, gen uint64) (data, index string) {
	dir := filepath.Join(dataDir, dataset)
	return filepath.Join(dir, schema.DataFile(gen)), filepath.Join(dir, schema.IndexFile(gen))
}

// Write writes g's data file (header + records) and index under
// dataDir/<dataset>/ and returns the header. CURRENT is left alone.
func Write(tb testing.TB, dataDir string, g Gen) schema.Header {
	tb.Helper()
	g.defaults()
	h := g.Header()
	if err := os.MkdirAll(filepath.Join(dataDir, g.Dataset), 0o755); err != nil {
		tb.Fatal(err)
	}
	dataPath, idxPath := Paths(dataDir, g.Dataset, g.Generation)
	df, err := os.Create(dataPath)
	if err != nil {
		tb.Fatal(err)
	}
	xf, err := os.Create(idxPath)
	if err != nil {
		tb.Fatal(err)
	}
	dw, xw := bufio.NewWriterSize(df, 1<<20), bufio.NewWriterSize(xf, 1<<20)
	head, err := schema.EncodeHeader(h)
	if err != nil {
		tb.Fatal(err)
	}
	must(tb, write(dw, head))
	must(tb, write(xw, schema.AppendIndexHeader(nil, int64(h.Size))))
	enc, err := schema.NewRecordEncoder(g.Fields)
	if err != nil {
		tb.Fatal(err)
	}
	vals := make([]string, len(g.Fields))
	var line, entry []byte
	end := int64(h.Size)
	for i := 0; i < g.Rows; i++ {
		g.Row(i, vals)
		if line, err = enc.Append(line[:0], vals); err != nil {
			tb.Fatal(err)
		}
		line = append(line, '\n')
		must(tb, write(dw, line))
		end += int64(len(line))
		entry = schema.AppendIndexEntry(entry[:0], end, g.Generation+uint64(i)+1)
		must(tb, write(xw, entry))
	}
	must(tb, dw.Flush())
	must(tb, xw.Flush())
	must(tb, df.Close())
	must(tb, xf.Close())
	return h
}

// Append adds rows more records (numbered from h.Count on, filled by g.Row)
// to an existing generation the way the writer does in append mode: records
// and index entries first, then the header rewritten in place with the new
// count. It returns the new header.
func Append(tb testing.TB, dataDir string, g Gen, h schema.Header, rows int) schema.Header {
	tb.Helper()
	g.defaults()
	dataPath, idxPath := Paths(dataDir, g.Dataset, g.Generation)
	df, err := os.OpenFile(dataPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer df.Close()
	xf, err := os.OpenFile(idxPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer xf.Close()
	st, err := df.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	enc, err := schema.NewRecordEncoder(g.Fields)
	if err != nil {
		tb.Fatal(err)
	}
	vals := make([]string, len(g.Fields))
	end := st.Size()
	var data, idx []byte
	for i := int(h.Count); i < int(h.Count)+rows; i++ {
		g.Row(i, vals)
		start := len(data)
		if data, err = enc.Append(data, vals); err != nil {
			tb.Fatal(err)
		}
		data = append(data, '\n')
		end += int64(len(data) - start)
		idx = schema.AppendIndexEntry(idx, end, h.LastSeq+uint64(i-int(h.Count))+1)
	}
	must(tb, write(df, data))
	must(tb, write(xf, idx))
	h.Count += uint64(rows)
	h.LastSeq += uint64(rows)
	h.UpdatedAt = h.UpdatedAt.Add(time.Second)
	RewriteHeader(tb, dataPath, h)
	return h
}

// RewriteHeader writes h over the header of the data file at path with one
// write at offset 0, as the writer does after each batch.
func RewriteHeader(tb testing.TB, path string, h schema.Header) {
	tb.Helper()
	b, err := schema.EncodeHeader(h)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		tb.Fatal(err)
	}
}

// SetCurrent makes gen the current generation of dataset the writer's way:
// CURRENT replaced atomically (write a temporary file, rename it over
// CURRENT).
func SetCurrent(tb testing.TB, dataDir, dataset string, gen uint64) {
	tb.Helper()
	tmp := filepath.Join(dataDir, dataset, "."+schema.CurrentFile+".tmp")
	must(tb, os.WriteFile(tmp, schema.FormatCurrent(gen), 0o644))
	must(tb, os.Rename(tmp, filepath.Join(dataDir, dataset, schema.CurrentFile)))
}

// RemoveCurrent removes CURRENT the writer's way (writer --rebuild).
func RemoveCurrent(tb testing.TB, dataDir, dataset string) {
	tb.Helper()
	must(tb, os.Remove(filepath.Join(dataDir, dataset, schema.CurrentFile)))
}

// Remove deletes a generation's data and index files, as the writer's
// pruning does.
func Remove(tb testing.TB, dataDir, dataset string, gen uint64) {
	tb.Helper()
	data, idx := Paths(dataDir, dataset, gen)
	must(tb, os.Remove(data))
	must(tb, os.Remove(idx))
}

// Publish writes g and makes it current: the usual way a test sets up a
// servable dataset.
func Publish(tb testing.TB, dataDir string, g Gen) schema.Header {
	tb.Helper()
	h := Write(tb, dataDir, g)
	SetCurrent(tb, dataDir, g.Dataset, g.Generation)
	return h
}

func write(w interface{ Write([]byte) (int, error) }, b []byte) error {
	_, err := w.Write(b)
	return err
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
