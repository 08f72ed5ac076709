package respond

import (
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// GzipLevel trades ratio for speed: record JSON compresses well even at the
// fastest level, and the api's budget is CPU.
const GzipLevel = gzip.BestSpeed

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, GzipLevel)
	return w
}}
