package dataset

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/generation"
	"github.com/rowpipe/rowpipe/services/writer/internal/lookup"
)

// buildIndexes writes the lookup indexes of the fields in index for
// generation g, whose header covers every record: at the end of a replace
// sync, before CURRENT names g, so that a generation is served only with
// its indexes complete. Doing it again rewrites the same bytes.
func (d *Dataset) buildIndexes(ctx context.Context, g *generation.Gen, index []string) error {
	h := g.Header()
	cols, err := schema.ValidateIndexColumns(h.Fields, index)
	if err != nil || len(cols) == 0 {
		return err // checked at the begin
	}
	data, err := d.cfg.FS.OpenFile(filepath.Join(d.cfg.Dir, schema.DataFile(h.Generation)), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer data.Close()
	start := time.Now()
	cfg := lookup.Config{FS: d.cfg.FS, Dir: d.cfg.Dir, Durable: d.durable()}
	if err := lookup.Build(ctx, cfg, lookup.Source{Header: h, Data: data}, cols); err != nil {
		return fmt.Errorf("dataset %s: generation %d: %w", d.cfg.Name, h.Generation, err)
	}
	d.log.Info("lookup indexes built", "generation", h.Generation, "fields", index, "records", h.Count, "seconds", time.Since(start).Seconds())
	return nil
}

// rebuildIndexes brings the indexes of the current generation g up to
// its count at the end of an append sync: those it has, and those the
// append's begin asks for. Until then a reader finds them stale (they
// cover fewer records than the header) and scans instead.
func (d *Dataset) rebuildIndexes(ctx context.Context, g *generation.Gen, index []string) error {
	h := g.Header()
	entries, err := d.cfg.FS.ReadDir(d.cfg.Dir)
	if err != nil {
		return err
	}
	fields := slices.Clone(index)
	for _, e := range entries {
		if gen, col, ok := schema.LookupFileOf(e.Name()); ok && gen == h.Generation && col < len(h.Fields) && !slices.Contains(fields, h.Fields[col]) {
			fields = append(fields, h.Fields[col])
		}
	}
	return d.buildIndexes(ctx, g, fields)
}
