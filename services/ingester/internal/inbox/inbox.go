// Package inbox lists the CSV files of a folder and names the dataset each
// one syncs to: inbox/orders.csv -> orders. It only reads the folder's
// listing; the files themselves are read by the ingester, one sync each.
package inbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

// Errors of a file that Scan skips, wrapped by File.Err.
var (
	// ErrBadName: the file's name gives no valid dataset name (it also
	// wraps schema.ErrInvalidDataset, which says why).
	ErrBadName = errors.New("the file name gives no valid dataset name")
	// ErrNameClash: another file of the folder names the same dataset.
	ErrNameClash = errors.New("another file names the same dataset")
	// ErrNotReadable: the entry cannot be examined (a broken symbolic link,
	// no permission).
	ErrNotReadable = errors.New("cannot be read")
)

// File is one CSV file of the folder.
type File struct {
	// Path is the folder joined with Name.
	Path string
	// Name is the file's name in the folder, e.g. "Orders 2024.CSV".
	Name string
	// Dataset is DatasetName(Name); "" when the name gives no valid one.
	Dataset string
	// Err is nil for a file to sync; otherwise why it is skipped, wrapping
	// ErrBadName, ErrNameClash or ErrNotReadable, with a message that names
	// the file's dataset (if any) and says what to change.
	Err error
}

// IsCSV reports whether a folder entry named name is one Scan considers: a
// name ending in ".csv" in any case, and not a dotfile (".orders.csv" is
// how a file is written before it is renamed into place, unseen).
func IsCSV(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.EqualFold(filepath.Ext(name), ".csv")
}

// DatasetName is the dataset a file named name syncs to: the name without
// its extension, lowercased, every character outside [a-z0-9_-] turned into
// '-', leading '-' and '_' removed ("Orders 2024.CSV" -> "orders-2024"). The
// error, if the result is still not a valid dataset name (empty, too long),
// wraps ErrBadName and schema.ErrInvalidDataset; the name is returned
// anyway, for messages.
func DatasetName(name string) (string, error) {
	stem := strings.ToLower(strings.TrimSuffix(name, filepath.Ext(name)))
	ds := strings.TrimLeft(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, stem), "-_")
	if err := schema.ValidateDataset(ds); err != nil {
		return ds, fmt.Errorf("%w (%q): %w; rename the file", ErrBadName, ds, err)
	}
	return ds, nil
}

// Scan lists the CSV files directly in dir (not in its subfolders), sorted
// by name: entries for which IsCSV holds and that are, or link to, regular
// files. Other entries (other extensions, dotfiles, folders, pipes) are left
// out without a word. Each File has its dataset, or an Err saying why it is
// skipped:
//   - its name gives no valid dataset name (ErrBadName);
//   - several files name the same dataset (ErrNameClash): a file whose name
//     is exactly the dataset's plus ".csv" (orders.csv) keeps it and the
//     others are skipped; when none is, all of them are skipped, since which
//     one is meant cannot be told;
//   - it cannot be examined (ErrNotReadable).
//
// The error is about dir itself (missing, not a folder, unreadable).
func Scan(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%s: no such folder", dir)
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("%s: cannot list the folder: permission denied", dir)
		}
		return nil, fmt.Errorf("%s: cannot list the folder: %w", dir, err)
	}
	var files []File
	byDataset := map[string][]int{}
	for _, e := range entries {
		if !IsCSV(e.Name()) {
			continue
		}
		f := File{Path: filepath.Join(dir, e.Name()), Name: e.Name()}
		st, err := os.Stat(f.Path) // follows links: ConfigMap volumes are links
		switch {
		case err != nil:
			f.Err = fmt.Errorf("%w: %w", ErrNotReadable, err)
		case !st.Mode().IsRegular():
			continue
		default:
			f.Dataset, f.Err = DatasetName(f.Name)
			if f.Err != nil {
				f.Dataset = ""
			}
		}
		if f.Err == nil {
			byDataset[f.Dataset] = append(byDataset[f.Dataset], len(files))
		}
		files = append(files, f)
	}
	for ds, idx := range byDataset {
		if len(idx) < 2 {
			continue
		}
		owner := -1
		for _, i := range idx {
			if files[i].Name == ds+".csv" {
				owner = i
			}
		}
		for _, i := range idx {
			if i == owner {
				continue
			}
			if owner >= 0 {
				files[i].Err = fmt.Errorf("%w: %s also gives dataset %q and keeps it, its name being exactly the dataset's; rename this one",
					ErrNameClash, files[owner].Name, ds)
				continue
			}
			var others []string
			for _, j := range idx {
				if j != i {
					others = append(others, files[j].Name)
				}
			}
			files[i].Err = fmt.Errorf("%w: %s also gives dataset %q, and which one is meant cannot be told, so none is synced; rename all but one (%s.csv keeps that name)",
				ErrNameClash, strings.Join(others, ", "), ds, ds)
		}
	}
	return files, nil
}
