package generation

import (
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
	"github.com/rowpipe/rowpipe/services/writer/internal/sample"
)

// BenchmarkAppend measures the writer's hot path on disk: one op is one
// ~1.1 KB Shopify-like record appended with its index entry, written in
// group-commit batches of 500 (write, index, sync per policy, header
// rewrite in place).
func BenchmarkAppend(b *testing.B) {
	records := make([][]byte, 1000)
	var total int
	for i := range records {
		records[i] = sample.Record(nil, i)
		total += len(records[i]) + 1
	}
	for _, p := range []Policy{SyncOff, SyncBatch} {
		b.Run("fsync="+p.String(), func(b *testing.B) {
			h := schema.Header{Dataset: "products", Generation: 1, State: schema.StateBuilding, Mode: schema.ModeReplace,
				Sync: "0123456789abcdef", Fields: sample.Fields, CreatedAt: time.Now(), UpdatedAt: time.Now(), LastSeq: 1}
			g, err := Create(Files{FS: disk.OS{}, Dir: b.TempDir(), Policy: p}, h)
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			b.SetBytes(int64(total / len(records)))
			b.ReportAllocs()
			now := time.Now()
			seq := uint64(1)
			for b.Loop() {
				seq++
				g.Append(records[seq%uint64(len(records))], seq, now)
				if seq%500 == 0 {
					if err := g.Flush(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := g.Flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
