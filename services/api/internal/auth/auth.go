// Package auth holds the api's keys and checks the one a request presents.
//
// Keys come from a list (API_KEYS) and from a file with one key a line
// (API_KEYS_FILE, e.g. a Kubernetes Secret mount), re-read when it changes.
// Only SHA-256 digests of the keys are kept; a presented key is hashed and
// compared with every digest in constant time, so neither timing nor an
// early exit tells how much of a key was right. Keys are never logged.
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// ID identifies a key without revealing it: its SHA-256 digest. Rate limits
// are kept per ID.
type ID [sha256.Size]byte

// Keys is the set of accepted keys. It is safe for concurrent use.
type Keys struct {
	static []ID
	file   string
	log    *slog.Logger

	set atomic.Pointer[[]ID]

	mu      sync.Mutex        // guards the reload state below
	fileSum [sha256.Size]byte // digest of the file's bytes last loaded
	fileErr string            // last error reading the file, to log each error once
}

// New builds the key set from list (empty entries are ignored) and, if file
// is not empty, from that file; a file that cannot be read is an error here
// (at start), and only a warning on a later reload.
func New(list []string, file string, log *slog.Logger) (*Keys, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Keys{file: file, log: log}
	for _, key := range list {
		if key = strings.TrimSpace(key); key != "" {
			k.static = append(k.static, sha256.Sum256([]byte(key)))
		}
	}
	var fromFile []ID
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("API_KEYS_FILE: %w", err)
		}
		fromFile = parse(b)
		k.fileSum = sha256.Sum256(b)
	}
	k.store(fromFile)
	return k, nil
}

func (k *Keys) store(fromFile []ID) {
	all := make([]ID, 0, len(k.static)+len(fromFile))
	all = append(all, k.static...)
	all = append(all, fromFile...)
	k.set.Store(&all)
}

// parse reads one key a line; blank lines and lines starting with '#' are
// skipped, spaces around a key are not part of it.
func parse(b []byte) []ID {
	var ids []ID
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ids = append(ids, sha256.Sum256([]byte(line)))
	}
	return ids
}

// Len is the number of keys accepted now.
func (k *Keys) Len() int { return len(*k.set.Load()) }

// Check reports whether key is accepted, and its ID. It compares the key's
// digest with every accepted digest, without stopping at a match.
func (k *Keys) Check(key string) (ID, bool) {
	id := ID(sha256.Sum256([]byte(key)))
	if key == "" {
		return id, false
	}
	match := 0
	for _, want := range *k.set.Load() {
		match |= subtle.ConstantTimeCompare(id[:], want[:])
	}
	return id, match == 1
}

// Reload re-reads the keys file and reports whether its keys changed. A
// file that cannot be read leaves the keys as they were.
func (k *Keys) Reload() (bool, error) {
	if k.file == "" {
		return false, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	b, err := os.ReadFile(k.file)
	if err != nil {
		return false, fmt.Errorf("API_KEYS_FILE: %w", err)
	}
	sum := sha256.Sum256(b)
	if sum == k.fileSum {
		return false, nil
	}
	k.fileSum = sum
	ids := parse(b)
	k.store(ids)
	return true, nil
}

// Refresh re-reads the keys file, as Reload does, and logs a change with
// the number of keys, never the keys, and each new error once.
func (k *Keys) Refresh() {
	changed, err := k.Reload()
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case err != nil:
		if msg := err.Error(); msg != k.fileErr {
			k.fileErr = msg
			k.log.Warn("cannot re-read the API keys file; keeping the keys loaded before", "file", k.file, "err", err)
		}
	case changed:
		k.fileErr = ""
		k.log.Info("API keys file re-read", "file", k.file, "keys", k.Len())
	default:
		k.fileErr = ""
	}
}

// ErrNoKey means the request presented no key at all.
var ErrNoKey = errors.New("no API key")

// FromHeaders returns the key a request presents: X-API-Key, or else an
// Authorization header with the Bearer scheme (any case).
func FromHeaders(xAPIKey, authorization string) (string, error) {
	if xAPIKey = strings.TrimSpace(xAPIKey); xAPIKey != "" {
		return xAPIKey, nil
	}
	if authorization == "" {
		return "", ErrNoKey
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", fmt.Errorf("%w: the Authorization header must be \"Bearer <key>\"", ErrNoKey)
	}
	return strings.TrimSpace(token), nil
}
