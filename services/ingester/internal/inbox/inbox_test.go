package inbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func TestDatasetName(t *testing.T) {
	for name, want := range map[string]string{
		"products.csv":                   "products",
		"Products.CSV":                   "products",
		"Orders 2024.csv":                "orders-2024",
		"orders.2024.csv":                "orders-2024",
		"price_list-v2.csv":              "price_list-v2",
		"Crème brûlée.csv":               "cr-me-br-l-e",
		"--_x.csv":                       "x",
		" (copy) stock.csv":              "copy--stock",
		"_2024 sales.csv":                "2024-sales",
		"ÉTÉ.csv":                        "t-", // a trailing "-" stays: only leading ones go
		strings.Repeat("a", 64) + ".csv": strings.Repeat("a", 64),
	} {
		got, err := DatasetName(name)
		if err != nil || got != want {
			t.Errorf("DatasetName(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	for name, why := range map[string]string{
		"---.csv":                        "empty",
		"é.csv":                          "empty",
		"_.csv":                          "empty",
		strings.Repeat("a", 65) + ".csv": "65 characters long",
	} {
		_, err := DatasetName(name)
		if !errors.Is(err, ErrBadName) || !errors.Is(err, schema.ErrInvalidDataset) || !strings.Contains(err.Error(), why) {
			t.Errorf("DatasetName(%q) error %v, want ErrBadName and schema.ErrInvalidDataset saying %q", name, err, why)
		}
	}
}

func TestIsCSV(t *testing.T) {
	for name, want := range map[string]bool{
		"a.csv": true, "A.CSV": true, "a.Csv": true, "a b.csv": true,
		".a.csv": false, ".csv": false, "a.csv.tmp": false, "a.txt": false, "csv": false, "a.tsv": false,
	} {
		if got := IsCSV(name); got != want {
			t.Errorf("IsCSV(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestScan(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{
		"orders.csv", "Products.CSV", // synced
		".draft.csv", "notes.txt", "orders.csv.part", // left out
		"---.csv",                // bad name
		"Stock.csv", "stock.csv", // stock.csv keeps "stock"
		"A B.csv", "a b.csv", // neither is exactly "a-b": both skipped
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("a\n1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "folder.csv"), 0o755); err != nil { // not a file
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "inner.csv"), []byte("a\n1\n"), 0o644); err != nil { // not recursive
		t.Fatal(err)
	}
	if err := os.Symlink("../products-export.csv", filepath.Join(dir, "linked.csv")); err != nil { // broken link
		t.Fatal(err)
	}

	files, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]File{}
	var order []string
	for _, f := range files {
		got[f.Name] = f
		order = append(order, f.Name)
		if f.Path != filepath.Join(dir, f.Name) {
			t.Errorf("%s: path %q", f.Name, f.Path)
		}
	}
	if want := "---.csv A B.csv Products.CSV Stock.csv a b.csv linked.csv orders.csv stock.csv"; strings.Join(order, " ") != want {
		t.Fatalf("files %q, want %q", strings.Join(order, " "), want)
	}
	for name, ds := range map[string]string{"orders.csv": "orders", "Products.CSV": "products", "stock.csv": "stock"} {
		if f := got[name]; f.Err != nil || f.Dataset != ds {
			t.Errorf("%s: dataset %q, err %v; want %q", name, f.Dataset, f.Err, ds)
		}
	}
	for name, tc := range map[string]struct {
		err  error
		text string
	}{
		"---.csv":    {ErrBadName, "the name is empty"},
		"Stock.csv":  {ErrNameClash, `stock.csv also gives dataset "stock" and keeps it`},
		"A B.csv":    {ErrNameClash, `a b.csv also gives dataset "a-b"`},
		"a b.csv":    {ErrNameClash, `A B.csv also gives dataset "a-b"`},
		"linked.csv": {ErrNotReadable, "no such file"},
	} {
		if f := got[name]; !errors.Is(f.Err, tc.err) || !strings.Contains(f.Err.Error(), tc.text) {
			t.Errorf("%s: err %v, want %v saying %q", name, f.Err, tc.err, tc.text)
		}
	}

	if _, err := Scan(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such folder") {
		t.Errorf("missing folder: err %v", err)
	}
	empty, err := Scan(t.TempDir())
	if err != nil || len(empty) != 0 {
		t.Errorf("empty folder: %v, %v", empty, err)
	}
}
