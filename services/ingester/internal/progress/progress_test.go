package progress

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLogLines(t *testing.T) {
	var logs lockedBuffer
	p := Start(Options{Log: slog.New(slog.NewTextHandler(&logs, nil)), LogEvery: 20 * time.Millisecond,
		Label: "products <- f.csv", Total: 1000, BytesRead: func() int64 { return 500 }})
	for range 7 {
		p.Row()
	}
	p.Reject()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "rows=7") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p.Stop()
	got := logs.String()
	for _, want := range []string{"msg=progress", `source="products <- f.csv"`, "rows=7", "rejected=1", "percent=50", "eta="} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
}

func TestBarAndPrintln(t *testing.T) {
	var out lockedBuffer
	p := Start(Options{Bar: true, Writer: &out, Label: "products <- f.csv", Total: 1000, BytesRead: func() int64 { return 250 }})
	p.Row()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "25%") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p.Println("f.csv:3: wrong number of fields")
	p.Stop()
	p.Stop() // twice is harmless
	got := out.String()
	for _, want := range []string{"products <- f.csv: 1 rows", "25%", "f.csv:3: wrong number of fields\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%q", want, got)
		}
	}
}
