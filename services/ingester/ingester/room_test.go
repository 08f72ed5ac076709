package ingester

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/ingester/internal/csvsource"
)

// roomCSV is a products-like CSV of rows rows, with quoted commas and
// multi-line HTML in some cells.
func roomCSV(rows int) string {
	var b strings.Builder
	b.WriteString("Handle,Title,Body (HTML),Vendor,Variant SKU,Variant Price,Tags\n")
	for i := 1; i <= rows; i++ {
		body := `"<p>Soft, warm and ` + strings.Repeat("light ", i%40) + `</p>"`
		if i%7 == 0 {
			body = "\"<ul>\n<li>\"\"cotton\"\"</li>\n</ul>\""
		}
		fmt.Fprintf(&b, "item-%d,Tee %d,%s,Acme,SKU-%06d,%d.%02d,\"summer, sale\"\n", i, i, body, i, i%300, i%100)
	}
	return b.String()
}

func streamBytes(t *testing.T, e *env) (held uint64, limit int64) {
	t.Helper()
	info, err := e.ensureStream().Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Bytes, info.Config.MaxBytes
}

// TestRefusesUpFrontASyncTheStreamCannotHold: a file bigger than the
// stream's free room is refused before anything is published (exit 3),
// naming the bytes needed and the variable to change; the same file fits
// once the writer has raised the limit (the ingester never changes an
// existing stream).
func TestRefusesUpFrontASyncTheStreamCannotHold(t *testing.T) {
	e := newEnv(t)
	path := writeFile(t, "products.csv", roomCSV(20_000)) // ~2.5 MB of CSV, ~7 MB of stream
	cfg := e.config("products", path)
	cfg.StreamMaxBytes = 4 << 20
	out := e.run(context.Background(), cfg)
	if ExitCode(out.err) != ExitRefused {
		t.Fatalf("exit %d (%v), want %d: refused up front", ExitCode(out.err), out.err, ExitRefused)
	}
	for _, want := range []string{path, "STREAM_MAX_BYTES", "needs about", "nothing was published"} {
		if !strings.Contains(out.err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, out.err)
		}
	}
	if held, _ := streamBytes(t, e); held != 0 {
		t.Errorf("the stream holds %d bytes after a refusal: something was published", held)
	}

	raised := schema.StreamOptions{Name: schema.DefaultStream, Replicas: 1, MaxBytes: 64 << 20}
	if _, err := schema.EnsureStream(context.Background(), e.js, raised); err != nil { // as the writer does
		t.Fatal(err)
	}
	cfg.StreamMaxBytes = 0
	if out := e.run(context.Background(), cfg); out.err != nil || out.res.Rows != 20_000 {
		t.Fatalf("with room: rows %d, %v\n%s", out.res.Rows, out.err, out.stderr)
	}
}

// TestRoomEstimateMatchesWhatIsStored: the estimate of a file's sample,
// scaled to the whole file, is within 3 % of what the sync then stores;
// a file that fits in the sample is counted to within its frame.
func TestRoomEstimateMatchesWhatIsStored(t *testing.T) {
	for _, rows := range []int{500, 60_000} { // read whole by the sample; scaled from it
		t.Run(fmt.Sprint(rows), func(t *testing.T) {
			e := newEnv(t)
			path := writeFile(t, "products.csv", roomCSV(rows))
			cfg := e.config("products", path)
			cfg.StreamMaxBytes = 1 << 30
			out := e.run(context.Background(), cfg)
			if out.err != nil {
				t.Fatal(out.err)
			}
			held, _ := streamBytes(t, e)

			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			g, err := newIngester(context.Background(), cfg, e.nc, slog.New(slog.DiscardHandler), io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer g.js.CleanupPublisher()
			in, err := csvsource.Open(context.Background(), path, csvsource.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			fields := strings.Split("Handle,Title,Body (HTML),Vendor,Variant SKU,Variant Price,Tags", ",")
			est, err := g.estimateStreamBytes(context.Background(), in, fields, out.res.Sync)
			if err != nil {
				t.Fatal(err)
			}
			diff := est - int64(held)
			t.Logf("%d rows: estimated %d bytes, stored %d (%+.2f %%)", rows, est, held, 100*float64(diff)/float64(held))
			if max(diff, -diff) > int64(held)*3/100 && max(diff, -diff) > 8<<10 {
				t.Errorf("estimate %d for %d stored bytes", est, held)
			}
		})
	}
}
