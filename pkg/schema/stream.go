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
	// DefaultStreamMaxBytes bounds the stream's storage when STREAM_MAX_BYTES
	// is unset and the stream does not exist yet. With DiscardNew a full
	// stream refuses new rows instead of dropping old ones. After each
	// commit the writer purges what the current generation does not need
	// (docs/messages.md#retention), so the stream holds one generation of a
	// dataset, two while a sync runs. JetStream counts these bytes before
	// compression: 4 GiB holds two generations of about 1.4M rows of a
	// Shopify products export.
	DefaultStreamMaxBytes = 4 << 30
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. No
	// rowpipe message carries one (a sync is stored exactly once by its
	// position: docs/messages.md#deduplication); the window is kept short
	// because the broker holds ~150 B per id inside it, for messages others
	// publish with one.
	DuplicateWindow = 2 * time.Second
)

// StreamOptions are the settings a deployment chooses for the stream.
type StreamOptions struct {
	Name     string // STREAM
	Replicas int    // STREAM_REPLICAS
	// MaxBytes is STREAM_MAX_BYTES; 0 (unset) keeps an existing stream's
	// limit and creates a new stream with DefaultStreamMaxBytes.
	MaxBytes int64
	// Compression is STREAM_COMPRESSION: CompressionNone or CompressionS2;
	// "" (unset) keeps an existing stream's and creates a new stream with
	// DefaultCompression.
	Compression string
}

// Values of STREAM_COMPRESSION.
const (
	// CompressionNone stores messages as they are: the default, because
	// the writer reads most of a sync back from blocks the broker has
	// already written to disk, and reading an S2-compressed block back
	// decompresses all of it each time its cache is dropped: measured on a
	// 1M-row products sync through the stack, S2 took 2.4 times as long
	// end to end and peaked 11 MB higher.
	CompressionNone = "none"
	// CompressionS2 stores messages compressed with S2: a products row
	// takes about 1/9 of its size on disk. For disks too small for a
	// generation's worth of uncompressed rows.
	CompressionS2 = "s2"
	// DefaultCompression is what a new stream gets when Compression is "".
	DefaultCompression = CompressionNone
)

// ValidateCompression checks a STREAM_COMPRESSION value: "", "none" or "s2".
func ValidateCompression(v string) error {
	switch v {
	case "", CompressionNone, CompressionS2:
		return nil
	}
	return fmt.Errorf("STREAM_COMPRESSION=%q: want %q or %q", v, CompressionNone, CompressionS2)
}

func storeCompression(v string) jetstream.StoreCompression {
	if v == CompressionS2 {
		return jetstream.S2Compression
	}
	return jetstream.NoCompression
}

// StreamConfig is the one definition of the rows stream, used by whoever
// creates or updates it (ingester, writer, stack). Messages are stored as
// o.Compression says (DefaultCompression when unset); compressed or not,
// JetStream's byte counts (MaxBytes, StreamInfo.State.Bytes, the server's
// max_file_store) are those of the uncompressed messages. The stream
// allows fast-ingest batch publishing (nats-server 2.14 or later), which
// the ingester uses.
func StreamConfig(o StreamOptions) jetstream.StreamConfig {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultStreamMaxBytes
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
	return jetstream.StreamConfig{
		Name:        o.Name,
		Description: "rowpipe: CSV syncs, one message per row, framed by begin and end",
		Subjects:    []string{AllSubjects},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    o.MaxBytes,
		MaxMsgSize:  MaxMessageBytes,
		Storage:     jetstream.FileStorage,
		Compression: storeCompression(o.Compression),
		Replicas:    max(o.Replicas, 1),
		Duplicates:  DuplicateWindow,

		AllowBatchPublish: true,
	}
}

// EnsureStream creates the stream, or updates it to StreamConfig(o): one
// that does not allow batch publishing is made to, and one stored with
// another compression than a set o.Compression is switched (blocks written
// from then on; see docs/messages.md#compression). With o.MaxBytes 0 or
// o.Compression "" an existing stream keeps its limit or its compression,
// so a client that does not set STREAM_MAX_BYTES or STREAM_COMPRESSION
// never undoes what the operator chose.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	if o.MaxBytes == 0 || o.Compression == "" {
		s, err := js.Stream(ctx, o.Name)
		switch {
		case err == nil:
			cfg := s.CachedInfo().Config
			if o.MaxBytes == 0 {
				o.MaxBytes = cfg.MaxBytes
			}
			if o.Compression == "" && cfg.Compression == jetstream.S2Compression {
				o.Compression = CompressionS2
			}
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, fmt.Errorf("look up stream %s: %w", o.Name, err)
		}
	}
	s, err := js.CreateOrUpdateStream(ctx, StreamConfig(o))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Created by another client (an ingester's BindStream) between
		// this update's "not found" and its create: update it now.
		s, err = js.CreateOrUpdateStream(ctx, StreamConfig(o))
	}
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", o.Name, err)
	}
	return s, nil
}

// BindStream binds the stream as it is, creating it with StreamConfig(o)
// only where it does not exist yet: the ingester's way, which never changes
// an existing stream's configuration (the writer's and the operator's to
// change), so that its NATS role needs no update permission.
func BindStream(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, o.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("bind stream %s: %w", o.Name, err)
	}
	s, err = js.CreateStream(ctx, StreamConfig(o))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, o.Name) // created meanwhile by another client
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", o.Name, err)
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
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "rowpipe: the state of each dataset, written by the writer",
		// A watcher (ingester --wait) must see every outcome, even when two
		// land close together.
		History:  16,
		Storage:  jetstream.FileStorage,
		Replicas: max(o.Replicas, 1),
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, name) // created meanwhile by another client
	}
	if err != nil {
		return nil, fmt.Errorf("create key-value bucket %s: %w", name, err)
	}
	return kv, nil
}

// StoredBytes is what one message counts against the stream's MaxBytes
// (and the server's max_file_store): JetStream's file store record, its
// 42 bytes of framing plus subject, headers as sent and body, before
// compression. The ingester sizes a sync with it before publishing.
func StoredBytes(subject string, header map[string][]string, body int) int64 {
	n := 22 + len(subject) + body + 8
	if len(header) > 0 {
		n += 4 + headerWireBytes(header)
	}
	return int64(n)
}

// headerWireBytes is the size of header as nats.go sends it:
// "NATS/1.0\r\n", a "Key: value\r\n" line per value, then "\r\n".
func headerWireBytes(header map[string][]string) int {
	n := len("NATS/1.0\r\n") + 2
	for k, vs := range header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n
}
