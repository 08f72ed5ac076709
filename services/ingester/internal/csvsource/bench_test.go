package csvsource

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// BenchmarkReadAndEncode reads Shopify-like rows and encodes each as the
// row message body: no allocation per row is expected (allocs/op).
func BenchmarkReadAndEncode(b *testing.B) {
	var src strings.Builder
	src.WriteString("Handle,Title,Body (HTML),Vendor,Tags,Variant SKU,Variant Price,Variant Barcode,Image Src\n")
	for i := range 1000 {
		fmt.Fprintf(&src, "mug-%d,Crème Mug %d,\"<p>hot, \"\"strong\"\"</p>\n<p>coffee</p>\",Maison Dupré,\"summer, sale\",SKU-%08d,12.50,'0850%08d,https://cdn.example.com/%d.jpg\n", i, i, i, i, i)
	}
	data := []byte(src.String())
	rd, err := NewReader(bytes.NewReader(data), "bench.csv", Options{})
	if err != nil {
		b.Fatal(err)
	}
	fields, _ := schema.UniqueFields(rd.Header())
	enc, err := schema.NewRecordEncoder(fields)
	if err != nil {
		b.Fatal(err)
	}
	var body []byte
	src2 := bytes.NewReader(data)
	b.SetBytes(int64(len(data)) / 1000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rec, err := rd.Read()
		if err == io.EOF {
			src2.Reset(data)
			if rd, err = NewReader(src2, "bench.csv", Options{}); err != nil {
				b.Fatal(err)
			}
			rec, err = rd.Read()
		}
		if err != nil {
			b.Fatal(err)
		}
		if body, err = enc.Append(body[:0], rec); err != nil {
			b.Fatal(err)
		}
	}
}
