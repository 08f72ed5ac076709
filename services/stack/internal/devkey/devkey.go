// Package devkey gives `stack --dev` an API key when the operator set none:
// a random key, created once and kept beside the data (mode 0600) so that a
// second `make run` serves the same data under the same key.
package devkey

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FileName is the key's file under DATA_DIR. It starts with a dot, so it can
// never be taken for a dataset.
const FileName = ".dev-api-key"

// LoadOrCreate returns the dev key stored in dataDir, creating it first if
// there is none. created says whether it is new.
func LoadOrCreate(dataDir string) (key string, created bool, err error) {
	path := filepath.Join(dataDir, FileName)
	b, err := os.ReadFile(path)
	if err == nil {
		if key = strings.TrimSpace(string(b)); key != "" {
			return key, false, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", false, fmt.Errorf("read dev API key %s: %w", path, err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, fmt.Errorf("generate dev API key: %w", err)
	}
	key = "dev-" + hex.EncodeToString(raw[:])
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", false, fmt.Errorf("create DATA_DIR %s: %w", dataDir, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write dev API key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", false, fmt.Errorf("write dev API key: %w", err)
	}
	return key, true, nil
}
