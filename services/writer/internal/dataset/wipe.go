package dataset

import (
	"path/filepath"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/writer/internal/disk"
)

// Wipe removes the rowpipe files of a dataset (writer --rebuild):
// generations and CURRENT in its folder dir, and its state file statePath.
// Anything else is left alone. CURRENT goes first: readers may trust the
// files of the generation CURRENT names for as long as CURRENT stays in
// place (pkg/schema/docs/files.md).
func Wipe(fsys disk.FS, dir, statePath string) error {
	for _, path := range []string{statePath, statePath + ".tmp", filepath.Join(dir, schema.CurrentFile), filepath.Join(dir, schema.CurrentFile+".tmp")} {
		if err := disk.RemoveIfExists(fsys, path); err != nil {
			return err
		}
	}
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, isGen := schema.GenerationOf(e.Name()); isGen {
			if err := disk.RemoveIfExists(fsys, filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
