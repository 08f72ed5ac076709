package writer

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Purge removes the dataset's messages with a sequence below before.
//
// When every message the stream holds is the dataset's (one dataset per
// stream, the usual case), the purge names no subject: nats-server then
// drops whole blocks and rewrites only the one that holds before. A purge
// filtered by subject reads every block below before into memory
// (decompressing it, with STREAM_COMPRESSION=s2) to remove its messages one by one, under the store's
// lock: for a 10M-row generation, 1,800 blocks of 8 MB. Messages another
// dataset publishes after the check get sequences above the stream's last
// one, so they are never below before; the filtered purge remains for a
// stream shared with other datasets.
func (e effects) Purge(ctx context.Context, name string, before uint64) error {
	if before <= 1 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	subject := schema.Subject(name)
	info, err := e.w.stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return err
	}
	if onlySubject(info.State, subject, before) {
		return e.w.stream.Purge(ctx, jetstream.WithPurgeSequence(before))
	}
	return e.w.stream.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(before))
}

// onlySubject reports whether every message of st (a state filtered by
// subject) is subject's and before lies at most one past its last, so that
// no message below before can be another subject's.
func onlySubject(st jetstream.StreamState, subject string, before uint64) bool {
	return st.Subjects[subject] == st.Msgs && before <= st.LastSeq+1
}
