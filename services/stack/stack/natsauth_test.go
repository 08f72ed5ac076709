package stack

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/pkg/svc"
	"github.com/rowpipe/rowpipe/services/api/api"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/stack/natsauth"
)

func TestNATSAuthDecision(t *testing.T) {
	const pw = "0123456789abcdef0123"
	for _, tc := range []struct {
		name     string
		c        Config
		on       bool
		warn     bool
		errWants string
	}{
		{"loopback needs nothing", Config{NATSListen: "127.0.0.1:4222"}, false, false, ""},
		{"localhost", Config{NATSListen: "localhost:4222"}, false, false, ""},
		{"ipv6 loopback", Config{NATSListen: "[::1]:4222"}, false, false, ""},
		{"in-process only", Config{NATSListen: "off"}, false, false, ""},
		{"every interface without credentials", Config{NATSListen: "0.0.0.0:4222"}, false, false, "NATS_AUTH=off"},
		{"empty host without credentials", Config{NATSListen: ":4222"}, false, false, "NATS_ADMIN_PASSWORD"},
		{"a LAN address without credentials", Config{NATSListen: "192.168.1.5:4222"}, false, false, "NATS_INGESTER_PASSWORD"},
		{"explicitly off beyond loopback", Config{NATSListen: "0.0.0.0:4222", NATSAuth: "off"}, false, true, ""},
		{"explicitly off on loopback", Config{NATSListen: "127.0.0.1:4222", NATSAuth: "OFF"}, false, false, ""},
		{"a password turns it on", Config{NATSListen: "0.0.0.0:4222", NATSAdminPassword: pw}, true, false, ""},
		{"a password on loopback too", Config{NATSListen: "127.0.0.1:4222", NATSIngesterPassword: pw}, true, false, ""},
		{"forced on", Config{NATSListen: "127.0.0.1:4222", NATSAuth: "on"}, true, false, ""},
		{"off with a password", Config{NATSListen: "0.0.0.0:4222", NATSAuth: "off", NATSWriterPassword: pw}, false, false, "both set"},
		{"a short password", Config{NATSListen: "0.0.0.0:4222", NATSWriterPassword: "hunter2"}, false, false, "NATS_WRITER_PASSWORD"},
		{"a bad mode", Config{NATSListen: "127.0.0.1:4222", NATSAuth: "maybe"}, false, false, "NATS_AUTH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.c.natsAuth()
			if tc.errWants != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errWants) {
					t.Fatalf("err %v, want one naming %s", err, tc.errWants)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if on := a.passwords != nil; on != tc.on {
				t.Errorf("authentication on = %v, want %v", on, tc.on)
			}
			if (a.warning != "") != tc.warn {
				t.Errorf("warning %q, want one: %v", a.warning, tc.warn)
			}
			for _, r := range natsauth.Roles {
				if tc.on && len(a.passwords[r]) < minPasswordLen {
					t.Errorf("role %s has no usable password", r)
				}
			}
			if tc.c.NATSAdminPassword != "" && a.passwords[natsauth.Admin] != tc.c.NATSAdminPassword {
				t.Errorf("the admin password is not the one configured")
			}
		})
	}
}

func TestStackRefusesToServeNATSBeyondLoopbackWithoutCredentials(t *testing.T) {
	cfg := testConfig(t)
	cfg.API.Keys = api.Keys{"key-for-the-listen-test-012345"}
	cfg.NATSListen = "0.0.0.0:0"
	_, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "NATS_AUTH=off") {
		t.Fatalf("Start with NATS_LISTEN=0.0.0.0:0 and no credentials: %v, want a refusal naming NATS_AUTH=off", err)
	}
}

// failsWithin is nil when f fails (with an error, or by timing out: a
// request the server refuses for permissions gets no answer) within d.
func failsWithin(d time.Duration, f func(ctx context.Context) error) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx) != nil
}

// subscribeRefused reports whether the server refuses nc a subscription to
// subject (the refusal comes asynchronously as the connection's last error).
func subscribeRefused(t *testing.T, nc *nats.Conn, subject string) bool {
	t.Helper()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		return true
	}
	defer sub.Unsubscribe()
	nc.Flush()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := nc.LastError(); err != nil && strings.Contains(err.Error(), "Permissions Violation") {
			return true
		}
	}
	return false
}

func TestStackWithPasswordsGivesEachRoleOnlyItsSubjects(t *testing.T) {
	const (
		ingesterPW = "ingester-password-0123456789"
		writerPW   = "writer-password-0123456789ab"
		adminPW    = "admin-password-0123456789abc"
		key        = "auth-test-key-0123456789abcdef"
	)
	cfg := testConfig(t)
	cfg.API.Keys = api.Keys{key}
	cfg.NATSIngesterPassword, cfg.NATSWriterPassword, cfg.NATSAdminPassword = ingesterPW, writerPW, adminPW
	cfg.Ingest = sample // in-process, as the ingester role
	s, _, _ := start(t, cfg)
	base := "http://" + s.APIAddr().String()
	waitForCount(t, base, key, "products", len(sampleRecords(t)))

	url := s.NATSURL()
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was let in")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("no credentials: %v, want an authorization violation", err)
	}
	if nc, err := nats.Connect(url, nats.UserInfo("admin", "wrong-password-0123456789")); err == nil {
		nc.Close()
		t.Fatal("a wrong password was let in")
	}
	conn := func(user, pw string) *nats.Conn {
		auth, err := svc.NATSAuth{User: user, Password: pw}.Options() // as bin/ingester and bin/writer log in
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(url, append(auth, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))...)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}

	// The ingester publishes a sync from outside and waits for it.
	inc := conn("ingester", ingesterPW)
	csvPath := filepath.Join(t.TempDir(), "tiny.csv")
	if err := os.WriteFile(csvPath, []byte("sku,qty\nA-1,3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := ingester.Run(context.Background(), ingester.Config{Source: csvPath, Dataset: "tiny", Wait: true, Progress: "off"}, inc, nil, io.Discard, io.Discard)
	if err != nil || res.Outcome != schema.OutcomeCommitted {
		t.Fatalf("ingest as the ingester role: %+v, %v", res, err)
	}
	if code, body := get(t, base+"/fetch-data?dataset=tiny&format=ndjson", key); code != http.StatusOK || string(body) != "{\"sku\":\"A-1\",\"qty\":\"3\"}\n" {
		t.Fatalf("the external ingest is not served: %d %q", code, body)
	}

	ijs, _ := jetstream.New(inc)
	wnc := conn("writer", writerPW)
	wjs, _ := jetstream.New(wnc)
	ajs, _ := jetstream.New(conn("admin", adminPW))
	const d = 1500 * time.Millisecond
	refused := map[string]func(ctx context.Context) error{
		"ingester deletes the stream": func(ctx context.Context) error { return ijs.DeleteStream(ctx, "ROWS") },
		"ingester changes the stream's limits": func(ctx context.Context) error {
			cfg := schema.StreamConfig(schema.StreamOptions{Name: "ROWS", MaxBytes: 1 << 20})
			_, err := ijs.UpdateStream(ctx, cfg)
			return err
		},
		"ingester changes the state bucket": func(ctx context.Context) error {
			_, err := ijs.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "ROWS_STATE", History: 1})
			return err
		},
		"ingester purges the stream": func(ctx context.Context) error {
			return purgeStream(ctx, ijs)
		},
		"ingester reads the rows with a consumer": func(ctx context.Context) error {
			_, err := ijs.OrderedConsumer(ctx, "ROWS", jetstream.OrderedConsumerConfig{})
			if err != nil {
				return err
			}
			_, err = fetchOne(ctx, ijs)
			return err
		},
		"ingester writes a dataset state": func(ctx context.Context) error {
			kv, err := ijs.KeyValue(ctx, "ROWS_STATE")
			if err != nil {
				return err
			}
			_, err = kv.Put(ctx, "products", []byte(`{}`))
			return err
		},
		"writer deletes the stream": func(ctx context.Context) error { return wjs.DeleteStream(ctx, "ROWS") },
		"writer publishes a row": func(ctx context.Context) error {
			_, err := wjs.Publish(ctx, "rows.products", []byte(`{"forged":"yes"}`))
			return err
		},
		"writer deletes the state bucket": func(ctx context.Context) error { return wjs.DeleteKeyValue(ctx, "ROWS_STATE") },
	}
	for what, f := range refused {
		if !failsWithin(d, f) {
			t.Errorf("%s: allowed", what)
		}
	}
	if !subscribeRefused(t, inc, "rows.>") {
		t.Error("the ingester may subscribe to rows.>")
	}
	if !subscribeRefused(t, wnc, "$KV.>") {
		t.Error("the writer may subscribe to $KV.>")
	}
	for _, inbox := range []string{"_INBOX.>", "_INBOX_writer.>", ">"} {
		if !subscribeRefused(t, conn("ingester", ingesterPW), inbox) {
			t.Errorf("the ingester may subscribe to %s, and so read the answers the writer gets", inbox)
		}
	}
	// The operator may do what the runbook does.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ajs.Stream(ctx, "ROWS")
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	if _, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{}); err != nil {
		t.Errorf("admin cannot read the rows: %v", err)
	}
	// Nothing above got through.
	waitForCount(t, base, key, "products", len(sampleRecords(t)))
}

func purgeStream(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, "ROWS")
	if err != nil {
		return err
	}
	return s.Purge(ctx)
}

func fetchOne(ctx context.Context, js jetstream.JetStream) (jetstream.Msg, error) {
	c, err := js.OrderedConsumer(ctx, "ROWS", jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	return c.Next(jetstream.FetchMaxWait(time.Second))
}
