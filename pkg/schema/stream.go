package schema

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream limits. One owner for each: the ingester enforces MaxRecordBytes
// on what it publishes, the stream refuses anything over MaxMessageBytes.
const (
	// MaxMessageBytes is the largest message the stream accepts (headers
	// and body): nats-server's default max_payload.
	MaxMessageBytes = 1 << 20
	// MaxRecordBytes is the largest record body the ingester publishes; the
	// rest of MaxMessageBytes is left for headers.
	MaxRecordBytes = MaxMessageBytes - 8<<10
	// DefaultStreamMaxBytes bounds the stream's storage. With DiscardNew a
	// full stream refuses new rows instead of dropping old ones; the writer
	// purges superseded syncs so the bound tracks the data, not its history.
	DefaultStreamMaxBytes = 4 << 30
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. It
	// catches a publish retried right after a lost ack or a reconnect;
	// anything older is deduplicated by the writer through the row index.
	// The broker keeps ~150 B per id inside the window, so the window is a
	// memory cost: 2 minutes at 40K rows/s held ~700 MB, 2 s holds ~12 MB.
	DuplicateWindow = 2 * time.Second
)

// StreamOptions are the settings a deployment chooses for the stream.
type StreamOptions struct {
	Name     string // STREAM
	Replicas int    // STREAM_REPLICAS
	MaxBytes int64  // STREAM_MAX_BYTES
}

// StreamConfig is the one definition of the rows stream, used by whoever
// creates or updates it (ingester, writer, stack).
func StreamConfig(o StreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        o.Name,
		Description: "rowpipe: CSV syncs, one message per row, framed by begin and end",
		Subjects:    []string{AllSubjects},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.MaxBytes,
		MaxMsgSize:  MaxMessageBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    max(o.Replicas, 1),
		Duplicates:  DuplicateWindow,
	}
}

// EnsureStream creates the stream, or updates it to StreamConfig(o).
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, StreamConfig(o))
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", o.Name, err)
	}
	return s, nil
}

// EnsureStateBucket creates or binds the key-value bucket of dataset states.
func EnsureStateBucket(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.KeyValue, error) {
	name := StateBucket(o.Name)
	kv, err := js.KeyValue(ctx, name)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bind key-value bucket %s: %w", name, err)
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "rowpipe: the state of each dataset, written by the writer",
		// A watcher (ingester --wait) must see every outcome, even when two
		// land close together.
		History:  16,
		Storage:  jetstream.FileStorage,
		Replicas: max(o.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("create key-value bucket %s: %w", name, err)
	}
	return kv, nil
}
