// Package generation owns the files of one generation of a dataset, as
// pkg/schema defines them: the NDJSON data file that opens with the
// fixed-size metadata header, the offset index beside it and the rejects
// file. It appends records in batches (data, index, rejects, sync, then the
// header in place), changes the header's state, rolls an append back,
// recovers a torn tail or a torn header after a crash, and removes the
// files.
//
// The header on disk only ever covers records that are fully written (and,
// unless the policy is SyncOff, synced): every batch writes and syncs the
// records and index entries before the header that counts them. A failed
// Flush leaves the header as it was and keeps the batch, so calling Flush
// again retries it at the same offsets.
package generation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// Policy says when writes are forced to disk (FSYNC).
type Policy int

const (
	// SyncBatch syncs data and index after each batch, before the header
	// that counts them is rewritten; the header itself becomes durable with
	// the next sync. A header that is older than the data is always safe.
	SyncBatch Policy = iota
	// SyncAlways also syncs the header after rewriting it, so each batch
	// is fully durable before the next one starts.
	SyncAlways
	// SyncOff never syncs: the files survive a crash of the process but not
	// of the machine.
	SyncOff
)

// ParsePolicy accepts "batch", "always" and "off".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "batch", "":
		return SyncBatch, nil
	case "always":
		return SyncAlways, nil
	case "off":
		return SyncOff, nil
	}
	return SyncBatch, fmt.Errorf("FSYNC %q: want batch, always or off", s)
}

func (p Policy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncOff:
		return "off"
	}
	return "batch"
}

// Files says where a dataset's generation files live and how to write them.
type Files struct {
	FS     disk.FS
	Dir    string // DATA_DIR/<dataset>
	Policy Policy
	// OnSync, when set, is told how long each fsync took.
	OnSync func(time.Duration)
}

func (f Files) path(name string) string { return filepath.Join(f.Dir, name) }

func (f Files) sync(file disk.File) error {
	if f.Policy == SyncOff {
		return nil
	}
	start := time.Now()
	err := file.Sync()
	if f.OnSync != nil {
		f.OnSync(time.Since(start))
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", file.Name(), err)
	}
	return nil
}

func (f Files) syncDir() error {
	if f.Policy == SyncOff {
		return nil
	}
	start := time.Now()
	err := f.FS.SyncDir(f.Dir)
	if f.OnSync != nil {
		f.OnSync(time.Since(start))
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", f.Dir, err)
	}
	return nil
}

// ErrCorrupt is wrapped by errors about files whose bytes contradict their
// header in a way a crash cannot explain (a file shorter than its header
// says). Such a dataset is rebuilt from the stream (writer --rebuild).
var ErrCorrupt = errors.New("generation files damaged")

// Gen is one open generation. It is not safe for concurrent use.
type Gen struct {
	f       Files
	gen     uint64
	data    disk.File
	index   disk.File
	rejects disk.File // nil until the generation has a rejects file

	hdr      schema.Header // as on disk
	dataEnd  int64         // end of the last record the header counts
	rejEnd   int64         // end of the last reject the header counts
	lastLine uint64        // CSV line of the last reject written (pending included)

	// The batch not yet on disk. The records are the caller's own bytes
	// (see Append), written through wbuf: copying a whole batch would
	// double what the writer holds while it waits for fsync.
	recs       [][]byte
	recBytes   int // the records' bytes, a '\n' each included
	ibuf, rbuf []byte
	wbuf       []byte // staging for the records' write, writeChunk at most
	pend       uint64
	pendRej    uint64
	pendSeq    uint64
	pendTime   time.Time
}

const (
	// maxKeptBuffer is the capacity above which a batch buffer is
	// released after a flush instead of being kept for the next batch.
	maxKeptBuffer = 4 << 20
	// maxKeptRecords is the same for the batch's list of records.
	maxKeptRecords = 4096
	// writeChunk is the most record bytes one write carries: large enough
	// that a batch takes a few system calls, small enough to stay out of
	// the writer's peak memory.
	writeChunk = 64 << 10
)

// Create starts generation h.Generation: the data file with header h
// (Size and Version are set here) and an empty index, replacing any
// leftover files of that number. Files and directory are synced unless the
// policy is SyncOff.
func Create(f Files, h schema.Header) (*Gen, error) {
	h.Version = schema.HeaderVersion
	h.Size = schema.HeaderSizeFor(h)
	hb, err := schema.EncodeHeader(h)
	if err != nil {
		return nil, err
	}
	if err := disk.RemoveIfExists(f.FS, f.path(schema.RejectsFile(h.Generation))); err != nil {
		return nil, err
	}
	g := &Gen{f: f, gen: h.Generation, hdr: h, dataEnd: int64(h.Size)}
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()
	if g.data, err = f.FS.OpenFile(f.path(schema.DataFile(h.Generation)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return nil, err
	}
	if g.index, err = f.FS.OpenFile(f.path(schema.IndexFile(h.Generation)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return nil, err
	}
	if err := writeFull(g.data, hb, 0); err != nil {
		return nil, err
	}
	if err := writeFull(g.index, schema.AppendIndexHeader(nil, int64(h.Size)), 0); err != nil {
		return nil, err
	}
	if err := f.sync(g.data); err != nil {
		return nil, err
	}
	if err := f.sync(g.index); err != nil {
		return nil, err
	}
	if err := f.syncDir(); err != nil {
		return nil, err
	}
	ok = true
	return g, nil
}

// Recovery is what Open knows besides the files.
type Recovery struct {
	// Base is a header this file is known to have had durably: the
	// generation's header at its creation, or at the last state change.
	// With it a torn header is rebuilt from the index; without it a torn
	// header is an error.
	Base *schema.Header
	// TimeOf returns the stream timestamp of message seq; it sets
	// UpdatedAt of a header rebuilt from the index.
	TimeOf func(seq uint64) (time.Time, error)
}

// Recovered says what Open had to repair.
type Recovered struct {
	TornHeader       bool  // the header was rebuilt from the index
	DataTruncated    int64 // bytes cut from the data file's tail
	IndexTruncated   int64 // bytes cut from the index's tail
	RejectsTruncated int64 // bytes cut from the rejects file's tail
}

// Open opens generation gen for writing after a restart: it reads the
// header (rebuilding a torn one from the index and rec.Base), then cuts
// the data, index and rejects files back to what the header counts, so
// that appending can resume exactly.
func Open(f Files, gen uint64, rec Recovery) (*Gen, Recovered, error) {
	var done Recovered
	g := &Gen{f: f, gen: gen}
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()
	var err error
	if g.data, err = f.FS.OpenFile(f.path(schema.DataFile(gen)), os.O_RDWR, 0); err != nil {
		return nil, done, err
	}
	if g.index, err = f.FS.OpenFile(f.path(schema.IndexFile(gen)), os.O_RDWR, 0); err != nil {
		return nil, done, err
	}
	if g.rejects, err = f.FS.OpenFile(f.path(schema.RejectsFile(gen)), os.O_RDWR, 0); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, done, err
		}
		g.rejects = nil
	}
	dataSize, err := size(g.data)
	if err != nil {
		return nil, done, err
	}
	idxSize, err := size(g.index)
	if err != nil {
		return nil, done, err
	}
	var rejSize int64
	if g.rejects != nil {
		if rejSize, err = size(g.rejects); err != nil {
			return nil, done, err
		}
	}

	h, err := schema.ReadHeader(g.data)
	switch {
	case err == nil:
		if h.Generation != gen {
			return nil, done, fmt.Errorf("%w: %s says it is generation %d", ErrCorrupt, g.data.Name(), h.Generation)
		}
		if rec.Base != nil && h.Count < rec.Base.Count {
			return nil, done, fmt.Errorf("%w: %s counts %d records but %d were durable before (FSYNC=off and a power loss?)", ErrCorrupt, g.data.Name(), h.Count, rec.Base.Count)
		}
	case (errors.Is(err, schema.ErrHeaderTorn) || errors.Is(err, schema.ErrHeaderFormat)) && rec.Base != nil:
		if h, err = g.rebuildHeader(*rec.Base, dataSize, idxSize, rejSize, rec.TimeOf); err != nil {
			return nil, done, err
		}
		done.TornHeader = true
	default:
		return nil, done, fmt.Errorf("%s: %w", g.data.Name(), err)
	}
	g.hdr = h

	// Cut the tails back to what the header counts.
	x, err := schema.OpenIndex(g.index)
	if err != nil {
		return nil, done, fmt.Errorf("%s: %w", g.index.Name(), err)
	}
	if x.DataStart() != int64(h.Size) {
		return nil, done, fmt.Errorf("%w: %s starts records at %d, the header is %d bytes", ErrCorrupt, g.index.Name(), x.DataStart(), h.Size)
	}
	if idxSize < schema.IndexSize(h.Count) {
		return nil, done, fmt.Errorf("%w: %s holds %d bytes, the header counts %d records", ErrCorrupt, g.index.Name(), idxSize, h.Count)
	}
	g.dataEnd = int64(h.Size)
	if h.Count > 0 {
		if g.dataEnd, _, err = x.Entry(h.Count - 1); err != nil {
			return nil, done, err
		}
	}
	if dataSize < g.dataEnd {
		return nil, done, fmt.Errorf("%w: %s holds %d bytes, its %d records end at %d", ErrCorrupt, g.data.Name(), dataSize, h.Count, g.dataEnd)
	}
	if h.Count > 0 {
		var nl [1]byte
		if _, err := g.data.ReadAt(nl[:], g.dataEnd-1); err != nil || nl[0] != '\n' {
			return nil, done, fmt.Errorf("%w: record %d of %s does not end with a newline", ErrCorrupt, h.Count, g.data.Name())
		}
	}
	if dataSize > g.dataEnd {
		if err := g.data.Truncate(g.dataEnd); err != nil {
			return nil, done, err
		}
		done.DataTruncated = dataSize - g.dataEnd
	}
	if want := schema.IndexSize(h.Count); idxSize > want {
		if err := g.index.Truncate(want); err != nil {
			return nil, done, err
		}
		done.IndexTruncated = idxSize - want
	}
	if g.rejects != nil {
		end, lines, last, err := scanLines(g.rejects, rejSize, h.Rejected)
		if err != nil {
			return nil, done, err
		}
		if lines < h.Rejected {
			return nil, done, fmt.Errorf("%w: %s holds %d rejects, the header counts %d", ErrCorrupt, g.rejects.Name(), lines, h.Rejected)
		}
		if rejSize > end {
			if err := g.rejects.Truncate(end); err != nil {
				return nil, done, err
			}
			done.RejectsTruncated = rejSize - end
		}
		g.rejEnd, g.lastLine = end, last
	} else if h.Rejected > 0 {
		return nil, done, fmt.Errorf("%w: the header counts %d rejects and %s is missing", ErrCorrupt, h.Rejected, schema.RejectsFile(gen))
	}
	if done.TornHeader || done.DataTruncated > 0 || done.IndexTruncated > 0 || done.RejectsTruncated > 0 {
		if done.TornHeader {
			if err := g.writeHeader(h, true); err != nil {
				return nil, done, err
			}
		}
		if err := g.syncAll(); err != nil {
			return nil, done, err
		}
	}
	ok = true
	return g, done, nil
}

// rebuildHeader rebuilds a torn header: base with the count and last
// sequence of the longest run of index entries past base.Count that point
// at whole records, and the rejects file's whole lines.
func (g *Gen) rebuildHeader(base schema.Header, dataSize, idxSize, rejSize int64, timeOf func(uint64) (time.Time, error)) (schema.Header, error) {
	h := base
	if h.Generation != g.gen || h.Size <= 0 {
		return h, fmt.Errorf("%w: the known header of generation %d does not fit %s", ErrCorrupt, g.gen, g.data.Name())
	}
	x, err := schema.OpenIndex(g.index)
	if err != nil {
		return h, fmt.Errorf("%s: %w", g.index.Name(), err)
	}
	prevEnd, prevSeq := int64(h.Size), uint64(0)
	if h.Count > 0 {
		if prevEnd, prevSeq, err = x.Entry(h.Count - 1); err != nil {
			return h, err
		}
	}
	entries := uint64((idxSize - schema.IndexHeaderSize) / schema.IndexEntrySize)
	var edge [2]byte
	for i := h.Count; i < entries; i++ {
		end, seq, err := x.Entry(i)
		if err != nil {
			return h, err
		}
		if end <= prevEnd || end > dataSize || seq <= prevSeq {
			break
		}
		if _, err := g.data.ReadAt(edge[:1], prevEnd); err != nil || edge[0] != '{' {
			break
		}
		if _, err := g.data.ReadAt(edge[:], end-2); err != nil || edge != [2]byte{'}', '\n'} {
			break
		}
		h.Count, h.LastSeq, prevEnd, prevSeq = i+1, seq, end, seq
	}
	if h.Count > base.Count && timeOf != nil {
		if t, err := timeOf(h.LastSeq); err == nil {
			h.UpdatedAt = t
		}
	}
	if g.rejects != nil {
		_, lines, _, err := scanLines(g.rejects, rejSize, ^uint64(0))
		if err != nil {
			return h, err
		}
		h.Rejected = max(lines, base.Rejected)
	}
	return h, nil
}

// Generation is the generation's number.
func (g *Gen) Generation() uint64 { return g.gen }

// Header is the header as it is on disk.
func (g *Gen) Header() schema.Header { return g.hdr }

// Records counts the records written, including those of the batch not
// yet flushed.
func (g *Gen) Records() uint64 { return g.hdr.Count + g.pend }

// Rejects counts the rejects written, including those not yet flushed.
func (g *Gen) Rejects() uint64 { return g.hdr.Rejected + g.pendRej }

// LastRejectLine is the CSV line of the last reject written (0: none).
func (g *Gen) LastRejectLine() uint64 { return g.lastLine }

// PendingBytes is the size of the batch not yet flushed.
func (g *Gen) PendingBytes() int { return g.recBytes + len(g.rbuf) + len(g.ibuf) }

// Pending reports whether a batch waits for Flush.
func (g *Gen) Pending() bool { return g.pend > 0 || g.pendRej > 0 || g.pendSeq > 0 }

// Append adds one record (without its '\n') to the batch; seq and t are
// its message's stream sequence and timestamp. The record is not copied:
// it must not change until a Flush has written it or a RollBack or Close
// has dropped it (the writer passes message bodies it holds until then).
func (g *Gen) Append(record []byte, seq uint64, t time.Time) {
	g.recs = append(g.recs, record)
	g.recBytes += len(record) + 1
	g.ibuf = schema.AppendIndexEntry(g.ibuf, g.dataEnd+int64(g.recBytes), seq)
	g.pend++
	g.pendSeq, g.pendTime = seq, t
}

// AppendReject adds one reject line (compact JSON, without '\n') for CSV
// line to the batch.
func (g *Gen) AppendReject(line []byte, csvLine, seq uint64, t time.Time) {
	g.rbuf = append(g.rbuf, line...)
	g.rbuf = append(g.rbuf, '\n')
	g.pendRej++
	g.lastLine = csvLine
	g.pendSeq, g.pendTime = seq, t
}

// Touch records that message seq was applied to this generation without
// adding a record, so the next Flush moves LastSeq and UpdatedAt to it.
func (g *Gen) Touch(seq uint64, t time.Time) { g.pendSeq, g.pendTime = seq, t }

// Flush writes the batch: records, index entries and rejects, syncs them
// (policy), then rewrites the header with the new count, last sequence and
// update time. On error nothing the header says has changed, and the batch
// is kept: call Flush again to retry.
func (g *Gen) Flush() error {
	if !g.Pending() {
		return nil
	}
	h := g.hdr
	h.Count += g.pend
	h.Rejected += g.pendRej
	h.LastSeq, h.UpdatedAt = g.pendSeq, g.pendTime
	if err := g.writeBatch(); err != nil {
		return err
	}
	if err := g.writeHeader(h, g.f.Policy == SyncAlways); err != nil {
		return err
	}
	g.settle(h)
	return nil
}

// SetHeader flushes the batch, then writes h (same generation and size) as
// the header and syncs every file of the generation, whatever the policy
// except SyncOff: this is how a generation is completed, or how a
// finished append records its sync and source.
func (g *Gen) SetHeader(h schema.Header) error {
	if err := g.Flush(); err != nil {
		return err
	}
	h.Generation, h.Size, h.Version = g.gen, g.hdr.Size, schema.HeaderVersion
	if err := g.writeHeader(h, false); err != nil {
		return err
	}
	if err := g.syncAll(); err != nil {
		return err
	}
	g.hdr = h
	return nil
}

// RollBack drops the batch and cuts the generation back to to: its
// header first, so it never counts a record being removed, then the data,
// index and rejects tails. to.Count and to.Rejected must not exceed what
// the generation holds.
func (g *Gen) RollBack(to schema.Header) error {
	g.drop()
	if to.Count > g.hdr.Count || to.Rejected > g.hdr.Rejected {
		return fmt.Errorf("roll back generation %d to %d records and %d rejects: it holds %d and %d", g.gen, to.Count, to.Rejected, g.hdr.Count, g.hdr.Rejected)
	}
	to.Generation, to.Size, to.Version = g.gen, g.hdr.Size, schema.HeaderVersion
	x, err := schema.OpenIndex(g.index)
	if err != nil {
		return err
	}
	dataEnd := int64(to.Size)
	if to.Count > 0 {
		if dataEnd, _, err = x.Entry(to.Count - 1); err != nil {
			return err
		}
	}
	var rejEnd int64
	var lastLine uint64
	if g.rejects != nil {
		sz, err := size(g.rejects)
		if err != nil {
			return err
		}
		if rejEnd, _, lastLine, err = scanLines(g.rejects, sz, to.Rejected); err != nil {
			return err
		}
	}
	if err := g.writeHeader(to, false); err != nil {
		return err
	}
	if err := g.syncData(); err != nil {
		return err
	}
	if err := g.data.Truncate(dataEnd); err != nil {
		return err
	}
	if err := g.index.Truncate(schema.IndexSize(to.Count)); err != nil {
		return err
	}
	if g.rejects != nil {
		if err := g.rejects.Truncate(rejEnd); err != nil {
			return err
		}
	}
	if err := g.syncAll(); err != nil {
		return err
	}
	g.hdr, g.dataEnd, g.rejEnd, g.lastLine = to, dataEnd, rejEnd, lastLine
	return nil
}

// Close closes the files; a batch not flushed is lost (the stream still
// has it).
func (g *Gen) Close() error {
	var errs []error
	for _, f := range []disk.File{g.data, g.index, g.rejects} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	g.data, g.index, g.rejects = nil, nil, nil
	return errors.Join(errs...)
}

// Remove deletes the files of generation gen (those that exist), its
// lookup indexes and what a build of them left, and syncs the directory.
// Open handles, such as a reader's, keep working.
func Remove(f Files, gen uint64) error {
	names := []string{schema.RejectsFile(gen)}
	entries, err := f.FS.ReadDir(f.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	prefix := schema.LookupFilePrefix(gen)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	for _, name := range append(names, schema.IndexFile(gen), schema.DataFile(gen)) {
		if err := disk.RemoveIfExists(f.FS, f.path(name)); err != nil {
			return err
		}
	}
	return f.syncDir()
}

// ReadHeader reads the header of generation gen without opening it for
// writing.
func ReadHeader(f Files, gen uint64) (schema.Header, error) {
	file, err := f.FS.OpenFile(f.path(schema.DataFile(gen)), os.O_RDONLY, 0)
	if err != nil {
		return schema.Header{}, err
	}
	defer file.Close()
	h, err := schema.ReadHeader(file)
	if err != nil {
		return h, fmt.Errorf("%s: %w", file.Name(), err)
	}
	return h, nil
}

// List returns the generation numbers that have at least one file in dir,
// in increasing order.
func List(fsys disk.FS, dir string) ([]uint64, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{}
	var gens []uint64
	for _, e := range entries {
		if g, ok := schema.GenerationOf(e.Name()); ok && !seen[g] {
			seen[g] = true
			gens = append(gens, g)
		}
	}
	slices.Sort(gens)
	return gens, nil
}

func (g *Gen) writeBatch() error {
	if len(g.recs) > 0 {
		if err := g.writeRecords(); err != nil {
			return err
		}
		if err := writeFull(g.index, g.ibuf, schema.IndexSize(g.hdr.Count)); err != nil {
			return err
		}
	}
	if len(g.rbuf) > 0 {
		if g.rejects == nil {
			f, err := g.f.FS.OpenFile(g.f.path(schema.RejectsFile(g.gen)), os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			g.rejects = f
			if err := g.f.syncDir(); err != nil {
				return err
			}
		}
		if err := writeFull(g.rejects, g.rbuf, g.rejEnd); err != nil {
			return err
		}
	}
	var files []disk.File
	if len(g.recs) > 0 {
		files = append(files, g.data, g.index)
	}
	if len(g.rbuf) > 0 {
		files = append(files, g.rejects)
	}
	return g.syncFiles(files)
}

// writeRecords writes the batch's records, each followed by '\n', at the
// end of the data the header counts: gathered in wbuf, one write per
// writeChunk bytes; a record larger than that is written on its own.
func (g *Gen) writeRecords() error {
	if g.wbuf == nil {
		g.wbuf = make([]byte, 0, writeChunk)
	}
	off, buf := g.dataEnd, g.wbuf[:0]
	for _, r := range g.recs {
		if len(buf) > 0 && len(buf)+len(r)+1 > writeChunk {
			if err := writeFull(g.data, buf, off); err != nil {
				return err
			}
			off, buf = off+int64(len(buf)), buf[:0]
		}
		if len(r)+1 > writeChunk {
			if err := writeFull(g.data, r, off); err != nil {
				return err
			}
			off, r = off+int64(len(r)), nil
		}
		buf = append(buf, r...)
		buf = append(buf, '\n')
	}
	return writeFull(g.data, buf, off)
}

func (g *Gen) settle(h schema.Header) {
	g.hdr = h
	g.dataEnd += int64(g.recBytes)
	g.rejEnd += int64(len(g.rbuf))
	g.drop()
}

func (g *Gen) drop() {
	if cap(g.rbuf) > maxKeptBuffer {
		g.rbuf = nil
	}
	if cap(g.ibuf) > maxKeptBuffer {
		g.ibuf = nil
	}
	clear(g.recs) // the caller's records are its own again
	if cap(g.recs) > maxKeptRecords {
		g.recs = nil
	}
	g.recs, g.recBytes = g.recs[:0], 0
	g.ibuf, g.rbuf = g.ibuf[:0], g.rbuf[:0]
	g.pend, g.pendRej, g.pendSeq = 0, 0, 0
	g.pendTime = time.Time{}
}

// writeHeader rewrites the header in place with one write at offset 0.
func (g *Gen) writeHeader(h schema.Header, durable bool) error {
	b, err := schema.EncodeHeader(h)
	if err != nil {
		return err
	}
	if err := writeFull(g.data, b, 0); err != nil {
		return fmt.Errorf("rewrite header: %w", err)
	}
	if durable {
		return g.syncData()
	}
	return nil
}

func (g *Gen) syncData() error { return g.f.sync(g.data) }

func (g *Gen) syncAll() error {
	files := []disk.File{g.data, g.index}
	if g.rejects != nil {
		files = append(files, g.rejects)
	}
	return g.syncFiles(files)
}

// syncFiles syncs files at the same time: the file system can commit them
// together, and the batch waits for one sync instead of two or three.
func (g *Gen) syncFiles(files []disk.File) error {
	if g.f.Policy == SyncOff || len(files) == 0 {
		return nil
	}
	if len(files) == 1 {
		return g.f.sync(files[0])
	}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, f := range files[1:] {
		wg.Go(func() { errs[i+1] = g.f.sync(f) })
	}
	errs[0] = g.f.sync(files[0])
	wg.Wait()
	return errors.Join(errs...)
}

func writeFull(f disk.File, b []byte, off int64) error {
	n, err := f.WriteAt(b, off)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("write %s at %d: %w", f.Name(), off, err)
	}
	return nil
}

func size(f disk.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// scanLines reads f (size bytes) from the start and returns the offset just
// past its first maxLines whole lines (or all of them), how many it found
// and the CSV line of the last one (the "line" member of a Reject). A line
// counts only if it looks like a JSON object: '{' ... '}' '\n'; the scan
// stops at the first that does not. Memory stays at one 64 KiB buffer.
func scanLines(f disk.File, size int64, maxLines uint64) (end int64, lines, lastLine uint64, err error) {
	if maxLines == 0 {
		return 0, 0, 0, nil
	}
	buf := make([]byte, 64<<10)
	var off, cur int64 // offset of buf[0]; start of the line being read
	prevStart := int64(-1)
	last := byte('\n')
scan:
	for off < size && lines < maxLines {
		n, rerr := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n == 0 {
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				return 0, 0, 0, rerr
			}
			break
		}
		chunk := buf[:n]
		pos := 0
		for pos < n && lines < maxLines {
			if off+int64(pos) == cur && chunk[pos] != '{' {
				break scan
			}
			i := bytes.IndexByte(chunk[pos:], '\n')
			if i < 0 {
				last = chunk[n-1]
				break
			}
			nl := pos + i
			before := last
			if nl > 0 {
				before = chunk[nl-1]
			}
			if before != '}' {
				break scan
			}
			prevStart, cur = cur, off+int64(nl)+1
			end = cur
			lines++
			pos = nl + 1
			last = '\n'
		}
		off += int64(n)
	}
	if prevStart >= 0 {
		lastLine = lastLineOf(f, prevStart, end)
	}
	return end, lines, lastLine, nil
}

func lastLineOf(f disk.File, start, end int64) uint64 {
	if end <= start {
		return 0
	}
	b := make([]byte, end-start)
	if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return 0
	}
	return rejectLine(b)
}

// rejectLine returns the "line" member of a reject's JSON, 0 if it has none.
func rejectLine(b []byte) uint64 {
	var r struct {
		Line uint64 `json:"line"`
	}
	if json.Unmarshal(b, &r) != nil {
		return 0
	}
	return r.Line
}
