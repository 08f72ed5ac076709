// Package progress shows how an ingest is going: a progress bar on a
// terminal (rows, MB/s, ETA by bytes read, drawn by
// github.com/schollz/progressbar), or a structured log line every few
// seconds otherwise. Counting a row is one atomic add; drawing happens on a
// ticker, never per row.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
)

// Options say what to show and where.
type Options struct {
	// Bar draws a progress bar on Writer (a terminal); otherwise progress
	// goes to Log every LogEvery.
	Bar    bool
	Writer io.Writer
	Log    *slog.Logger
	// LogEvery is the interval of log lines (default 5s); the first comes
	// after one interval, so short ingests log none.
	LogEvery time.Duration
	// Label names what is ingested ("products <- file.csv").
	Label string
	// Total is the source's size in bytes, -1 when unknown (no ETA then).
	Total int64
	// BytesRead reports the bytes read so far; called from the ticker's
	// goroutine, so it must be safe for that.
	BytesRead func() int64
}

// Progress tracks one ingest. Its methods are safe for concurrent use.
type Progress struct {
	o        Options
	rows     atomic.Uint64
	rejected atomic.Uint64
	start    time.Time

	mu   sync.Mutex // serialises drawing and Println
	bar  *progressbar.ProgressBar
	stop chan struct{}
	done chan struct{}
}

// Start begins showing progress; call Stop when the ingest ends.
func Start(o Options) *Progress {
	if o.LogEvery <= 0 {
		o.LogEvery = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.BytesRead == nil {
		o.BytesRead = func() int64 { return 0 }
	}
	p := &Progress{o: o, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	every := o.LogEvery
	if o.Bar && o.Writer != nil {
		p.bar = progressbar.NewOptions64(o.Total,
			progressbar.OptionSetWriter(o.Writer),
			progressbar.OptionSetDescription(o.Label),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetWidth(24),
			progressbar.OptionThrottle(100*time.Millisecond),
			// No spinner goroutine: all drawing happens on our ticker.
			progressbar.OptionSetSpinnerChangeInterval(0),
			progressbar.OptionSetTheme(progressbar.ThemeASCII),
		)
		every = 200 * time.Millisecond
	}
	go p.run(every)
	return p
}

// Row counts one published row.
func (p *Progress) Row() { p.rows.Add(1) }

// Reject counts one rejected row.
func (p *Progress) Reject() { p.rejected.Add(1) }

// Rows returns the rows counted so far.
func (p *Progress) Rows() uint64 { return p.rows.Load() }

// Println writes one line to Writer without tearing the bar.
func (p *Progress) Println(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Clear()
	}
	if p.o.Writer != nil {
		fmt.Fprintln(p.o.Writer, line)
	}
}

// Stop stops the display and erases the bar.
func (p *Progress) Stop() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Clear()
	}
}

func (p *Progress) run(every time.Duration) {
	defer close(p.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.show()
		}
	}
}

func (p *Progress) show() {
	rows, rejected, read := p.rows.Load(), p.rejected.Load(), p.o.BytesRead()
	if p.bar != nil {
		p.mu.Lock()
		desc := fmt.Sprintf("%s: %d rows", p.o.Label, rows)
		if rejected > 0 {
			desc += fmt.Sprintf(", %d rejected", rejected)
		}
		p.bar.Describe(desc)
		p.bar.Set64(read)
		p.mu.Unlock()
		return
	}
	elapsed := time.Since(p.start).Seconds()
	args := []any{"source", p.o.Label, "rows", rows, "rejected", rejected,
		"rows_per_s", int(float64(rows) / elapsed), "mb", mb(read), "mb_per_s", mb(int64(float64(read) / elapsed))}
	if p.o.Total > 0 && read > 0 {
		eta := time.Duration(float64(p.o.Total-read) / float64(read) * elapsed * float64(time.Second))
		args = append(args, "percent", int(100*read/p.o.Total), "eta", eta.Round(time.Second).String())
	}
	p.o.Log.Info("progress", args...)
}

func mb(n int64) string { return fmt.Sprintf("%.1f", float64(n)/1e6) }
