package faults

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

// TestConsecutiveResyncsFitATwoGenerationStream re-syncs a dataset six
// times, each time with a different file of the same size, into a stream
// limited to 2.5 times what one sync stores: every sync commits, because
// the writer purges the stream down to the current generation after each
// commit (dataset.purge), so a sync needs room for two generations
// only. Keeping the previous generation too (KEEP_GENERATIONS=2 on disk)
// would need three, and the third sync would be refused. The ingester is
// bin/ingester with STREAM_MAX_BYTES unset: it keeps the stream's limit.
func TestConsecutiveResyncsFitATwoGenerationStream(t *testing.T) {
	needBinaries(t)
	rng := seed(t)
	const rows = 20_000
	srv := jstest.Start(t)
	dir := t.TempDir()
	startWriter(t, srv.Conn(), dir)
	js, err := jetstream.New(srv.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var one uint64
	for i := 1; i <= 6; i++ {
		csvPath := filepath.Join(t.TempDir(), fmt.Sprintf("products-%d.csv", i))
		want := genCSV(t, csvPath, rows, i, rng.Uint64())
		ing := startIngesterProc(t, srv.URL(), csvPath)
		if code := ing.wait(t, 2*time.Minute); code != 0 {
			t.Fatalf("sync %d: ingester exit status %d; stdout %q stderr %s", i, code, ing.stdout.String(), tail(ing.stderr.String(), 2000))
		}
		gen, n, outcome := summary(t, ing)
		if outcome != schema.OutcomeCommitted || n != rows {
			t.Fatalf("sync %d: generation %d rows %d outcome %s", i, gen, n, outcome)
		}
		checkGeneration(t, dir, "products", want)
		held := streamState(t, srv.Conn()).Bytes
		t.Logf("sync %d: generation %d committed; the stream holds %d bytes", i, gen, held)
		if i == 1 {
			one = held
			limit := int64(one) * 5 / 2
			if _, err := schema.EnsureStream(ctx, js, schema.StreamOptions{Name: schema.DefaultStream, MaxBytes: limit}); err != nil {
				t.Fatal(err)
			}
			t.Logf("stream limit set to %d bytes, 2.5 syncs", limit)
			continue
		}
		if held > one+one/20 {
			t.Errorf("after sync %d the stream holds %d bytes, more than one generation (%d)", i, held, one)
		}
		if g := generationsOn(dir, "products"); len(g) != 2 || !slices.Contains(g, gen) {
			t.Errorf("after sync %d generations on disk %v, want the previous one and %d (KEEP_GENERATIONS=2)", i, g, gen)
		}
	}
}
