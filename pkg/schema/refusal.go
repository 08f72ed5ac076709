package schema

import (
	"errors"
	"fmt"
)

// Reasons a writer refuses a message: the values of the reason label of
// rowpipe_writer_hostile_messages_total. Each names a failure the same
// message would cause again, whatever the machine's state.
const (
	// ReasonBadSubject: the subject is not rows.<valid dataset>.
	ReasonBadSubject = "bad_subject"
	// ReasonBadEnvelope: the headers are not a rowpipe envelope.
	ReasonBadEnvelope = "bad_envelope"
	// ReasonBadBody: a row, reject, end or abort body that does not parse
	// or is not a record of its generation.
	ReasonBadBody = "bad_body"
	// ReasonBadBegin: a begin body that does not parse, contradicts its
	// headers, or holds a string out of bounds.
	ReasonBadBegin = "bad_begin"
	// ReasonVersion: a begin of an envelope version this build does not read.
	ReasonVersion = "unknown_version"
	// ReasonOversize: headers or a body larger than rowpipe ever publishes.
	ReasonOversize = "oversize"
	// ReasonOutsideSync: a row, reject or end of a sync that is not open.
	ReasonOutsideSync = "outside_sync"
	// ReasonTooManyDatasets: a begin for a new dataset past MAX_DATASETS.
	ReasonTooManyDatasets = "too_many_datasets"
)

// Refusal is an error that is the message's fault: applying the same
// message again fails the same way. A writer logs it with the message's
// stream sequence, counts it under Reason and moves on; any other error is
// the machine's (a disk, the broker) and is retried.
type Refusal struct {
	Reason string // one of the Reason constants
	Err    error
}

func (e *Refusal) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Refusal) Unwrap() error { return e.Err }

// Refuse returns a *Refusal for reason with a formatted message.
func Refuse(reason, format string, args ...any) error {
	return &Refusal{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// RefusalOf returns the *Refusal err is or wraps, if any.
func RefusalOf(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}
