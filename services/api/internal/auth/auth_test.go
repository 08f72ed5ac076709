package auth

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckAcceptsOnlyConfiguredKeys(t *testing.T) {
	k, err := New([]string{" alpha ", "", "beta"}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 2 {
		t.Fatalf("%d keys, want 2", k.Len())
	}
	for key, want := range map[string]bool{"alpha": true, "beta": true, "gamma": false, "": false, "alph": false, "alphaa": false, "ALPHA": false} {
		if _, ok := k.Check(key); ok != want {
			t.Errorf("Check(%q) = %v, want %v", key, ok, want)
		}
	}
	a1, _ := k.Check("alpha")
	a2, _ := k.Check("alpha")
	b, _ := k.Check("beta")
	if a1 != a2 || a1 == b {
		t.Error("IDs are not stable per key")
	}
}

func TestFromHeaders(t *testing.T) {
	for _, tc := range []struct {
		x, authz, want string
		ok             bool
	}{
		{"k1", "", "k1", true},
		{"", "Bearer k2", "k2", true},
		{"", "bearer  k2 ", "k2", true},
		{"k1", "Bearer k2", "k1", true},
		{"", "Basic dXNlcjpwYXNz", "", false},
		{"", "Bearer", "", false},
		{"", "Bearer ", "", false},
		{"", "", "", false},
	} {
		got, err := FromHeaders(tc.x, tc.authz)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("X-API-Key %q, Authorization %q: %q %v", tc.x, tc.authz, got, err)
		}
	}
}

func TestKeysFileIsReReadWhenItChanges(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(file, []byte("# rotated monthly\nold-key\n\n"), 0o600)
	var logs bytes.Buffer
	k, err := New([]string{"static"}, file, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Check("old-key"); !ok {
		t.Fatal("key from the file refused")
	}
	if _, ok := k.Check("# rotated monthly"); ok {
		t.Fatal("a comment was taken for a key")
	}
	// A Secret mount swaps the file: write another and rename it over.
	tmp := file + ".tmp"
	os.WriteFile(tmp, []byte("new-key\n"), 0o600)
	os.Rename(tmp, file)
	k.Refresh()
	_, okNew := k.Check("new-key")
	_, okOld := k.Check("old-key")
	if !okNew || okOld {
		t.Fatal("the new keys file was not taken up")
	}
	if _, ok := k.Check("static"); !ok {
		t.Error("the API_KEYS key was dropped by a file reload")
	}
	// An unreadable file keeps the keys loaded before.
	os.Remove(file)
	if _, err := k.Reload(); err == nil {
		t.Error("reload of a missing file gave no error")
	}
	if _, ok := k.Check("new-key"); !ok {
		t.Error("a missing file dropped the keys")
	}
	k.Refresh()
	if !strings.Contains(logs.String(), "keeping the keys loaded before") {
		t.Errorf("an unreadable file was not logged: %s", logs.String())
	}
	for _, secret := range []string{"old-key", "new-key", "static"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a key appears in the log: %s", logs.String())
		}
	}
}

func TestNewRefusesAnUnreadableKeysFile(t *testing.T) {
	if _, err := New(nil, filepath.Join(t.TempDir(), "missing"), nil); err == nil || !strings.Contains(err.Error(), "API_KEYS_FILE") {
		t.Fatalf("missing API_KEYS_FILE: %v", err)
	}
}
