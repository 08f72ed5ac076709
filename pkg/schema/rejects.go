package schema

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Bounds of a Reject as a reader hands it on (docs/rejects.md). The
// ingester cuts Raw at RejectRawMax when it publishes; a reader cuts Raw and
// Error again, so that whatever a rejects file holds, a reject it serves
// stays small.
const (
	// RejectRawMax is the most bytes of a refused row's text in Reject.Raw.
	RejectRawMax = 256
	// RejectErrorMax is the most bytes of Reject.Error.
	RejectErrorMax = 1024
	// RejectLineMax is the longest line of a rejects file a reader decodes;
	// a longer one is skipped and reported as ErrRejectLine.
	RejectLineMax = 64 << 10
)

// ErrRejectLine is the reason for a line of a rejects file that is not a
// reject body: not a JSON object, a line below 1, or over RejectLineMax.
var ErrRejectLine = errors.New("unreadable reject line")

// DecodeReject decodes one line of a rejects file (without its '\n') and
// cuts Raw and Error to their bounds at a UTF-8 boundary. An error wraps
// ErrRejectLine.
func DecodeReject(line []byte) (Reject, error) {
	var r Reject
	if len(line) > RejectLineMax {
		return r, fmt.Errorf("%w: %d bytes, at most %d", ErrRejectLine, len(line), RejectLineMax)
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return Reject{}, fmt.Errorf("%w: %v", ErrRejectLine, err)
	}
	if r.Line < 1 {
		return Reject{}, fmt.Errorf("%w: line %d, want ≥ 1", ErrRejectLine, r.Line)
	}
	if r.Column < 0 {
		r.Column = 0
	}
	r.Raw = cutUTF8(r.Raw, RejectRawMax)
	r.Error = cutUTF8(r.Error, RejectErrorMax)
	return r, nil
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// end inside a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// RejectsReader reads a rejects file from its start, one reject at a time,
// in O(1) memory: at most RejectLineMax bytes of one line are held. It reads
// at most the count of rejects the generation's header gives (Header.Rejected):
// lines past it are not yet counted and do not exist for a reader.
type RejectsReader struct {
	br   *bufio.Reader
	buf  []byte // the line Next decodes, reused
	left uint64 // rejects still to read, of the header's count
	n    uint64 // rejects read or skipped so far
}

// NewRejectsReader reads at most count rejects from r, a rejects file
// opened at its start.
func NewRejectsReader(r io.Reader, count uint64) *RejectsReader {
	return &RejectsReader{br: bufio.NewReaderSize(r, 16<<10), left: count}
}

// Skip passes over the next n rejects without decoding them and returns how
// many it passed: fewer than n only at the end (with io.EOF) or on an error.
func (r *RejectsReader) Skip(n uint64) (uint64, error) {
	var done uint64
	for done < n {
		if _, _, err := r.line(nil); err != nil {
			return done, err
		}
		done++
	}
	return done, nil
}

// Next returns the next reject. At the end of the count, or of the file, it
// returns io.EOF. A line that is not a reject body gives an error wrapping
// ErrRejectLine; the reader is then at the next line and Next may go on.
func (r *RejectsReader) Next() (Reject, error) {
	if r.buf == nil {
		r.buf = make([]byte, 0, 1024)
	}
	line, long, err := r.line(r.buf[:0])
	r.buf = line[:0]
	if err != nil {
		return Reject{}, err
	}
	if long {
		return Reject{}, fmt.Errorf("reject %d: %w: over %d bytes", r.n, ErrRejectLine, RejectLineMax)
	}
	rej, err := DecodeReject(line)
	if err != nil {
		return Reject{}, fmt.Errorf("reject %d: %w", r.n, err)
	}
	return rej, nil
}

// line reads the next line into buf (appending at most RejectLineMax
// bytes; long reports a longer line, whose rest is skipped). buf nil reads
// nothing into memory. A last line without '\n' is torn and does not count:
// it ends the file.
func (r *RejectsReader) line(buf []byte) (out []byte, long bool, err error) {
	if r.left == 0 {
		return buf, false, io.EOF
	}
	for {
		chunk, err := r.br.ReadSlice('\n')
		if buf != nil && !long {
			if len(buf)+len(chunk) > RejectLineMax+1 {
				long = true
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			r.left--
			r.n++
			return bytes.TrimSuffix(buf, []byte{'\n'}), long, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return buf, false, io.EOF
		default:
			return buf, false, fmt.Errorf("read rejects: %w", err)
		}
	}
}
