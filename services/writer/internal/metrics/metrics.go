// Package metrics defines the writer's Prometheus metrics, all under the
// rowpipe_writer_ prefix. Hot paths add to them once per batch, not per
// record.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the writer's collectors.
type Metrics struct {
	Records      *prometheus.CounterVec // records appended, by dataset
	Bytes        *prometheus.CounterVec // record bytes appended (with '\n'), by dataset
	Rejects      *prometheus.CounterVec // CSV rejects recorded, by dataset
	Duplicates   *prometheus.CounterVec // rows skipped because their index was already written, by dataset
	Hostile      *prometheus.CounterVec // messages refused and never written, by reason
	Syncs        *prometheus.CounterVec // syncs finished, by outcome
	Generations  *prometheus.CounterVec // generations made current, by dataset
	Applied      prometheus.Gauge       // stream sequence of the last message applied
	Lag          prometheus.Gauge       // messages in the stream not yet applied
	Fsync        prometheus.Histogram   // fsync latency
	Batch        prometheus.Histogram   // messages per batch
	StorageError *prometheus.CounterVec // failed attempts to apply a batch, by kind
	Stalled      prometheus.Gauge       // 1 while the writer retries a failing disk or broker
	Purges       prometheus.Counter     // stream purges of superseded syncs
}

// New creates the collectors and registers them with reg (nil: not
// registered, as in benchmarks).
func New(reg prometheus.Registerer) *Metrics {
	const ns, sub = "rowpipe", "writer"
	m := &Metrics{
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "records_written_total", Help: "Records appended to generation files."}, []string{"dataset"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bytes_written_total", Help: "Record bytes appended to generation files, newlines included."}, []string{"dataset"}),
		Rejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejects_written_total", Help: "CSV rows refused by the ingester, recorded in rejects files."}, []string{"dataset"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "duplicate_rows_total", Help: "Row messages skipped because their row index was already written."}, []string{"dataset"}),
		Hostile: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "hostile_messages_total", Help: "Messages refused and never written: a failure the same message would cause again (bad subject, envelope or body, out of bounds, outside a sync, too many datasets)."}, []string{"reason"}),
		Syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "syncs_total", Help: "Syncs finished, by outcome."}, []string{"outcome"}),
		Generations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "generations_committed_total", Help: "Generations made current."}, []string{"dataset"}),
		Applied: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "applied_sequence", Help: "Stream sequence of the last message applied."}),
		Lag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "lag_messages", Help: "Messages in the stream after the last one applied."}),
		Fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "fsync_seconds", Help: "Latency of each fsync.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12)}),
		Batch: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_messages", Help: "Messages applied per group commit.",
			Buckets: []float64{1, 4, 16, 64, 128, 256, 500, 1000}}),
		StorageError: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "apply_errors_total", Help: "Failed attempts to apply messages (disk full, I/O or broker error); each is retried."}, []string{"kind"}),
		Stalled: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "stalled", Help: "1 while the writer is retrying a failing disk or broker operation."}),
		Purges: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "stream_purges_total", Help: "Purges of stream messages superseded by a newer generation."}),
	}
	if reg != nil {
		reg.MustRegister(m.Records, m.Bytes, m.Rejects, m.Duplicates, m.Hostile, m.Syncs, m.Generations,
			m.Applied, m.Lag, m.Fsync, m.Batch, m.StorageError, m.Stalled, m.Purges)
	}
	return m
}
