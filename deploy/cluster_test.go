package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/writer/writer"
)

// cluster is three embedded nats-servers with JetStream, routed to each
// other on loopback: the 3-node cluster of deploy/k8s/overlays/cluster, in
// one process.
type cluster struct {
	t       *testing.T
	servers []*server.Server
}

const clusterName = "rowpipe-test"

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	clientPorts, routePorts := make([]int, n), make([]int, n)
	routes := make([]string, n)
	for i := range n {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
		routes[i] = "nats-route://127.0.0.1:" + strconv.Itoa(routePorts[i])
	}
	c := &cluster{t: t}
	t.Cleanup(c.shutdown)
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			// Keep the three in-process stores from claiming the
			// machine's memory and disk.
			JetStreamMaxMemory: 64 << 20,
			JetStreamMaxStore:  2 << 30,
			Cluster: server.ClusterOpts{
				Name: clusterName,
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:  true,
			NoSigs: true,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("server %s: %v", opts.ServerName, err)
		}
		s.Start()
		c.servers = append(c.servers, s)
	}
	for _, s := range c.servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("server %s not ready", s.Name())
		}
	}
	c.waitForMetaLeader(30 * time.Second)
	return c
}

// urls are the client URLs of the servers still running, comma-separated:
// a client given all of them fails over.
func (c *cluster) urls() string {
	var u []string
	for _, s := range c.servers {
		if s.Running() {
			u = append(u, s.ClientURL())
		}
	}
	return strings.Join(u, ",")
}

// waitForMetaLeader waits until the JetStream meta group has a leader that
// every running server knows and every server's JetStream is current.
func (c *cluster) waitForMetaLeader(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		leaders, current := 0, 0
		running := 0
		for _, s := range c.servers {
			if !s.Running() {
				continue
			}
			running++
			if s.JetStreamIsLeader() {
				leaders++
			}
			if s.JetStreamIsCurrent() {
				current++
			}
		}
		if leaders == 1 && current == running {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no JetStream meta leader within %s", d)
}

func (c *cluster) byName(name string) *server.Server {
	for _, s := range c.servers {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

func (c *cluster) shutdown() {
	for _, s := range c.servers {
		s.Shutdown()
	}
	for _, s := range c.servers {
		s.WaitForShutdown()
	}
}

func (c *cluster) connect(name string) *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(c.urls(), nats.Name(name), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		c.t.Fatalf("connect %s: %v", name, err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// TestR3StreamSurvivesLeaderLossDuringIngest runs the writer and a 200K-row
// ingest against a 3-node cluster with an R3 stream, shuts the stream
// leader down when the stream holds a third of the rows, and checks that
// the ingest still commits and that the writer's files hold every row once,
// in order, exactly as encoding/csv reads the source.
func TestR3StreamSurvivesLeaderLossDuringIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster and a 200K-row ingest: skipped with -short")
	}
	const rows = 200_000
	// The stream's size limit: room for the rows, and for three replicas
	// in the servers' stores.
	const maxBytes = 512 << 20
	dir := t.TempDir()
	src := filepath.Join(dir, "products.csv")
	writeProductsCSV(t, src, rows)

	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The writer, on a connection that knows all three servers.
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	defer func() {
		if t.Failed() {
			t.Logf("log tail:\n%s", tail(logs.String(), 6000))
		}
	}()
	wcfg := writer.DefaultConfig()
	wcfg.DataDir = filepath.Join(dir, "data")
	wcfg.StreamReplicas = 3
	wcfg.StreamMaxBytes = maxBytes
	w, err := writer.New(wcfg, c.connect("writer"), writer.WithLogger(log.With("service", "writer")))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWriter := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	writerStopped := false
	stop := func() error {
		if writerStopped {
			return nil
		}
		writerStopped = true
		stopWriter()
		select {
		case err := <-wdone:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("the writer did not stop within 30 s")
		}
	}
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("writer: %v", err)
		}
	}()
	hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
	defer hcancel()
	waitFor(t, hctx, "the writer to consume the stream", func() error {
		select {
		case err := <-wdone:
			writerStopped = true
			t.Fatalf("writer returned early: %v", err)
		default:
		}
		return w.Healthy()
	})

	js, err := jetstream.New(c.connect("observer"))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, schema.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream %s: replicas %d, cluster %+v; want R3", schema.DefaultStream, info.Config.Replicas, info.Cluster)
	}

	// The ingest, on its own connection, in the background.
	type result struct {
		res ingester.Result
		err error
	}
	done := make(chan result, 1)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	go func() {
		res, err := ingester.Run(ctx, ingester.Config{
			Source: src, Dataset: "products", Wait: true, Progress: "off", StreamReplicas: 3, StreamMaxBytes: maxBytes,
		}, c.connect("ingester"), log.With("service", "ingester"), stdout, stderr)
		done <- result{res, err}
	}()

	// Once a third of the rows are in, shut the stream leader down.
	var killed string
	var killedAt uint64
	for killed == "" {
		select {
		case r := <-done:
			t.Fatalf("the ingest ended before the stream leader could be shut down (%d messages seen): %+v, %v", killedAt, r.res, r.err)
		case <-ctx.Done():
			t.Fatal("timed out waiting for the stream to fill")
		case <-time.After(10 * time.Millisecond):
		}
		ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
		info, err := stream.Info(ictx)
		icancel()
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
			continue
		}
		killedAt = info.State.Msgs
		if killedAt < rows*3/10 {
			continue
		}
		if killedAt > rows*6/10 {
			t.Fatalf("the stream went from under 30%% to %d messages between two looks: too fast to test leader loss mid-ingest", killedAt)
		}
		leader := c.byName(info.Cluster.Leader)
		if leader == nil {
			t.Fatalf("stream leader %q is not one of the cluster's servers", info.Cluster.Leader)
		}
		killed = leader.Name()
		t.Logf("shutting down stream leader %s at %d of %d messages", killed, killedAt, rows+2)
		leader.Shutdown()
		leader.WaitForShutdown()
	}

	// A new leader takes over among the two left.
	var newLeader string
	waitFor(t, ctx, "a new stream leader", func() error {
		ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
		defer icancel()
		info, err := stream.Info(ictx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == killed {
			return fmt.Errorf("leader %+v", info.Cluster)
		}
		newLeader = info.Cluster.Leader
		return nil
	})
	t.Logf("new stream leader: %s", newLeader)

	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the ingest did not finish")
	}
	if r.err != nil {
		t.Fatalf("ingest: %v\nstderr: %s", r.err, tail(stderr.String(), 2000))
	}
	if r.res.Outcome != schema.OutcomeCommitted || r.res.Rows != rows || r.res.Rejected != 0 {
		t.Fatalf("ingest result %+v; want committed, %d rows, 0 rejected", r.res, rows)
	}
	t.Logf("ingest: generation %d, %d rows, %d messages published again, %s; %s",
		r.res.Generation, r.res.Rows, r.res.Retries, r.res.Duration.Round(time.Millisecond), strings.TrimSpace(stdout.String()))
	want := fmt.Sprintf("dataset=products generation=%d rows=%d rejected=0", r.res.Generation, rows)
	if !strings.Contains(stdout.String(), want) {
		t.Errorf("summary line %q does not say %q", stdout.String(), want)
	}

	// The writer stops cleanly; its files are the CSV, exactly.
	if err := stop(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	h := checkDatasetMatchesCSV(t, wcfg.DataDir, "products", src)
	if h.Generation != r.res.Generation {
		t.Errorf("current generation %d, the ingest reported %d", h.Generation, r.res.Generation)
	}
	if h.Source.SHA256 == "" || h.Source.SHA256 != r.res.Source.SHA256 {
		t.Errorf("header source sha256 %q, ingest %q", h.Source.SHA256, r.res.Source.SHA256)
	}

	// The state in the R3 bucket says the same, from a surviving server.
	kv, err := js.KeyValue(ctx, schema.StateBucket(schema.DefaultStream))
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "products")
	if err != nil {
		t.Fatal(err)
	}
	st, err := schema.DecodeState(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if st.Current == nil || st.Current.Generation != h.Generation || st.Current.Count != rows ||
		st.Last == nil || st.Last.Outcome != schema.OutcomeCommitted {
		t.Errorf("dataset state %s; want current generation %d with %d rows, last committed", e.Value(), h.Generation, rows)
	}
}

// waitFor polls f until it returns nil; it fails the test when ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, f func() error) {
	t.Helper()
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %v)", what, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
