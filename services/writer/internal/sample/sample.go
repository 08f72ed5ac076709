// Package sample makes Shopify-product-shaped records (1.2 KB of JSON on
// average: a product row with an HTML body with quotes, a newline and
// non-ASCII text, then two variant rows with the product's columns empty,
// as in a real export) for the
// writer's tests and benchmarks. The same index always gives the same
// bytes.
package sample

import (
	"fmt"
	"strconv"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Fields is the header of a Shopify product export.
var Fields = []string{
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

var (
	adjectives = []string{"Classic", "Organic", "Vintage", "Crème", "Ärmellos", "Großes", "Café", "北欧"}
	nouns      = []string{"T-Shirt", "Hoodie", "Mug", "Backpack", "Candle", "Notebook", "Sneaker", "Scarf"}
	vendors    = []string{"Acme", "Northwind Traders", "Maison Dupré", "Kōgei Works", "O'Reilly & Sons"}
	colors     = []string{"Black", "White", "Navy", "Forest Green", "Sand", "Burgundy"}
	sizes      = []string{"XS", "S", "M", "L", "XL", "XXL"}
)

var enc = func() *schema.RecordEncoder {
	e, err := schema.NewRecordEncoder(Fields)
	if err != nil {
		panic(err)
	}
	return e
}()

// Record appends record i to dst.
func Record(dst []byte, i int) []byte {
	adj, noun := adjectives[i%len(adjectives)], nouns[(i/7)%len(nouns)]
	handle := fmt.Sprintf("%s-%s-%d", adj, noun, i/3)
	title := adj + " " + noun
	body := fmt.Sprintf("<p>Our <strong>%s</strong>, \"made to last\".</p>\n<p>100%% cotton — 30°C wash.</p>", title)
	price := strconv.Itoa(10+i%90) + ".99"
	v := []string{
		handle, title, body, vendors[i%len(vendors)], "Apparel & Accessories > Clothing", "Shirts",
		"summer, sale, eco, unisex", "TRUE", "Color", colors[i%len(colors)], "Size", sizes[i%len(sizes)], "", "",
		fmt.Sprintf("SKU-%08d", i), strconv.Itoa(100 + i%900), "shopify", strconv.Itoa(i % 250), "deny", "manual",
		price, "", "TRUE", "TRUE", fmt.Sprintf("%013d", 4000000000000+i),
		"https://cdn.shopify.com/s/" + handle + ".jpg", "1", title + " in " + colors[i%len(colors)],
		"FALSE", title + " | Acme", "Buy the " + title + " online.", "1604",
		"unisex", "adult", fmt.Sprintf("MPN-%d", i), "new", "FALSE", "", "kg", "", "4.20", "TRUE", price, "", "active",
	}
	if i%3 != 0 {
		// A variant row: the product's own columns are left empty, as in
		// a real export.
		for _, c := range []int{1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36} {
			v[c] = ""
		}
	}
	out, err := enc.Append(dst, v)
	if err != nil {
		panic(err)
	}
	return out
}
