package main

import (
	"math"
	"os"
	"runtime/debug"
)

// defaultMemoryLimit is the Go runtime's soft memory limit the writer sets
// when GOMEMLIMIT is not set (WRITER_MEMORY_LIMIT; 0 sets none).
//
// Why one by default: the writer's live data is bounded by its buffers
// (PULL_MAX_BYTES, BATCH_BYTES: 1 to 3.5 MiB with product rows), but the
// collector's default target is twice the live heap found by the last
// collection, so a collection that found the buffers full let the heap
// reach about 7 MiB before the next. A long ingest meets such moments
// where a short one may not: they showed as 2 to 4 MiB more peak RSS at
// 1M rows than at 10K. The limit counts the runtime's memory (heap,
// stacks, GC metadata; not the executable's code); near it the collector
// runs earlier instead of letting the heap grow, which cost no measurable
// CPU on a 1M-row product ingest. With rows near the 1 MiB maximum the
// live data comes close to it and the collector works harder (about a
// fifth more writer CPU, measured; the runtime caps it at half the CPU),
// but the limit never fails an allocation.
const defaultMemoryLimit = 12 << 20

// setMemoryLimit sets the soft memory limit to limit bytes unless
// GOMEMLIMIT is set (the runtime applied it at start: it wins) or limit is
// 0. It returns the limit in force (0: none) and where it comes from.
func setMemoryLimit(limit int64) (int64, string) {
	switch {
	case os.Getenv("GOMEMLIMIT") != "":
		cur := debug.SetMemoryLimit(-1)
		if cur == math.MaxInt64 {
			cur = 0 // GOMEMLIMIT=off
		}
		return cur, "GOMEMLIMIT"
	case limit > 0:
		debug.SetMemoryLimit(limit)
		return limit, "WRITER_MEMORY_LIMIT"
	}
	return 0, "WRITER_MEMORY_LIMIT"
}
