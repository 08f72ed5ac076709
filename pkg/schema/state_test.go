package schema

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStateBucketName(t *testing.T) {
	if got := StateBucket("ROWS"); got != "ROWS_STATE" {
		t.Errorf("StateBucket(ROWS) = %q", got)
	}
}

func TestStateRoundTrip(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 5, time.UTC)
	states := []DatasetState{
		{Dataset: "products", Seq: 1},
		{
			Dataset:  "products",
			Seq:      1044,
			Current:  &GenerationState{Generation: 42, Sync: testSync, Count: 1000, Rejected: 2, SHA256: strings.Repeat("a", 64), UpdatedAt: at},
			Building: &GenerationState{Generation: 1045, Sync: "fedcba9876543210", SHA256: strings.Repeat("b", 64), UpdatedAt: at, Mode: ModeReplace},
			Last:     &SyncOutcome{Sync: testSync, Outcome: OutcomeCommitted, Generation: 42, Rows: 1000, Rejected: 2},
		},
		{Dataset: "orders", Seq: 7, Last: &SyncOutcome{Sync: "s", Outcome: OutcomeFailed, Rows: 9, Reason: "row 11 after row 9: a gap"}},
	}
	for _, s := range states {
		got, err := DecodeState(EncodeState(s))
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Errorf("DecodeState(EncodeState(%+v)) = %+v, %v", s, got, err)
		}
	}
}

// The JSON names are what ingesters read from the bucket (docs/state.md).
func TestStateJSONNames(t *testing.T) {
	s := DatasetState{
		Dataset: "p", Seq: 9,
		Current: &GenerationState{Generation: 5, Sync: "s1", Count: 3, Rejected: 1, SHA256: "ab", UpdatedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		Last:    &SyncOutcome{Sync: "s1", Outcome: OutcomeCommitted, Generation: 5, Rows: 3, Rejected: 1},
	}
	want := `{"dataset":"p","seq":9,"current":{"generation":5,"sync":"s1","count":3,"rejected":1,"sha256":"ab","updated_at":"2024-01-02T03:04:05Z"},"last":{"sync":"s1","outcome":"committed","generation":5,"rows":3,"rejected":1}}`
	if got := string(EncodeState(s)); got != want {
		t.Errorf("EncodeState =\n%s\nwant\n%s", got, want)
	}
}

func TestDecodeStateRefusesGarbage(t *testing.T) {
	for _, b := range []string{"", "null x", "[]", `{"seq":"one"}`, `{"current":5}`, "\xff"} {
		if s, err := DecodeState([]byte(b)); err == nil {
			t.Errorf("DecodeState(%q) = %+v, nil error", b, s)
		} else if !strings.HasPrefix(err.Error(), "dataset state: ") {
			t.Errorf("DecodeState(%q) error %q does not say what it was reading", b, err)
		}
	}
}

func TestWriterStatusRoundTripsAndRefusesTornFiles(t *testing.T) {
	s := WriterStatus{CaughtUp: true, Stream: "ROWS", TargetSeq: 10, AppliedSeq: 12, UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b := EncodeWriterStatus(s)
	got, err := DecodeWriterStatus(b)
	if err != nil || got != s {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, s)
	}
	for _, bad := range [][]byte{b[:len(b)/2], nil, []byte(`{"caught_up":true}`), []byte("x")} {
		if _, err := DecodeWriterStatus(bad); err == nil {
			t.Errorf("%q decodes", bad)
		}
	}
}
