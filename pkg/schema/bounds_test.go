package schema

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func validBegin() Begin {
	return Begin{Version: EnvelopeVersion, Dataset: "products", Sync: "9f86d081884c7d65", Mode: ModeReplace,
		Fields: []string{"Handle", "Title"}, Source: Source{Name: "products.csv", Size: 61}}
}

func TestBeginCheckRefusesWhatWouldNotFit(t *testing.T) {
	lt := strings.Repeat("<", 180<<10) // 1 MiB and more once JSON-escaped as \u003c
	many := make([]string, MaxFields+1)
	for i := range many {
		many[i] = "f" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
	}
	cases := map[string]func(*Begin){
		"version":            func(b *Begin) { b.Version = 2 },
		"dataset":            func(b *Begin) { b.Dataset = "Products" },
		"sync":               func(b *Begin) { b.Sync = "NOT-A-SYNC" },
		"mode":               func(b *Begin) { b.Mode = "merge" },
		"no fields":          func(b *Begin) { b.Fields = nil },
		"too many fields":    func(b *Begin) { b.Fields = many },
		"empty field":        func(b *Begin) { b.Fields = []string{"a", ""} },
		"long field":         func(b *Begin) { b.Fields = []string{strings.Repeat("a", MaxFieldBytes+1)} },
		"bad UTF-8":          func(b *Begin) { b.Fields = []string{"caf\xe9"} },
		"duplicate":          func(b *Begin) { b.Fields = []string{"a", "b", "a"} },
		"header too large":   func(b *Begin) { b.Fields = splitInto(lt, MaxFieldBytes) },
		"huge sha256":        func(b *Begin) { b.Source.SHA256 = strings.Repeat("0", 200<<10) },
		"uppercase sha256":   func(b *Begin) { b.Source.SHA256 = strings.Repeat("A", 64) },
		"long source name":   func(b *Begin) { b.Source.Name = strings.Repeat("n", MaxSourceNameBytes+1) },
		"negative size":      func(b *Begin) { b.Source.Size = -2 },
		"too many renames":   func(b *Begin) { b.Renamed = make([]Rename, 3) },
		"long rename source": func(b *Begin) { b.Renamed = []Rename{{Column: 1, From: strings.Repeat("a", MaxFieldBytes+1)}} },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			b := validBegin()
			mod(&b)
			if err := b.Check(); !errors.Is(err, ErrEnvelope) && !errors.Is(err, ErrOutOfBounds) {
				t.Fatalf("Check = %v, want an error wrapping ErrEnvelope or ErrOutOfBounds", err)
			}
			if name == "bad UTF-8" {
				return // json.Marshal would write U+FFFD: the body is valid
			}
			_, err := DecodeBegin(mustMarshal(t, b))
			r, ok := RefusalOf(err)
			if !ok {
				t.Fatalf("DecodeBegin = %v, want a *Refusal", err)
			}
			want := ReasonBadBegin
			if name == "version" {
				want = ReasonVersion
			}
			if r.Reason != want {
				t.Fatalf("reason %q, want %q", r.Reason, want)
			}
		})
	}
	if err := validBegin().Check(); err != nil {
		t.Fatalf("a valid begin: %v", err)
	}
}

// splitInto cuts s into distinct names of at most n bytes.
func splitInto(s string, n int) []string {
	var out []string
	for i := 0; len(s) > 0; i++ {
		k := min(n-8, len(s))
		out = append(out, strings.Repeat("x", i%8)+s[:k]+strings.Repeat("y", i/8))
		s = s[k:]
	}
	return out
}

// TestWhatABeginWithinBoundsDerivesFits is the other half of the rule: a
// begin Check accepts, at the worst escaping, gives a header that encodes
// at its widest for the whole life of the generation, and the end and
// abort bodies within bounds give a state value the broker takes.
func TestWhatABeginWithinBoundsDerivesFits(t *testing.T) {
	b := validBegin()
	name := strings.Repeat("\u2028", MaxSourceNameBytes/3)
	b.Source = Source{Name: name, Size: -1, SHA256: strings.Repeat("f", 64)}
	// Grow the fields until Check refuses, then step back: the largest
	// header a begin can ask for.
	b.Fields = nil
	for i := 0; ; i++ {
		next := append(b.Fields, strings.Repeat("<", MaxFieldBytes-8)+strings.Repeat("x", i%8)+strings.Repeat("y", i/8%8)+string(rune('a'+i/64)))
		try := b
		try.Fields = next
		if try.Check() != nil {
			break
		}
		b.Fields = next
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	h := Header{Dataset: b.Dataset, Generation: math.MaxUint64, State: StateComplete, Mode: ModeAppend, Sync: strings.Repeat("z", MaxSyncIDLen),
		Count: math.MaxUint64, Rejected: math.MaxUint64, Fields: b.Fields, Source: b.Source,
		CreatedAt: time.Now(), UpdatedAt: time.Now(), LastSeq: math.MaxUint64}
	h.Size = HeaderSizeFor(Header{Dataset: b.Dataset, Mode: b.Mode, Sync: b.Sync, Fields: b.Fields, Source: b.Source})
	if _, err := EncodeHeader(h); err != nil {
		t.Fatalf("the widest header of a begin Check accepted: %v", err)
	}

	a := Abort{Code: strings.Repeat("<", MaxAbortCodeBytes), Reason: strings.Repeat("<", MaxReasonBytes)}
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
	gs := &GenerationState{Generation: math.MaxUint64, Sync: b.Sync, Count: math.MaxUint64, Rejected: math.MaxUint64, SHA256: b.Source.SHA256, UpdatedAt: time.Now(), Mode: ModeReplace}
	s := DatasetState{Dataset: strings.Repeat("d", MaxDatasetLen), Seq: math.MaxUint64, Current: gs, Building: gs,
		Last: &SyncOutcome{Sync: b.Sync, Outcome: OutcomeAborted, Generation: math.MaxUint64, Rows: math.MaxUint64, Reason: a.Code + ": " + a.Reason}}
	if n := len(EncodeState(s)); n > MaxMessageBytes/4 {
		t.Fatalf("the largest state value is %d bytes", n)
	}
	if err := (Abort{Reason: strings.Repeat("<", 200<<10)}).Check(); err == nil {
		t.Fatal("an abort reason of 200 KiB passed")
	}
}

func TestDecodeEndAndAbortRefuseWhatIsOutOfBounds(t *testing.T) {
	for _, body := range []string{`nope`, `{"rows":"x"}`, `{"rows":1,"source":{"sha256":"` + strings.Repeat("0", 65) + `"}}`} {
		if _, err := DecodeEnd([]byte(body)); err == nil {
			t.Errorf("end %.40s passed", body)
		} else if r, ok := RefusalOf(err); !ok || r.Reason != ReasonBadBody {
			t.Errorf("end %.40s: %v", body, err)
		}
	}
	for _, body := range []string{`[]`, `{"code":"` + strings.Repeat("c", MaxAbortCodeBytes+1) + `"}`} {
		if _, err := DecodeAbort([]byte(body)); err == nil {
			t.Errorf("abort %.40s passed", body)
		} else if r, ok := RefusalOf(err); !ok || r.Reason != ReasonBadBody {
			t.Errorf("abort %.40s: %v", body, err)
		}
	}
	if _, err := DecodeEnd([]byte(`{"rows":3,"rejected":1,"source":{"name":"-","size":-1}}`)); err != nil {
		t.Error(err)
	}
}

func TestEnvelopeSizeCountsSubjectAndHeaders(t *testing.T) {
	h := Envelope{Event: EventRow, Sync: "9f86d081884c7d65", Row: 42}.Headers()
	n := EnvelopeSize("rows.products", h)
	if n < 80 || n > 200 {
		t.Fatalf("a row's envelope: %d bytes", n)
	}
	if err := CheckEnvelopeSize("rows.products", h); err != nil {
		t.Fatal(err)
	}
	h["X-Junk"] = []string{strings.Repeat("j", MaxEnvelopeBytes)}
	if r, ok := RefusalOf(CheckEnvelopeSize("rows.products", h)); !ok || r.Reason != ReasonOversize {
		t.Fatalf("an 8 KiB header: %v", r)
	}
	if EnvelopeSize("s", nil) != 1 {
		t.Fatal("no headers: the subject only")
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
