// Package respond writes the api's answers: the JSON error body, and a page
// of records as the JSON envelope, raw NDJSON or CSV, optionally gzipped.
//
// Records are never decoded and re-encoded for JSON or NDJSON: the file's
// lines already are the JSON objects, so a page is the envelope's head, the
// lines with each '\n' turned into ',' (the last one dropped), and "]}".
// CSV decodes each record with pkg/schema and writes it with encoding/csv.
package respond

import (
	"strconv"
	"strings"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Error is an answer other than 2xx/304: the HTTP status, a stable code for
// programs and a message for people that says what to change.
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, is sent as the Retry-After header (whole
	// seconds, rounded up).
	RetryAfter time.Duration
	// Err is the cause, for logs; never shown to the client.
	Err error
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// RetryAfterSeconds is the Retry-After value: RetryAfter rounded up to
// whole seconds, at least 1; 0 when RetryAfter is not positive.
func (e *Error) RetryAfterSeconds() int {
	if e.RetryAfter <= 0 {
		return 0
	}
	return int((e.RetryAfter + time.Second - 1) / time.Second)
}

// AppendError appends the error body {"error":{"code":"...","message":"..."}}.
func AppendError(dst []byte, code, message string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	return append(dst, "}}"...)
}

// appendString appends s as a JSON string; invalid UTF-8 (which only a
// message quoting a client's bytes can hold) is replaced, never refused.
func appendString(dst []byte, s string) []byte {
	out, err := schema.AppendJSONString(dst, s)
	if err != nil {
		out, _ = schema.AppendJSONString(dst, strings.ToValidUTF8(s, "\uFFFD"))
	}
	return out
}

// Envelope is the head of a page answer, every member but data.
type Envelope struct {
	Dataset    string
	Generation uint64
	Count      uint64
	Offset     uint64
	Limit      int
	Returned   uint64
	// NextOffset is the offset of the next page; HasNext false makes it null.
	NextOffset uint64
	HasNext    bool
}

// AppendEnvelopeHead appends the page object up to and including
// `"data":[`; the records and EnvelopeTail follow. The members come in the
// contract's order: dataset, generation, count, offset, limit, returned,
// next_offset, data (last, so a client can stream it).
func AppendEnvelopeHead(dst []byte, e Envelope) []byte {
	dst = append(dst, `{"dataset":`...)
	dst = appendString(dst, e.Dataset)
	dst = append(dst, `,"generation":`...)
	dst = strconv.AppendUint(dst, e.Generation, 10)
	dst = append(dst, `,"count":`...)
	dst = strconv.AppendUint(dst, e.Count, 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, e.Offset, 10)
	dst = append(dst, `,"limit":`...)
	dst = strconv.AppendInt(dst, int64(e.Limit), 10)
	dst = append(dst, `,"returned":`...)
	dst = strconv.AppendUint(dst, e.Returned, 10)
	dst = append(dst, `,"next_offset":`...)
	if e.HasNext {
		dst = strconv.AppendUint(dst, e.NextOffset, 10)
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, `,"data":[`...)
}

// EnvelopeTail closes a page object after its records.
const EnvelopeTail = "]}"
