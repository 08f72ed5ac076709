package writer

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// CaughtUp reports whether the files hold everything the stream held when
// Run started (schema.WriterStatusFile says the same to the api).
func (w *Writer) CaughtUp() bool { return w.caughtUp.Load() }

// Alive is nil while Run runs: the process can make progress, whether NATS
// is up or not (Healthy says what stops it). It is the liveness probe's
// answer; restarting a writer that waits for NATS or for disk space helps
// nothing.
func (w *Writer) Alive() error {
	if !w.running.Load() {
		return errors.New("the writer is not running")
	}
	return nil
}

// reportStatus writes schema.WriterStatusFile. A failure is logged: the
// api then keeps the last status it could read, or none.
func (w *Writer) reportStatus(caughtUp bool, target, applied uint64) {
	w.caughtUp.Store(caughtUp)
	b := schema.EncodeWriterStatus(schema.WriterStatus{
		CaughtUp: caughtUp, Stream: w.cfg.Stream, TargetSeq: target, AppliedSeq: applied, UpdatedAt: time.Now().UTC(),
	})
	if err := disk.WriteFileAtomic(w.fs, filepath.Join(w.cfg.DataDir, schema.WriterStatusFile), b, false); err != nil {
		w.log.Warn("could not write the writer status for the api's readiness", "err", err)
		return
	}
	if caughtUp {
		w.log.Info("caught up with the stream", "stream", w.cfg.Stream, "target_seq", target, "applied_seq", applied)
	}
}

// registerStatusMetrics adds the gauges a NATS outage and a rebuild show on.
func (w *Writer) registerStatusMetrics() {
	if w.reg == nil {
		return
	}
	gauge := func(name, help string, f func() bool) {
		w.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if f() {
				return 1
			}
			return 0
		}))
	}
	gauge("rowpipe_writer_nats_connected", "1 while the writer's NATS connection is up.", w.nc.IsConnected)
	gauge("rowpipe_writer_caught_up", fmt.Sprintf("1 once the writer has applied what the stream held when it started (%s in DATA_DIR says the same).", schema.WriterStatusFile), w.CaughtUp)
}
