package stack

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// storeFolder is the embedded NATS server's folder in DATA_DIR. Its leading
// dot keeps it out of the dataset namespace: no dataset name starts with
// one.
const storeFolder = ".nats"

// natsStoreDir is the JetStream store folder under dataDir. A store that an
// earlier version kept in DATA_DIR/nats (where a dataset named "nats" would
// have written too) is moved to its new place first.
func natsStoreDir(dataDir string, log *slog.Logger) (string, error) {
	dir := filepath.Join(dataDir, storeFolder)
	old := filepath.Join(dataDir, "nats")
	if _, err := os.Stat(filepath.Join(old, "jetstream")); err != nil {
		return dir, nil // no store of an earlier version
	}
	switch _, err := os.Stat(dir); {
	case err == nil:
		return dir, nil // already moved; DATA_DIR/nats is a dataset's now
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("NATS store %s: %w", dir, err)
	}
	if err := os.Rename(old, dir); err != nil {
		return "", fmt.Errorf("moving the NATS store from %s to %s: %w", old, dir, err)
	}
	log.Info("moved the embedded NATS store out of the dataset folders", "from", old, "to", dir)
	return dir, nil
}
