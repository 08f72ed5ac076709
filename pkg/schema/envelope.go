package schema

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Event is the kind of a message on the stream. A sync is framed: one
// EventBegin, then EventRow (and EventReject) messages, then one EventEnd or
// EventAbort, all on the dataset's subject, in stream order.
type Event string

const (
	// EventBegin opens a sync; its body is a Begin.
	EventBegin Event = "begin"
	// EventRow carries one record; its body is the record's JSON object,
	// byte for byte the line the writer appends.
	EventRow Event = "row"
	// EventReject carries one CSV row the ingester refused; its body is a
	// Reject. It is kept for people to read, never served as a record.
	EventReject Event = "reject"
	// EventEnd closes a sync that read its whole source; its body is an End.
	EventEnd Event = "end"
	// EventAbort closes a sync that must not become current; its body is an
	// Abort. The previous generation stays current.
	EventAbort Event = "abort"
)

// Header names. No message carries JetStream's Nats-Msg-Id: a sync's
// messages are stored exactly once by their position (docs/messages.md,
// Deduplication).
const (
	HeaderEvent = "Rowpipe-Event"
	HeaderSync  = "Rowpipe-Sync"
	HeaderRow   = "Rowpipe-Row"
)

// EnvelopeVersion is the version of the framing and bodies described in
// docs/messages.md. A begin with a higher version is refused by the writer.
const EnvelopeVersion = 1

// MaxSyncIDLen bounds a sync id.
const MaxSyncIDLen = 32

// ErrEnvelope is wrapped by every error about a message's headers or body.
var ErrEnvelope = errors.New("malformed rowpipe message")

// Envelope is what the headers of one message say: its kind, its sync and,
// for rows, its 1-based row index. Rejects carry the CSV line in Row.
type Envelope struct {
	Event Event
	Sync  string
	Row   uint64
}

// NewSyncID returns a fresh random sync id (16 lowercase hex digits).
func NewSyncID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("schema: crypto/rand failed: %v", err)) // the OS has no entropy: nothing sane to do
	}
	return hex.EncodeToString(b[:])
}

// ValidateSyncID checks that id is 1 to 32 lowercase letters and digits.
func ValidateSyncID(id string) error {
	if id == "" || len(id) > MaxSyncIDLen {
		return fmt.Errorf("%w: sync id %q must be 1 to %d characters", ErrEnvelope, truncate(id, 40), MaxSyncIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return fmt.Errorf("%w: sync id %q may hold only lowercase letters and digits", ErrEnvelope, id)
		}
	}
	return nil
}

// Headers returns the message headers for e, ready to convert to
// nats.Header.
func (e Envelope) Headers() map[string][]string {
	h := map[string][]string{
		HeaderEvent: {string(e.Event)},
		HeaderSync:  {e.Sync},
	}
	if e.Event == EventRow || e.Event == EventReject {
		h[HeaderRow] = []string{strconv.FormatUint(e.Row, 10)}
	}
	return h
}

// ParseEnvelope reads the envelope from a message's headers. Anything that
// is not a well-formed rowpipe envelope is an error wrapping ErrEnvelope:
// the writer logs and skips such messages.
func ParseEnvelope(h map[string][]string) (Envelope, error) {
	first := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var e Envelope
	switch ev := Event(first(HeaderEvent)); ev {
	case EventBegin, EventRow, EventReject, EventEnd, EventAbort:
		e.Event = ev
	case "":
		return e, fmt.Errorf("%w: no %s header", ErrEnvelope, HeaderEvent)
	default:
		return e, fmt.Errorf("%w: unknown %s %q", ErrEnvelope, HeaderEvent, truncate(string(ev), 40))
	}
	e.Sync = first(HeaderSync)
	if err := ValidateSyncID(e.Sync); err != nil {
		return e, err
	}
	if e.Event == EventRow || e.Event == EventReject {
		n, err := strconv.ParseUint(first(HeaderRow), 10, 64)
		if err != nil || n == 0 {
			return e, fmt.Errorf("%w: %s %q is not a positive integer", ErrEnvelope, HeaderRow, truncate(first(HeaderRow), 40))
		}
		e.Row = n
	}
	return e, nil
}

// Mode says what a sync does to its dataset.
type Mode string

const (
	// ModeReplace builds a new generation that replaces the current one once complete.
	ModeReplace Mode = "replace"
	// ModeAppend adds rows to the current generation, visible as they are written.
	ModeAppend Mode = "append"
)

// ParseMode accepts "replace" and "append".
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case ModeReplace, ModeAppend:
		return Mode(s), nil
	}
	return "", fmt.Errorf("mode %q: want %q or %q", s, ModeReplace, ModeAppend)
}

// Source describes where a sync's rows came from.
type Source struct {
	// Name is the file name or URL the user gave ("-" for standard input).
	Name string `json:"name"`
	// Size is the source's size in bytes, -1 when unknown in advance.
	Size int64 `json:"size"`
	// SHA256 is the hex digest of the source bytes, empty until known.
	SHA256 string `json:"sha256,omitempty"`
}

// Rename records a header name that was made unique.
type Rename struct {
	Column int    `json:"column"` // 1-based
	From   string `json:"from"`
	To     string `json:"to"`
}

// Begin is the body of an EventBegin message.
type Begin struct {
	Version int      `json:"version"`
	Dataset string   `json:"dataset"`
	Sync    string   `json:"sync"`
	Mode    Mode     `json:"mode"`
	Fields  []string `json:"fields"`
	Renamed []Rename `json:"renamed,omitempty"`
	// Index names the fields the writer builds a lookup index of, for
	// each generation of the sync (docs/lookup.md); omitted when none.
	Index     []string  `json:"index,omitempty"`
	Source    Source    `json:"source"`
	StartedAt time.Time `json:"started_at"`
}

// End is the body of an EventEnd message: what the ingester read.
type End struct {
	Rows     uint64 `json:"rows"`
	Rejected uint64 `json:"rejected"`
	Source   Source `json:"source"`
}

// Abort codes say why a sync was abandoned.
const (
	AbortStrict      = "strict"      // --strict and a row was rejected
	AbortUnchanged   = "unchanged"   // the source equals the current generation's
	AbortInterrupted = "interrupted" // the ingester stopped before the end of its source
	AbortFailed      = "failed"      // the source could not be read to its end
)

// Abort is the body of an EventAbort message.
type Abort struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// Reject is the body of an EventReject message: one CSV row that was refused.
type Reject struct {
	Line   int    `json:"line"`             // line of the source where the row starts, 1-based
	Column int    `json:"column,omitempty"` // 1-based column (field for UTF-8 errors), 0 when not known
	Reason string `json:"reason"`           // a short stable phrase: "wrong number of fields", ...
	Error  string `json:"error"`            // the full message, naming the file and line
	Raw    string `json:"raw,omitempty"`    // the start of the row's text, valid UTF-8, for a person to read
}
