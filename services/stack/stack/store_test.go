package stack

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
)

// A dataset named nats is a dataset like any other: the embedded store
// lives in DATA_DIR/.nats, outside the dataset namespace. A store that an
// earlier version kept in DATA_DIR/nats is moved there with its stream.
func TestTheNATSStoreIsOutOfTheDatasetNamespace(t *testing.T) {
	const key = "store-test-key-0123456789abcdef"
	cfg := testConfig(t)
	cfg.API.Keys = api.Keys{key}
	dir := cfg.Writer.DataDir

	s, _, cancel := start(t, cfg)
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	csvPath := filepath.Join(t.TempDir(), "nats.csv")
	if err := os.WriteFile(csvPath, []byte("id,name\n1,one\n2,two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ingester.Run(context.Background(), ingester.Config{Source: csvPath, Dataset: "nats", Wait: true, Progress: "off"}, nc, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	base := "http://" + s.APIAddr().String()
	if code, body := get(t, base+"/fetch-data?dataset=nats&format=ndjson", key); code != http.StatusOK || string(body) != "{\"id\":\"1\",\"name\":\"one\"}\n{\"id\":\"2\",\"name\":\"two\"}\n" {
		t.Fatalf("dataset nats: %d %q", code, body)
	}
	if _, err := os.Stat(filepath.Join(dir, ".nats", "jetstream")); err != nil {
		t.Fatalf("the store is not in DATA_DIR/.nats: %v", err)
	}
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}

	// The layout of an earlier version: the store in DATA_DIR/nats.
	if err := os.RemoveAll(filepath.Join(dir, "nats")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, ".nats"), filepath.Join(dir, "nats")); err != nil {
		t.Fatal(err)
	}
	s2, _, _ := start(t, cfg)
	if _, err := os.Stat(filepath.Join(dir, ".nats", "jetstream")); err != nil {
		t.Fatalf("the old store was not moved to DATA_DIR/.nats: %v", err)
	}
	nc2, err := nats.Connect(s2.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js, _ := jetstream.New(nc2)
	st, err := js.Stream(context.Background(), "ROWS")
	if err != nil {
		t.Fatalf("the moved store lost the stream: %v", err)
	}
	if info, err := st.Info(context.Background()); err != nil || info.State.Msgs != 4 {
		t.Fatalf("the moved stream: %+v, %v; want its 4 messages", info, err)
	}
}
