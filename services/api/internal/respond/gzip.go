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

// Gzip writes src through a pooled gzip writer into w and returns the
// compressed bytes written. It stops at the first write error.
func Gzip(w io.Writer, src io.WriterTo) (int64, error) {
	cw := &countWriter{w: w}
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(cw)
	defer func() {
		zw.Reset(io.Discard)
		gzipWriters.Put(zw)
	}()
	if _, err := src.WriteTo(zw); err != nil {
		return cw.n, err
	}
	err := zw.Close()
	return cw.n, err
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// CountingWriter wraps w and counts the bytes it accepted.
func CountingWriter(w io.Writer) interface {
	io.Writer
	Written() int64
} {
	return &counting{countWriter{w: w}}
}

type counting struct{ countWriter }

func (c *counting) Written() int64 { return c.n }
