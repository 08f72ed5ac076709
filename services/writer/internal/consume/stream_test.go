package consume

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

// rowsStream starts an embedded JetStream server with the rows stream and
// returns it with a context that ends after limit.
func rowsStream(t *testing.T, limit time.Duration) (context.Context, jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	srv := jstest.Start(t)
	js, err := jetstream.New(srv.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	stream, err := schema.EnsureStream(ctx, js, schema.StreamOptions{Name: schema.DefaultStream, Replicas: 1, MaxBytes: schema.DefaultStreamMaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, js, stream
}
