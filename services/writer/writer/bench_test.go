package writer

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/sample"
)

// publishSample publishes one replace sync of n sample (Shopify-like)
// records on ds, the way the ingester does (asynchronously, with
// Nats-Msg-Id), and returns the end's sequence and the record bytes.
func publishSample(tb testing.TB, e *env, ds string, n int) (last uint64, bytes int64) {
	tb.Helper()
	id := schema.NewSyncID()
	pub := func(ev schema.Envelope, body []byte) {
		for {
			_, err := e.js.PublishMsgAsync(&nats.Msg{Subject: schema.Subject(ds), Header: nats.Header(ev.Headers()), Data: body})
			if err == nil {
				return
			}
			<-e.js.PublishAsyncComplete() // too many in flight: let them land
		}
	}
	pub(schema.Envelope{Event: schema.EventBegin, Sync: id}, mustJSON(schema.Begin{Version: 1, Dataset: ds, Sync: id, Mode: schema.ModeReplace, Fields: sample.Fields}))
	var buf []byte
	for i := range n {
		buf = sample.Record(buf[:0], i)
		bytes += int64(len(buf)) + 1
		pub(schema.Envelope{Event: schema.EventRow, Sync: id, Row: uint64(i + 1)}, append([]byte(nil), buf...))
	}
	pub(schema.Envelope{Event: schema.EventEnd, Sync: id}, mustJSON(schema.End{Rows: uint64(n)}))
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		tb.Fatal("publishing did not complete")
	}
	s, err := e.js.Stream(context.Background(), schema.DefaultStream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.LastSeq, bytes
}

// BenchmarkEndToEnd measures the writer alone on a stream that already
// holds the sync: from start to the generation being current. One op is
// one record read from JetStream, checked, appended with its index entry
// and counted by the header. The broker runs in the same process (and on
// the same cores), as in stack. "consume-only" is the ceiling in the same
// run: an ordered consumer that reads the same messages and does nothing.
func BenchmarkEndToEnd(b *testing.B) {
	for _, fsync := range []string{"batch", "off"} {
		b.Run("fsync="+fsync, func(b *testing.B) {
			e := newEnv(b)
			last, size := publishSample(b, e, "products", b.N)
			dir := b.TempDir()
			b.ResetTimer()
			w := e.startWriter(dir, func(c *Config, o *[]Option) {
				c.Fsync = fsync
				*o = append(*o, WithLogger(testLoggerTo(discard{})))
			})
			w.waitApplied(last)
			b.StopTimer()
			w.close()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(size)/b.Elapsed().Seconds()/1e6, "MB/s")
		})
	}
	b.Run("consume-only", func(b *testing.B) {
		e := newEnv(b)
		last, size := publishSample(b, e, "products", b.N)
		b.ResetTimer()
		ctx := context.Background()
		c, err := e.js.OrderedConsumer(ctx, schema.DefaultStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{schema.AllSubjects}})
		if err != nil {
			b.Fatal(err)
		}
		it, err := c.Messages(jetstream.PullMaxBytes(DefaultConfig().PullMaxBytes))
		if err != nil {
			b.Fatal(err)
		}
		defer it.Stop()
		for {
			m, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			if md, _ := m.Metadata(); md.Sequence.Stream >= last {
				break
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(size)/b.Elapsed().Seconds()/1e6, "MB/s")
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkPeakRSS reports the writer's peak RSS (a child process) after it
// applied a sync of 10K and of 200K rows, and the growth between them: the
// writer holds one record at a time, so the growth should stay within a few
// MiB. Peak RSS depends on when the collector runs, which a loaded machine
// shifts, so it is reported here (make bench's memory section has the
// whole pipeline's), not asserted in a test.
func BenchmarkPeakRSS(b *testing.B) {
	if raceEnabled {
		b.Skip("peak RSS under -race is the race detector's")
	}
	peak := func(rows int) int {
		e := newEnv(b)
		last, _ := publishSample(b, e, "products", rows)
		dir := b.TempDir()
		exe, _ := os.Executable()
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "ROWPIPE_WRITER_CHILD=1", "NATS_URL="+e.srv.URL(), "DATA_DIR="+dir, "FSYNC=batch")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for headerLastSeq(dir, "products") < last {
			if time.Now().After(deadline) {
				b.Fatalf("the writer did not apply the sync in time\n%s", stderr.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		kb := vmHWM(b, cmd.Process.Pid)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("writer: %v\n%s", err, stderr.String())
		}
		return kb
	}
	for b.Loop() {
		small, large := peak(10_000), peak(200_000)
		b.ReportMetric(float64(small)/1024, "MiB-at-10K")
		b.ReportMetric(float64(large)/1024, "MiB-at-200K")
		b.ReportMetric(float64(large-small)/1024, "MiB-growth")
	}
}

// vmHWM is the peak resident set size of process pid, in KiB.
func vmHWM(t testing.TB, pid int) int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
