package writer

import (
	"context"
	"fmt"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/consume"
	"github.com/rowpipe/rowpipe/services/writer/internal/dataset"
)

// The refusal rule (README.md, "What the writer refuses"): a failure that
// the same message would cause again (its subject, headers, size, body,
// bounds, or a dataset too many) is the message's fault. Such a message is
// refused: logged with its sequence and reason, counted in
// rowpipe_writer_hostile_messages_total{reason}, and skipped. It is
// recognised in one place, here: every such failure is a *schema.Refusal,
// and only those are skipped; any other error is the machine's (I/O, a
// full disk, the broker) and retry tries it again.

// datasetFor routes m to its dataset, opening it if the writer holds it
// not yet; fresh says it was opened for m. Its errors are *schema.Refusal,
// or the context's when it was cancelled while a failing disk was retried.
func (w *Writer) datasetFor(ctx context.Context, m *consume.Msg) (d *dataset.Dataset, fresh bool, dm dataset.Msg, err error) {
	name, dm, err := route(m)
	if err != nil {
		return nil, false, dm, err
	}
	if d = w.datasets[name]; d != nil {
		return d, false, dm, nil
	}
	if err := w.admit(name, dm); err != nil {
		return nil, false, dm, err
	}
	err = w.retry(ctx, "open dataset "+name, func() (err error) {
		d, err = w.openDataset(ctx, name)
		return err
	})
	return d, true, dm, err
}

// route checks a message's subject, the size of its subject and headers,
// its envelope and the size of its body.
func route(m *consume.Msg) (string, dataset.Msg, error) {
	name, err := schema.DatasetOf(m.Subject)
	if err != nil {
		return "", dataset.Msg{}, &schema.Refusal{Reason: schema.ReasonBadSubject, Err: err}
	}
	if err := schema.CheckEnvelopeSize(m.Subject, m.Header); err != nil {
		return "", dataset.Msg{}, err
	}
	env, err := schema.ParseEnvelope(m.Header)
	if err != nil {
		return "", dataset.Msg{}, &schema.Refusal{Reason: schema.ReasonBadEnvelope, Err: err}
	}
	if len(m.Data) > schema.MaxMessageBytes {
		return "", dataset.Msg{}, schema.Refuse(schema.ReasonOversize, "body of %d bytes", len(m.Data))
	}
	return name, dataset.Msg{Seq: m.Seq, Time: m.Time, Env: env, Body: m.Data}, nil
}

// admit says whether a message may create dataset name, which the writer
// does not hold: only a begin that would be applied, and only while the
// writer holds fewer than MaxDatasets.
func (w *Writer) admit(name string, dm dataset.Msg) error {
	if dm.Env.Event != schema.EventBegin {
		return schema.Refuse(schema.ReasonOutsideSync, "%s of sync %s on dataset %s, which has no open sync", dm.Env.Event, dm.Env.Sync, name)
	}
	if _, err := schema.DecodeBegin(dm.Body); err != nil {
		return err
	}
	if len(w.datasets) >= w.cfg.MaxDatasets {
		return schema.Refuse(schema.ReasonTooManyDatasets, "a begin for dataset %s, and the writer keeps %d datasets already (MAX_DATASETS=%d)", name, len(w.datasets), w.cfg.MaxDatasets)
	}
	return nil
}

// dropDataset forgets a dataset opened for a message that was refused: it
// holds nothing.
func (w *Writer) dropDataset(d *dataset.Dataset) {
	d.Close()
	delete(w.datasets, d.Name())
}

// refuse logs (rate-limited, the error cut to a line) and counts a message
// that is never written.
func (w *Writer) refuse(m *consume.Msg, r *schema.Refusal) {
	w.m.Hostile.WithLabelValues(r.Reason).Inc()
	if n, ok := w.hostileLog.allow(); ok {
		w.log.Warn("refused a message; not written", "seq", m.Seq, "subject", truncate(m.Subject, 80),
			"reason", r.Reason, "err", truncate(r.Err.Error(), 300), "suppressed", n)
	}
}

// truncate cuts s to n bytes, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:n], len(s))
}
