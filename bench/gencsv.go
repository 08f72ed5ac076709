package main

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// The bench's own CSV generator: Shopify-shaped product and order exports,
// deterministic by seed (the same kind, rows and seed give the same bytes),
// so that `make bench` needs nothing but a clone. A product spans one to
// four variant rows whose cells are mostly empty, as in a real export; its
// first row carries an HTML body with commas, doubled quotes, line breaks
// and non-ASCII text. An order spans one to three line-item rows.
//
//	cd bench && go run . -gen products -rows 1M -out products.csv

// productColumns is the header of a Shopify product export.
var productColumns = strings.Split("Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Published,"+
	"Option1 Name,Option1 Value,Option2 Name,Option2 Value,Option3 Name,Option3 Value,Variant SKU,Variant Grams,"+
	"Variant Inventory Tracker,Variant Inventory Qty,Variant Inventory Policy,Variant Fulfillment Service,"+
	"Variant Price,Variant Compare At Price,Variant Requires Shipping,Variant Taxable,Variant Barcode,Image Src,"+
	"Image Position,Image Alt Text,Gift Card,SEO Title,SEO Description,Google Shopping / Google Product Category,"+
	"Google Shopping / Gender,Google Shopping / Age Group,Google Shopping / MPN,Google Shopping / Condition,"+
	"Google Shopping / Custom Product,Variant Image,Variant Weight Unit,Variant Tax Code,Cost per item,"+
	"Included / United States,Price / United States,Compare At Price / United States,Status", ",")

// orderColumns is the header of a Shopify order export.
var orderColumns = strings.Split("Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,"+
	"Accepts Marketing,Currency,Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,"+
	"Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem compare at price,Lineitem sku,"+
	"Lineitem requires shipping,Lineitem taxable,Lineitem fulfillment status,Billing Name,Billing Street,"+
	"Billing Address1,Billing City,Billing Zip,Billing Province,Billing Country,Billing Phone,Shipping Name,"+
	"Shipping Street,Shipping City,Shipping Zip,Shipping Province,Shipping Country,Notes,Payment Method,Id,Tags,"+
	"Risk Level,Source,Vendor", ",")

var (
	genMaterials = []string{"Linen", "Merino", "Recycled Canvas", "Stoneware", "Oak", "Bamboo", "Crème Leather", "Baumwolle", "Acier", "和紙"}
	genThings    = []string{"Shirt", "Hoodie", "Mug", "Backpack", "Candle", "Notebook", "Sneaker", "Scarf", "Lamp", "Bottle", "Tote", "Beanie"}
	genVendors   = []string{"Fjord & Pine", "Maison Lefèvre", "O'Hara Goods", "Blue Heron Co.", "Tōkyō Atelier", "Northwind"}
	genColors    = []string{"Black", "Ivory", "Navy", "Moss", "Rust", "Sand"}
	genSizes     = []string{"XS", "S", "M", "L", "XL"}
	genTags      = []string{"new", "sale", "eco", "gift", "bestseller", "limited", "winter", "summer"}
	genNames     = []string{"Amélie Durand", "Jonas Weiß", "Chloé O'Brien", "Kenji Satō", "María José Núñez", "Ola Nordmann", "Zoë Kowalczyk"}
	genCities    = []string{"Lyon", "Köln", "Porto", "Kyoto", "Austin", "Malmö", "Québec"}
)

// writeCSV writes rows data rows of kind ("products" or "orders") to w.
func writeCSV(w io.Writer, kind string, rows int, seed uint64) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := csv.NewWriter(bw)
	r := rand.New(rand.NewPCG(seed, 0x726f7770697065)) // "rowpipe"
	var err error
	switch kind {
	case "products":
		err = genProducts(cw, r, rows)
	case "orders":
		err = genOrders(cw, r, rows)
	default:
		err = fmt.Errorf("unknown kind %q: want products or orders", kind)
	}
	if err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// writeCSVFile is writeCSV into a new file at path.
func writeCSVFile(path, kind string, rows int, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeCSV(f, kind, rows, seed); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func one(r *rand.Rand, xs []string) string { return xs[r.IntN(len(xs))] }

func money(r *rand.Rand, lo, hi int) string {
	return strconv.FormatFloat(float64(lo+r.IntN(hi-lo))/100, 'f', 2, 64)
}

func productBody(r *rand.Rand, title string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<p>The %s, made to last: %s, %s and ready to ship.</p>`, title, one(r, genMaterials), strings.ToLower(one(r, genColors)))
	if r.IntN(2) == 0 {
		b.WriteString("\n<ul>\n<li>Size: 30 cm x 40 cm, \"one size fits most\"</li>\n<li>Care: hand wash, dry flat</li>\n</ul>")
	}
	fmt.Fprintf(&b, `<p>Batch n° %d — %d%% recycled.</p>`, r.IntN(100000), 10+r.IntN(90))
	return b.String()
}

func genProducts(cw *csv.Writer, r *rand.Rand, rows int) error {
	if err := cw.Write(productColumns); err != nil {
		return err
	}
	rec := make([]string, len(productColumns))
	for n, p := 0, 1; n < rows; p++ {
		title := one(r, genMaterials) + " " + one(r, genThings)
		handle := strings.ToLower(strings.NewReplacer(" ", "-", "'", "").Replace(title)) + "-" + strconv.Itoa(p)
		price, variants := money(r, 500, 25000), 1+r.IntN(4)
		for v := 0; v < variants && n < rows; v++ {
			clear(rec)
			rec[0] = handle
			if v == 0 {
				rec[1], rec[2], rec[3] = title, productBody(r, title), one(r, genVendors)
				rec[4], rec[5] = "Apparel & Accessories > "+one(r, genThings), one(r, genThings)
				rec[6], rec[7] = one(r, genTags)+", "+one(r, genTags), "true"
				rec[8], rec[10] = "Color", "Size"
				rec[25] = fmt.Sprintf("https://cdn.shopify.com/s/files/1/%04d/products/%s.jpg?v=%d", r.IntN(10000), handle, 1700000000+r.IntN(1e8))
				rec[26], rec[27], rec[28] = "1", title, "false"
				rec[29], rec[30] = title+" | "+one(r, genVendors), "Shop the "+title+", free returns."
				rec[32], rec[33], rec[35], rec[36] = "unisex", "adult", "new", "FALSE"
				rec[44] = "active"
			}
			rec[9], rec[11] = one(r, genColors), one(r, genSizes)
			rec[14] = fmt.Sprintf("SKU-%07d-%d", p, v)
			rec[15], rec[16], rec[17] = strconv.Itoa(100+r.IntN(900)), "shopify", strconv.Itoa(r.IntN(500))
			rec[18], rec[19], rec[20] = "deny", "manual", price
			if r.IntN(3) == 0 {
				rec[21] = money(r, 25000, 30000)
			}
			rec[22], rec[23], rec[38], rec[41] = "true", "true", "g", "true"
			if r.IntN(2) == 0 {
				rec[24] = strconv.FormatUint(r.Uint64()%1e12, 10)
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
			n++
		}
	}
	return nil
}

func genOrders(cw *csv.Writer, r *rand.Rand, rows int) error {
	if err := cw.Write(orderColumns); err != nil {
		return err
	}
	rec := make([]string, len(orderColumns))
	for n, o := 0, 1001; n < rows; o++ {
		name, city := one(r, genNames), one(r, genCities)
		created := fmt.Sprintf("2024-%02d-%02d %02d:%02d:%02d +0100", 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60))
		for li, items := 0, 1+r.IntN(3); li < items && n < rows; li++ {
			clear(rec)
			rec[0], rec[1] = "#"+strconv.Itoa(o), strings.ToLower(strings.ReplaceAll(name, " ", "."))+"@example.com"
			if li == 0 {
				rec[2], rec[3], rec[4], rec[5] = "paid", created, "fulfilled", created
				rec[6], rec[7] = "no", "EUR"
				rec[8], rec[9], rec[10], rec[11] = money(r, 1000, 30000), "4.90", money(r, 100, 3000), money(r, 1500, 35000)
				rec[14], rec[24], rec[25], rec[26] = "Standard", name, strconv.Itoa(1+r.IntN(200))+" Rue de l'Église, Bât. B", "Apt. 3"
				rec[27], rec[28], rec[30], rec[31] = city, fmt.Sprintf("%05d", r.IntN(100000)), "FR", "+33 6 12 34 56 78"
				rec[32], rec[33], rec[34], rec[37] = name, rec[25], city, "FR"
				if r.IntN(4) == 0 {
					rec[38] = "Please leave at the door, \"back entrance\".\nThanks!"
				}
				rec[39], rec[40], rec[42], rec[43] = "shopify_payments", strconv.Itoa(5000000000+o), "Low", "web"
			}
			rec[15], rec[16] = created, strconv.Itoa(1+r.IntN(3))
			rec[17] = one(r, genMaterials) + " " + one(r, genThings) + " - " + one(r, genColors) + " / " + one(r, genSizes)
			rec[18], rec[20], rec[21], rec[22], rec[23] = money(r, 500, 25000), fmt.Sprintf("SKU-%07d", r.IntN(1e6)), "true", "true", "fulfilled"
			rec[44] = one(r, genVendors)
			if err := cw.Write(rec); err != nil {
				return err
			}
			n++
		}
	}
	return nil
}
