package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Bounds on what a message may carry. Every string of a begin, end or
// abort body is bounded so that what a writer derives from it fits where it
// goes: the generation header (MaxHeaderSize, checked on the header itself
// by Begin.Check), the dataset state in the key-value bucket (under the
// broker's max_payload even when every byte needs a six-byte JSON escape),
// and a log line. The ingester checks a begin with Begin.Check before it
// publishes it; the writer refuses a message out of bounds.
const (
	// MaxFields is the most fields a record may have.
	MaxFields = 4096
	// MaxFieldBytes bounds one field name.
	MaxFieldBytes = 1024
	// MaxSourceNameBytes bounds a source's name (a file name or a URL).
	MaxSourceNameBytes = 8 << 10
	// MaxAbortCodeBytes bounds an abort's code.
	MaxAbortCodeBytes = 64
	// MaxReasonBytes bounds an abort's reason.
	MaxReasonBytes = 16 << 10
	// MaxEnvelopeBytes bounds a message's subject and headers together:
	// what MaxMessageBytes leaves beside a record of MaxRecordBytes.
	MaxEnvelopeBytes = MaxMessageBytes - MaxRecordBytes
)

// ErrOutOfBounds is wrapped by the errors of the Check methods about a
// count or a length past rowpipe's bounds; their other errors wrap
// ErrEnvelope.
var ErrOutOfBounds = errors.New("out of bounds")

// Check reports whether s is within bounds: a name of at most
// MaxSourceNameBytes, a size of -1 (unknown) or more, and a digest that is
// empty or 64 lowercase hex digits.
func (s Source) Check() error {
	if len(s.Name) > MaxSourceNameBytes {
		return fmt.Errorf("%w: source name of %d bytes, at most %d allowed", ErrOutOfBounds, len(s.Name), MaxSourceNameBytes)
	}
	if s.Size < -1 {
		return fmt.Errorf("%w: source size %d", ErrOutOfBounds, s.Size)
	}
	if s.SHA256 != "" && !isLowerHex(s.SHA256, 64) {
		return fmt.Errorf("%w: source sha256 %q is not 64 lowercase hex digits", ErrOutOfBounds, truncate(s.SHA256, 80))
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Check reports whether b may open a sync: its version is EnvelopeVersion,
// its dataset, sync id and mode are valid, its fields are 1 to MaxFields
// distinct names of 1 to MaxFieldBytes bytes of valid UTF-8, its renames
// and source are within bounds, and the header of the generation it
// creates fits in MaxHeaderSize. The error wraps ErrOutOfBounds or
// ErrEnvelope and says what to change.
func (b Begin) Check() error {
	if b.Version != EnvelopeVersion {
		return fmt.Errorf("%w: begin of version %d, this build reads version %d", ErrEnvelope, b.Version, EnvelopeVersion)
	}
	if err := ValidateDataset(b.Dataset); err != nil {
		return fmt.Errorf("%w: %w", ErrEnvelope, err)
	}
	if err := ValidateSyncID(b.Sync); err != nil {
		return err
	}
	if _, err := ParseMode(string(b.Mode)); err != nil {
		return fmt.Errorf("%w: %w", ErrEnvelope, err)
	}
	if err := checkFields(b.Fields); err != nil {
		return err
	}
	if len(b.Renamed) > len(b.Fields) {
		return fmt.Errorf("%w: %d renames for %d fields", ErrOutOfBounds, len(b.Renamed), len(b.Fields))
	}
	for _, r := range b.Renamed {
		if len(r.From) > MaxFieldBytes || len(r.To) > MaxFieldBytes {
			return fmt.Errorf("%w: a rename of column %d is longer than %d bytes", ErrOutOfBounds, r.Column, MaxFieldBytes)
		}
	}
	if err := b.Source.Check(); err != nil {
		return err
	}
	if _, err := ValidateIndexColumns(b.Fields, b.Index); err != nil {
		return fmt.Errorf("%w: %w", ErrEnvelope, err)
	}
	h := Header{Dataset: b.Dataset, Mode: b.Mode, Sync: b.Sync, Fields: b.Fields, Source: b.Source}
	if n := HeaderSizeFor(h); n > MaxHeaderSize {
		return fmt.Errorf("%w: the fields and source name need a header of %d bytes, at most %d allowed; use fewer or shorter column names", ErrOutOfBounds, n, MaxHeaderSize)
	}
	return nil
}

func checkFields(fields []string) error {
	if len(fields) == 0 || len(fields) > MaxFields {
		return fmt.Errorf("%w: %d fields, 1 to %d allowed", ErrOutOfBounds, len(fields), MaxFields)
	}
	seen := make(map[string]struct{}, len(fields))
	for i, f := range fields {
		switch {
		case f == "" || len(f) > MaxFieldBytes:
			return fmt.Errorf("%w: field %d is %d bytes long, 1 to %d allowed", ErrOutOfBounds, i+1, len(f), MaxFieldBytes)
		case !utf8.ValidString(f):
			return fmt.Errorf("%w: field %d is not valid UTF-8", ErrEnvelope, i+1)
		}
		if _, dup := seen[f]; dup {
			return fmt.Errorf("%w: field %q appears twice", ErrEnvelope, truncate(f, 80))
		}
		seen[f] = struct{}{}
	}
	return nil
}

// Check reports whether e is within bounds (its source's).
func (e End) Check() error { return e.Source.Check() }

// Check reports whether a is within bounds: a code of at most
// MaxAbortCodeBytes and a reason of at most MaxReasonBytes.
func (a Abort) Check() error {
	if len(a.Code) > MaxAbortCodeBytes || len(a.Reason) > MaxReasonBytes {
		return fmt.Errorf("%w: abort code of %d bytes and reason of %d, at most %d and %d allowed",
			ErrOutOfBounds, len(a.Code), len(a.Reason), MaxAbortCodeBytes, MaxReasonBytes)
	}
	return nil
}

// DecodeBegin parses and checks a begin body. Its errors are *Refusal:
// ReasonVersion for another envelope version, ReasonBadBegin otherwise.
func DecodeBegin(body []byte) (Begin, error) {
	var b Begin
	if err := json.Unmarshal(body, &b); err != nil {
		return b, &Refusal{Reason: ReasonBadBegin, Err: fmt.Errorf("begin body: %w", err)}
	}
	if b.Version != EnvelopeVersion {
		return b, Refuse(ReasonVersion, "begin of version %d, this build reads version %d", b.Version, EnvelopeVersion)
	}
	if err := b.Check(); err != nil {
		return b, &Refusal{Reason: ReasonBadBegin, Err: err}
	}
	return b, nil
}

// DecodeEnd parses and checks an end body; its errors are *Refusal
// (ReasonBadBody).
func DecodeEnd(body []byte) (End, error) {
	var e End
	if err := json.Unmarshal(body, &e); err != nil {
		return e, &Refusal{Reason: ReasonBadBody, Err: fmt.Errorf("end body: %w", err)}
	}
	if err := e.Check(); err != nil {
		return e, &Refusal{Reason: ReasonBadBody, Err: err}
	}
	return e, nil
}

// DecodeAbort parses and checks an abort body; its errors are *Refusal
// (ReasonBadBody).
func DecodeAbort(body []byte) (Abort, error) {
	var a Abort
	if err := json.Unmarshal(body, &a); err != nil {
		return a, &Refusal{Reason: ReasonBadBody, Err: fmt.Errorf("abort body: %w", err)}
	}
	if err := a.Check(); err != nil {
		return a, &Refusal{Reason: ReasonBadBody, Err: err}
	}
	return a, nil
}

// EnvelopeSize is the size of a message's subject and headers as they
// travel (NATS/1.0 header block), for budgets that must count what a
// message really holds, not only its body.
func EnvelopeSize(subject string, h map[string][]string) int {
	n := len(subject)
	if len(h) > 0 {
		n += len("NATS/1.0\r\n\r\n")
		for k, vs := range h {
			for _, v := range vs {
				n += len(k) + len(": \r\n") + len(v)
			}
		}
	}
	return n
}

// CheckEnvelopeSize refuses (ReasonOversize) a message whose subject and
// headers exceed MaxEnvelopeBytes: rowpipe never publishes such a message.
func CheckEnvelopeSize(subject string, h map[string][]string) error {
	if n := EnvelopeSize(subject, h); n > MaxEnvelopeBytes {
		return Refuse(ReasonOversize, "subject and headers of %d bytes, at most %d allowed", n, MaxEnvelopeBytes)
	}
	return nil
}
