package schema

import (
	"strings"
	"testing"
	"time"
)

// shopifyFields is the header of a Shopify product export (45 columns).
var shopifyFields = []string{
	"Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published",
	"Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name", "Option3 Value",
	"Variant SKU", "Variant Grams", "Variant Inventory Tracker", "Variant Inventory Qty",
	"Variant Inventory Policy", "Variant Fulfillment Service", "Variant Price", "Variant Compare At Price",
	"Variant Requires Shipping", "Variant Taxable", "Variant Barcode", "Image Src", "Image Position",
	"Image Alt Text", "Gift Card", "SEO Title", "SEO Description", "Google Shopping / Google Product Category",
	"Google Shopping / Gender", "Google Shopping / Age Group", "Google Shopping / MPN",
	"Google Shopping / Condition", "Google Shopping / Custom Product", "Variant Image", "Variant Weight Unit",
	"Variant Tax Code", "Cost per item", "Included / United States", "Price / United States",
	"Compare At Price / United States", "Status",
}

// shopifyRow is the first row of a product: an HTML body of about 600
// bytes with quotes, newlines and non-ASCII text, as gencsv writes them.
var shopifyRow = []string{
	"vintage-sneaker-0", "Vintage Sneaker",
	"<p>Our <strong>Vintage Sneaker</strong> is made for every day, rain or shine — \"the one pair you need\".</p>\n" +
		"<ul>\n<li>Size: 9\" x 12\", \"fits most\"</li>\n<li>Care: wash cold, hang dry</li>\n" +
		"<li>Material: 100% organic cotton canvas, rubber sole</li>\n<li>Origin: Großes Atelier, Zürich</li>\n</ul>\n" +
		"<p>Batch 70907, Édition Limitée — ships in 6 days. Crème colour, señorita cut, 北欧 design.</p>\n" +
		"<p>Questions? Write to <a href=\"mailto:help@example.com\">help@example.com</a> &amp; we'll answer within a day.</p>\n" +
		"<p>Free returns within 30 days & free shipping over $50.</p>",
	"Maison Dupré", "Apparel & Accessories > Shoes", "Footwear", "sale, limited, unisex", "true",
	"Color", "Sand", "Size", "S", "", "", "SKU-000000-0", "886", "shopify", "400", "deny", "manual",
	"193.50", "", "true", "true", "4553227207112",
	"https://cdn.shopify.com/s/files/1/0000/1455/products/vintage-sneaker-0.jpg?v=1690754655", "1",
	"Vintage Sneaker, front view", "false", "Vintage Sneaker | Maison Dupré",
	"Buy the Vintage Sneaker online. Free shipping over $50, 30-day returns.", "Apparel & Accessories > Shoes",
	"Unisex", "Adult", "", "New", "FALSE", "", "kg", "", "32.01", "true", "", "", "active",
}

func TestShopifyBenchRowIsRealistic(t *testing.T) {
	if len(shopifyFields) != 45 || len(shopifyRow) != 45 {
		t.Fatalf("%d fields, %d values", len(shopifyFields), len(shopifyRow))
	}
	if n := len(shopifyRow[2]); n < 550 || n > 700 {
		t.Fatalf("the HTML body is %d bytes", n)
	}
}

func TestRecordEncoderAppendDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	enc, err := NewRecordEncoder(shopifyFields)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() {
		if dst, err = enc.Append(dst[:0], shopifyRow); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Append allocates %v times per record once dst has room", n)
	}
}

func TestIndexRangeDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	g := writeGeneration(t, 100)
	x, err := OpenIndex(g.index)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, _, err := x.Range(50, 10); err != nil {
			t.Fatal(err)
		}
		if _, _, err := x.Entry(3); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Range and Entry allocate %v times per call", n)
	}
}

func BenchmarkRecordEncode(b *testing.B) {
	enc, err := NewRecordEncoder(shopifyFields)
	if err != nil {
		b.Fatal(err)
	}
	dst, err := enc.Append(nil, shopifyRow)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(dst))) // bytes of JSON written per record
	b.ReportAllocs()
	for b.Loop() {
		if dst, err = enc.Append(dst[:0], shopifyRow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendJSONStringHTMLBody(b *testing.B) {
	s := shopifyRow[2]
	dst := make([]byte, 0, 2*len(s))
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = AppendJSONString(dst[:0], s)
	}
}

func BenchmarkIndexRange(b *testing.B) {
	const records = 100000
	g := writeGeneration(b, records)
	x, err := OpenIndex(g.index)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		if _, _, err := x.Range(i, 10); err != nil { // a page of 10 anywhere in the file
			b.Fatal(err)
		}
		i = (i + 7919) % (records - 10)
	}
}

func benchHeader() Header {
	h := Header{
		Dataset: "products", Generation: 1044, State: StateComplete, Mode: ModeReplace, Sync: testSync,
		Count: 1000000, Rejected: 3, Fields: shopifyFields,
		Source:    Source{Name: "/data/exports/products_export_1.csv", Size: 1 << 30, SHA256: strings.Repeat("ab", 32)},
		CreatedAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), UpdatedAt: time.Date(2024, 5, 1, 12, 0, 30, 0, time.UTC),
		LastSeq: 1001047,
	}
	h.Size = HeaderSizeFor(h)
	return h
}

func BenchmarkEncodeHeader(b *testing.B) {
	h := benchHeader()
	b.SetBytes(int64(h.Size))
	b.ReportAllocs()
	for b.Loop() {
		h.Count++
		if _, err := EncodeHeader(h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeHeader(b *testing.B) {
	line, err := EncodeHeader(benchHeader())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeHeader(line); err != nil {
			b.Fatal(err)
		}
	}
}
