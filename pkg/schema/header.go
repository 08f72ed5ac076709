package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// HeaderVersion is the metadata header format described in docs/header.md.
const HeaderVersion = 1

// HeaderBlock is the unit of a header's size: a header is one or more whole
// blocks, so rewriting it in place is one aligned write.
const HeaderBlock = 4096

// MaxHeaderSize bounds the first line a reader will take for a header.
const MaxHeaderSize = 1 << 20

// Generation states.
const (
	// StateBuilding is a replace-mode generation still receiving rows; it is
	// never served.
	StateBuilding = "building"
	// StateComplete is a generation that may be served: every row between
	// begin and end is on disk (replace), or the count covers the rows that
	// are (append).
	StateComplete = "complete"
)

// Errors from DecodeHeader and ReadHeader. ErrHeaderTorn means the bytes
// were read while being rewritten (or were damaged): read again.
var (
	ErrHeaderTorn    = errors.New("metadata header checksum mismatch (torn or damaged)")
	ErrHeaderFormat  = errors.New("not a rowpipe metadata header")
	ErrHeaderVersion = errors.New("unsupported metadata header version")
)

// Header is the metadata that opens every generation file. Its JSON field
// names are part of the file format.
type Header struct {
	Version    int    `json:"version"`
	Dataset    string `json:"dataset"`
	Generation uint64 `json:"generation"`
	State      string `json:"state"`
	Mode       Mode   `json:"mode"`
	// Sync is the sync that created the generation or last appended to it.
	Sync string `json:"sync"`
	// Count is the number of records fully on disk and covered by the index.
	Count uint64 `json:"count"`
	// Rejected counts the rows the ingester refused for this generation.
	Rejected  uint64    `json:"rejected"`
	Fields    []string  `json:"fields"`
	Source    Source    `json:"source"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// LastSeq is the stream sequence of the last message applied to this
	// file; the writer resumes after it.
	LastSeq uint64 `json:"last_seq"`
	// Size is the header's own size in bytes, including the final '\n'.
	Size int `json:"header_size"`
}

const checksumKey = `,"crc32c":"`

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// HeaderSizeFor returns the fixed size to give the header of a new
// generation: the smallest multiple of HeaderBlock that holds h with every
// member that may change during the file's life (counts, generation,
// sequence, times, state, mode, sync id, source size and digest) at its
// widest. Dataset, Fields and Source.Name are taken
// as they are in h: they must not grow later.
func HeaderSizeFor(h Header) int {
	widest := canonicalHeader(h)
	widest.Version = HeaderVersion
	widest.Count, widest.Rejected, widest.LastSeq, widest.Generation = math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64
	widest.Source.Size = math.MinInt64
	widest.Source.SHA256 = strings.Repeat("0", 64)
	widest.State = StateBuilding + StateComplete
	widest.Mode = ModeReplace + ModeAppend
	widest.Sync = strings.Repeat("0", MaxSyncIDLen)
	wide := time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -12*3600))
	widest.CreatedAt, widest.UpdatedAt = wide, wide
	widest.Size = math.MaxInt32
	body, err := json.Marshal(widest)
	if err != nil {
		panic(err) // a Header always marshals
	}
	need := len(body) + len(checksumKey) + 8 + 2 + 1
	return (need + HeaderBlock - 1) / HeaderBlock * HeaderBlock
}

// EncodeHeader returns h as exactly h.Size bytes: the JSON object, a CRC-32C
// of everything before its checksum member, spaces, and '\n'. h.Size must
// come from HeaderSizeFor (for h or an earlier state of the same file).
// Version is always written as HeaderVersion and the times in UTC. A string
// that is not valid UTF-8 is written with U+FFFD in place of each bad run, so
// that DecodeHeader then EncodeHeader gives back the same bytes.
func EncodeHeader(h Header) ([]byte, error) {
	if h.Size <= 0 || h.Size > MaxHeaderSize {
		return nil, fmt.Errorf("header size %d out of range", h.Size)
	}
	h = canonicalHeader(h)
	h.Version = HeaderVersion
	h.CreatedAt, h.UpdatedAt = h.CreatedAt.UTC(), h.UpdatedAt.UTC()
	body, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode header: %w", err)
	}
	body = body[:len(body)-1] // drop '}' to add the checksum member
	sum := crc32.Checksum(body, castagnoli)
	out := make([]byte, 0, h.Size)
	out = append(out, body...)
	out = append(out, checksumKey...)
	out = append(out, fmt.Sprintf("%08x", sum)...)
	out = append(out, '"', '}')
	if len(out)+1 > h.Size {
		return nil, fmt.Errorf("header needs %d bytes, the file reserved %d", len(out)+1, h.Size)
	}
	for len(out) < h.Size-1 {
		out = append(out, ' ')
	}
	return append(out, '\n'), nil
}

// canonicalHeader replaces invalid UTF-8 in h's strings by U+FFFD, which is
// what a decoder reads back anyway. Without it encoding/json writes \ufffd
// for each bad byte, and a decoded header would re-encode to other bytes.
func canonicalHeader(h Header) Header {
	valid := func(s string) string {
		if utf8.ValidString(s) {
			return s
		}
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	h.Dataset, h.State, h.Sync = valid(h.Dataset), valid(h.State), valid(h.Sync)
	h.Mode = Mode(valid(string(h.Mode)))
	h.Source.Name, h.Source.SHA256 = valid(h.Source.Name), valid(h.Source.SHA256)
	for i, f := range h.Fields {
		if !utf8.ValidString(f) {
			h.Fields = append([]string(nil), h.Fields...) // never write into the caller's slice
			for j := i; j < len(h.Fields); j++ {
				h.Fields[j] = valid(h.Fields[j])
			}
			break
		}
	}
	return h
}

// DecodeHeader parses one header line (with its '\n'), checking the
// checksum, then the version, then that header_size is the line's length
// (docs/header.md). Errors wrap ErrHeaderTorn (a mixed or damaged read: read
// again), ErrHeaderVersion (written by another version: do not use or
// rewrite the file) or ErrHeaderFormat (not a rowpipe header).
func DecodeHeader(line []byte) (Header, error) {
	var h Header
	if len(line) < 2 || line[0] != '{' || line[len(line)-1] != '\n' {
		return h, fmt.Errorf("%w: the first line is not a padded JSON object", ErrHeaderFormat)
	}
	obj := bytes.TrimRight(line[:len(line)-1], " ")
	at := bytes.LastIndex(obj, []byte(checksumKey))
	tail := obj[max(at, 0):]
	if at < 0 || len(tail) != len(checksumKey)+8+2 || !bytes.HasSuffix(tail, []byte(`"}`)) {
		// A torn read can cut the checksum member too; the version says
		// whether this was ever one of ours.
		if bytes.HasPrefix(obj, []byte(`{"version":`)) {
			return h, ErrHeaderTorn
		}
		return h, fmt.Errorf("%w: no checksum member", ErrHeaderFormat)
	}
	// Exactly 8 lowercase hex digits, as EncodeHeader writes them: a laxer
	// parse (fmt's %x takes " 1a2b3c4" or "1A2B3C4D") would accept bytes
	// that are not what the encoder wrote.
	want, ok := parseCRC(tail[len(checksumKey) : len(checksumKey)+8])
	if !ok || crc32.Checksum(obj[:at], castagnoli) != want {
		return h, ErrHeaderTorn
	}
	// One decode in the usual case. The version decides which error a
	// failure is: another version may lay its members out differently.
	if err := json.Unmarshal(obj, &h); err != nil || h.Version != HeaderVersion {
		var probe struct {
			Version int `json:"version"`
		}
		if perr := json.Unmarshal(obj, &probe); perr == nil && probe.Version != HeaderVersion {
			return Header{}, fmt.Errorf("%w: %d (this build reads %d)", ErrHeaderVersion, probe.Version, HeaderVersion)
		} else if err == nil {
			err = perr
		}
		return Header{}, fmt.Errorf("%w: %v", ErrHeaderFormat, err)
	}
	if h.Size != len(line) {
		return h, fmt.Errorf("%w: header_size %d but the line is %d bytes", ErrHeaderFormat, h.Size, len(line))
	}
	return h, nil
}

// parseCRC parses 8 lowercase hex digits.
func parseCRC(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, len(b) == 8
}

// ReadHeader reads and decodes the header at the start of r with one read
// of HeaderBlock bytes in the usual case (larger headers take a few more,
// up to MaxHeaderSize). It returns DecodeHeader's errors; ErrHeaderTorn
// means the bytes were caught mid-rewrite, and callers retry.
func ReadHeader(r io.ReaderAt) (Header, error) {
	buf := make([]byte, HeaderBlock)
	for {
		n, err := r.ReadAt(buf, 0)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return DecodeHeader(buf[:i+1])
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Header{}, fmt.Errorf("%w: the first line is incomplete (%d bytes)", ErrHeaderFormat, n)
			}
			return Header{}, fmt.Errorf("read header: %w", err)
		}
		if len(buf) >= MaxHeaderSize {
			return Header{}, fmt.Errorf("%w: no end of line in the first %d bytes", ErrHeaderFormat, len(buf))
		}
		buf = make([]byte, 2*len(buf))
	}
}
