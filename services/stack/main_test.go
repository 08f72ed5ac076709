package main

import "testing"

func TestNATSBeyondLoopbackWithoutCredentialsIsAUsageError(t *testing.T) {
	t.Setenv("DATA_DIR", t.TempDir())
	t.Setenv("API_KEYS", "main-test-key-0123456789abcdef")
	t.Setenv("API_ADDR", "127.0.0.1:0")
	t.Setenv("NATS_LISTEN", "0.0.0.0:4222")
	for _, v := range []string{"NATS_AUTH", "NATS_INGESTER_PASSWORD", "NATS_WRITER_PASSWORD", "NATS_ADMIN_PASSWORD"} {
		t.Setenv(v, "")
	}
	if code := run(nil); code != 2 {
		t.Errorf("NATS_LISTEN=0.0.0.0:4222 without credentials: exit %d, want 2", code)
	}
	t.Setenv("NATS_AUTH", "sometimes")
	t.Setenv("NATS_LISTEN", "127.0.0.1:0")
	if code := run(nil); code != 2 {
		t.Errorf("NATS_AUTH=sometimes: exit %d, want 2", code)
	}
}
