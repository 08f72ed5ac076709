package faults

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

// BenchmarkWriterPeakRSSUnderLargeHeaders measures bin/writer's peak RSS
// (VmHWM) while it reads a backlog of 800 hostile messages that carry the
// largest headers JetStream stores (62 KiB; it refuses 64 KiB and more),
// with an empty body or with a body that fills the message to 1 MiB, from
// a stream where they all wait before the writer starts. Run it with
//
//	go test -run '^$' -bench WriterPeakRSS -benchtime 1x ./faults/
func BenchmarkWriterPeakRSSUnderLargeHeaders(b *testing.B) {
	const messages, headerBytes = 800, 62 << 10
	for _, body := range []int{0, schema.MaxMessageBytes - headerBytes - 1024} {
		b.Run(fmt.Sprintf("body=%d", body), func(b *testing.B) {
			needBinaries(b)
			for range b.N {
				b.ReportMetric(writerPeakRSS(b, messages, headerBytes, body), "peak-RSS-MiB")
			}
		})
	}
}

func writerPeakRSS(b *testing.B, messages, headerBytes, body int) float64 {
	srv := jstest.Start(b)
	nc := srv.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := schema.EnsureStream(ctx, js, schema.StreamOptions{Name: schema.DefaultStream, Replicas: 1, MaxBytes: schema.DefaultStreamMaxBytes}); err != nil {
		b.Fatal(err)
	}
	h := nats.Header(schema.Envelope{Event: schema.EventRow, Sync: "0123456789abcdef", Row: 1}.Headers())
	h.Set("X-Padding", strings.Repeat("h", headerBytes))
	data := make([]byte, body)
	var last uint64
	for range messages {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "rows.products", Header: h, Data: data})
		if err != nil {
			b.Fatal(err)
		}
		last = ack.Sequence
	}
	w := startWriterProc(b, srv.URL(), b.TempDir())
	var addr []string
	waitFor(b, 10*time.Second, "the writer's metrics address", func() bool {
		addr = metricsAddrRE.FindStringSubmatch(w.stderr.String())
		return addr != nil
	})
	waitFor(b, time.Minute, "the writer to apply the backlog", func() bool {
		return gauge("http://"+addr[1]+"/metrics", "rowpipe_writer_applied_sequence") >= float64(last)
	})
	return float64(vmHWM(b, w.cmd.Process.Pid)) / (1 << 20)
}

// gauge reads one unlabelled metric; -1 if it is not there.
func gauge(url, name string) float64 {
	res, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return n
		}
	}
	return -1
}

// vmHWM is a process's peak resident set size, in bytes.
func vmHWM(b *testing.B, pid int) int64 {
	f, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(f), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
