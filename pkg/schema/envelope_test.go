package schema

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema/jstest"
)

const testSync = "0123456789abcdef"

func TestEnvelopeHeadersRoundTrip(t *testing.T) {
	for _, e := range []Envelope{
		{Event: EventBegin, Sync: testSync},
		{Event: EventRow, Sync: testSync, Row: 1},
		{Event: EventRow, Sync: testSync, Row: 18446744073709551615},
		{Event: EventReject, Sync: testSync, Row: 7},
		{Event: EventEnd, Sync: "a"},
		{Event: EventAbort, Sync: strings.Repeat("z", MaxSyncIDLen)},
	} {
		got, err := ParseEnvelope(e.Headers())
		if err != nil || got != e {
			t.Errorf("ParseEnvelope(%+v.Headers()) = %+v, %v", e, got, err)
		}
	}
}

func TestEnvelopeHeadersCarryKindSyncRow(t *testing.T) {
	tests := []struct {
		e    Envelope
		want map[string][]string
	}{
		{Envelope{Event: EventRow, Sync: testSync, Row: 42}, map[string][]string{
			"Rowpipe-Event": {"row"},
			"Rowpipe-Sync":  {testSync}, "Rowpipe-Row": {"42"},
		}},
		{Envelope{Event: EventReject, Sync: testSync, Row: 9}, map[string][]string{
			"Rowpipe-Event": {"reject"},
			"Rowpipe-Sync":  {testSync}, "Rowpipe-Row": {"9"},
		}},
		{Envelope{Event: EventBegin, Sync: testSync, Row: 5}, map[string][]string{ // Row ignored
			"Rowpipe-Event": {"begin"},
			"Rowpipe-Sync":  {testSync},
		}},
	}
	for _, tt := range tests {
		if got := tt.e.Headers(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v.Headers() = %v, want %v", tt.e, got, tt.want)
		}
	}
}

func TestParseEnvelopeRefusesMalformedHeaders(t *testing.T) {
	row := func(kv ...string) map[string][]string {
		h := map[string][]string{HeaderEvent: {"row"}, HeaderSync: {testSync}, HeaderRow: {"1"}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<absent>" {
				delete(h, kv[i])
			} else {
				h[kv[i]] = []string{kv[i+1]}
			}
		}
		return h
	}
	tests := []struct {
		name string
		h    map[string][]string
		want string // substring of the error
	}{
		{"nil headers", nil, "no Rowpipe-Event"},
		{"no event", row(HeaderEvent, "<absent>"), "no Rowpipe-Event"},
		{"empty event", row(HeaderEvent, ""), "no Rowpipe-Event"},
		{"event with no value", map[string][]string{HeaderEvent: {}}, "no Rowpipe-Event"},
		{"unknown event", row(HeaderEvent, "commit"), `unknown Rowpipe-Event "commit"`},
		{"event case", row(HeaderEvent, "ROW"), "unknown Rowpipe-Event"},
		{"lower-case header name", map[string][]string{"rowpipe-event": {"row"}}, "no Rowpipe-Event"},
		{"no sync", row(HeaderSync, "<absent>"), "sync id"},
		{"uppercase sync", row(HeaderSync, "ABCDEF"), "sync id"},
		{"sync with a dot", row(HeaderSync, "ab.cd"), "sync id"},
		{"sync with a wildcard", row(HeaderSync, "ab*"), "sync id"},
		{"long sync", row(HeaderSync, strings.Repeat("a", MaxSyncIDLen+1)), "sync id"},
		{"row without index", row(HeaderRow, "<absent>"), "Rowpipe-Row"},
		{"row index zero", row(HeaderRow, "0"), "not a positive integer"},
		{"negative row index", row(HeaderRow, "-1"), "not a positive integer"},
		{"row index with sign", row(HeaderRow, "+1"), "not a positive integer"},
		{"row index not a number", row(HeaderRow, "one"), "not a positive integer"},
		{"row index overflow", row(HeaderRow, "18446744073709551616"), "not a positive integer"},
		{"reject without line", map[string][]string{HeaderEvent: {"reject"}, HeaderSync: {testSync}}, "Rowpipe-Row"},
	}
	for _, tt := range tests {
		_, err := ParseEnvelope(tt.h)
		if err == nil {
			t.Errorf("%s: ParseEnvelope(%v) = nil error", tt.name, tt.h)
			continue
		}
		if !errors.Is(err, ErrEnvelope) {
			t.Errorf("%s: %v does not wrap ErrEnvelope", tt.name, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

func TestParseEnvelopeIgnoresRowOnFramingEvents(t *testing.T) {
	h := map[string][]string{HeaderEvent: {"end"}, HeaderSync: {testSync}, HeaderRow: {"junk"}}
	e, err := ParseEnvelope(h)
	if err != nil || e != (Envelope{Event: EventEnd, Sync: testSync}) {
		t.Errorf("ParseEnvelope = %+v, %v", e, err)
	}
}

func TestNewSyncIDIsValidAndFresh(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewSyncID()
		if len(id) != 16 {
			t.Errorf("NewSyncID() = %q, want 16 hex digits", id)
		}
		if err := ValidateSyncID(id); err != nil {
			t.Errorf("ValidateSyncID(NewSyncID()) = %v", err)
		}
		if seen[id] {
			t.Errorf("NewSyncID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestValidateSyncID(t *testing.T) {
	for id, ok := range map[string]bool{
		"a": true, testSync: true, strings.Repeat("9", 32): true, "z0": true,
		"": false, strings.Repeat("9", 33): false, "A": false, "a-b": false, "a_b": false,
		"a.b": false, "a b": false, "é": false, ">": false,
	} {
		if err := ValidateSyncID(id); (err == nil) != ok {
			t.Errorf("ValidateSyncID(%q) = %v, want ok=%v", id, err, ok)
		} else if err != nil && !errors.Is(err, ErrEnvelope) {
			t.Errorf("ValidateSyncID(%q) = %v, does not wrap ErrEnvelope", id, err)
		}
	}
}

func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{"replace": ModeReplace, "append": ModeAppend} {
		if got, err := ParseMode(s); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "Replace", "APPEND", "merge", " replace", "replace\n"} {
		got, err := ParseMode(s)
		if err == nil || got != "" {
			t.Errorf("ParseMode(%q) = %q, %v; want an error", s, got, err)
		} else if !strings.Contains(err.Error(), `"replace" or "append"`) {
			t.Errorf("ParseMode(%q) error %q does not say what is accepted", s, err)
		}
	}
}

// The JSON names of the bodies are part of the wire format (docs/messages.md).
func TestBodiesJSONNames(t *testing.T) {
	started := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		v    any
		want string
	}{
		{Begin{Version: 1, Dataset: "products", Sync: "s1", Mode: ModeReplace, Fields: []string{"a", "a_2"},
			Renamed: []Rename{{Column: 2, From: "a", To: "a_2"}}, Source: Source{Name: "p.csv", Size: 10}, StartedAt: started},
			`{"version":1,"dataset":"products","sync":"s1","mode":"replace","fields":["a","a_2"],"renamed":[{"column":2,"from":"a","to":"a_2"}],"source":{"name":"p.csv","size":10},"started_at":"2024-05-01T12:00:00Z"}`},
		{End{Rows: 3, Rejected: 1, Source: Source{Name: "-", Size: -1, SHA256: "ab"}},
			`{"rows":3,"rejected":1,"source":{"name":"-","size":-1,"sha256":"ab"}}`},
		{Abort{Code: AbortUnchanged, Reason: "same sha256"}, `{"code":"unchanged","reason":"same sha256"}`},
		{Reject{Line: 4, Column: 2, Reason: "invalid UTF-8", Error: "p.csv:4: column 2: invalid UTF-8", Raw: "x,\"y\""},
			`{"line":4,"column":2,"reason":"invalid UTF-8","error":"p.csv:4: column 2: invalid UTF-8","raw":"x,\"y\""}`},
		{Reject{Line: 4, Reason: "wrong number of fields", Error: "e"}, `{"line":4,"reason":"wrong number of fields","error":"e"}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil || string(b) != tt.want {
			t.Errorf("json.Marshal(%T) =\n%s, %v\nwant\n%s", tt.v, b, err, tt.want)
		}
	}
}

// The headers survive a real JetStream round trip unchanged (nats.go keeps
// header names as they are), and carry no Nats-Msg-Id.
func TestEnvelopeThroughJetStream(t *testing.T) {
	srv := jstest.Start(t)
	js, err := jetstream.New(srv.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := EnsureStream(ctx, js, StreamOptions{Name: DefaultStream, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(e Envelope, body string) *jetstream.PubAck {
		t.Helper()
		msg := &nats.Msg{Subject: Subject("products"), Header: nats.Header(e.Headers()), Data: []byte(body)}
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatalf("publish %+v: %v", e, err)
		}
		return ack
	}
	sent := []Envelope{
		{Event: EventBegin, Sync: testSync},
		{Event: EventRow, Sync: testSync, Row: 1},
		{Event: EventReject, Sync: testSync, Row: 3},
		{Event: EventRow, Sync: testSync, Row: 2},
		{Event: EventEnd, Sync: testSync},
	}
	for _, e := range sent {
		publish(e, "{}")
	}
	for i, want := range sent {
		m, err := stream.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseEnvelope(m.Header)
		if err != nil || got != want {
			t.Errorf("seq %d: ParseEnvelope = %+v, %v; want %+v", i+1, got, err, want)
		}
		if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
			t.Errorf("seq %d: Nats-Msg-Id %q", i+1, id)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add("row", testSync, "1", "products."+testSync+".1")
	f.Add("reject", testSync, "7", "")
	f.Add("begin", "a", "", "")
	f.Add("end", strings.Repeat("z", 32), "0", "x")
	f.Add("abort", strings.Repeat("z", 33), "-1", "")
	f.Add("row", testSync, "18446744073709551616", "")
	f.Add("row", testSync, "0x10", "")
	f.Add("", "", "", "")
	f.Add("\xff", "\x00", "\u2028", "")
	f.Fuzz(func(t *testing.T, event, sync, row, msgID string) {
		h := map[string][]string{HeaderEvent: {event}, HeaderSync: {sync}, HeaderRow: {row}, jetstream.MsgIDHeader: {msgID}}
		e, err := ParseEnvelope(h)
		if err != nil {
			if !errors.Is(err, ErrEnvelope) {
				t.Fatalf("error %v does not wrap ErrEnvelope", err)
			}
			return
		}
		// Whatever is accepted is a well-formed envelope whose own headers
		// parse back to it.
		if ValidateSyncID(e.Sync) != nil {
			t.Fatalf("accepted sync id %q", e.Sync)
		}
		if (e.Event == EventRow || e.Event == EventReject) != (e.Row > 0) {
			t.Fatalf("accepted %+v", e)
		}
		again, err := ParseEnvelope(e.Headers())
		if err != nil || again != e {
			t.Fatalf("ParseEnvelope(%+v.Headers()) = %+v, %v", e, again, err)
		}
	})
}
