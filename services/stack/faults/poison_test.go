package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rowpipe/rowpipe/pkg/schema"
	"github.com/rowpipe/rowpipe/services/ingester/ingester"
	"github.com/rowpipe/rowpipe/services/stack/stack"
)

// poison is one message an attacker with publish rights on rows.> sends.
type poison struct {
	name, reason string
	subject      string
	header       nats.Header
	body         []byte
}

// poisons are the messages that stopped the writer for good before the
// refusal rule (issue 16), and one of each class it already refused.
func poisons() []poison {
	env := func(ev schema.Event, sync string, row uint64) nats.Header {
		return nats.Header(schema.Envelope{Event: ev, Sync: sync, Row: row}.Headers())
	}
	begin := func(sync string, mod func(*schema.Begin)) []byte {
		b := schema.Begin{Version: schema.EnvelopeVersion, Dataset: "products", Sync: sync, Mode: schema.ModeReplace,
			Fields: []string{"Handle", "Title"}, Source: schema.Source{Name: "evil.csv", Size: -1}}
		mod(&b)
		return mustMarshal(b)
	}
	lt := strings.Repeat("<", 1000)
	bigHeaders := env(schema.EventRow, "0123456789abcdef", 1)
	// JetStream stores at most 64 KiB of headers (nats-server error
	// 10097): the largest a message can carry.
	bigHeaders.Set("X-Padding", strings.Repeat("h", 62<<10))
	return []poison{
		{"begin whose fields need more than the header once escaped", schema.ReasonBadBegin, "rows.products",
			env(schema.EventBegin, "e1", 0), begin("e1", func(b *schema.Begin) {
				b.Fields = nil
				for i := range 180 {
					b.Fields = append(b.Fields, lt+strconv.Itoa(i))
				}
			})},
		{"begin with a huge source.sha256", schema.ReasonBadBegin, "rows.products",
			env(schema.EventBegin, "e2", 0), begin("e2", func(b *schema.Begin) { b.Source.SHA256 = strings.Repeat("0", 200<<10) })},
		{"abort whose reason is 200 K of <", schema.ReasonBadBody, "rows.products",
			env(schema.EventAbort, "e3", 0), mustMarshal(schema.Abort{Code: schema.AbortFailed, Reason: strings.Repeat("<", 200<<10)})},
		{"empty body under the largest headers", schema.ReasonOversize, "rows.products", bigHeaders, nil},
		{"append begin for one dataset more than MAX_DATASETS", schema.ReasonTooManyDatasets, "rows.another",
			func() nats.Header {
				h := nats.Header(schema.Envelope{Event: schema.EventBegin, Sync: "e5"}.Headers())
				return h
			}(), func() []byte {
				b := schema.Begin{Version: schema.EnvelopeVersion, Dataset: "another", Sync: "e5", Mode: schema.ModeAppend, Fields: []string{"a"}}
				return mustMarshal(b)
			}()},
		{"subject of three tokens", schema.ReasonBadSubject, "rows.products.x", env(schema.EventRow, "e6", 1), []byte(`{"Handle":"x"}`)},
		{"no envelope", schema.ReasonBadEnvelope, "rows.products", nil, []byte("garbage")},
		{"begin of version 2", schema.ReasonVersion, "rows.products", env(schema.EventBegin, "e8", 0), begin("e8", func(b *schema.Begin) { b.Version = 2 })},
		{"end that is not JSON", schema.ReasonBadBody, "rows.products", env(schema.EventEnd, "e9", 0), []byte("nope")},
		{"row of no open sync", schema.ReasonOutsideSync, "rows.products", env(schema.EventRow, "e10", 1), []byte(`{"Handle":"x","Title":"y"}`)},
	}
}

// TestPoisonMessagesNeverStopTheWriter publishes each poison on a real
// stack (KEEP_GENERATIONS=1, MAX_DATASETS=1) between two valid syncs of
// the real ingester: each time the second sync is current within 5 s, the
// message is counted once under its reason, and /fetch-data, read all the
// while, never answers 5xx.
func TestPoisonMessagesNeverStopTheWriter(t *testing.T) {
	s := startStack(t, func(c *stack.Config) {
		c.Writer.KeepGenerations = 1
		c.Writer.MaxDatasets = 1
	})
	base := "http://" + s.APIAddr().String()
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	version := 0
	ingest := func() (uint64, time.Duration) {
		t.Helper()
		version++
		path := filepath.Join(dir, fmt.Sprintf("v%d.csv", version))
		genCSV(t, path, 200+version, version, uint64(version))
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a writer stopped for good never answers
		defer cancel()
		res, err := ingester.Run(ctx, ingester.Config{Source: path, Dataset: "products", Wait: true, Progress: "off"},
			nc, nil, io.Discard, io.Discard)
		if err != nil || res.Outcome != "committed" {
			t.Fatalf("sync %d: %v (%+v)", version, err, res)
		}
		return res.Generation, time.Since(start)
	}
	ingest()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answers, fivexx atomic.Int64
	var firstBad atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			code := getStatus(base + "/fetch-data?limit=5")
			answers.Add(1)
			if code >= 500 || code == 0 {
				fivexx.Add(1)
				firstBad.CompareAndSwap(nil, code)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	for _, p := range poisons() {
		t.Run(p.name, func(t *testing.T) {
			before := hostileCount(t, base, p.reason)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: p.subject, Header: p.header, Data: p.body})
			cancel()
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			gen, took := ingest()
			if took > 5*time.Second {
				t.Errorf("the sync after the poison took %s to be current", took)
			}
			if cur := currentGeneration(t, base); cur != gen {
				t.Errorf("current generation %d, the sync after the poison committed %d", cur, gen)
			}
			waitFor(t, 5*time.Second, "the refusal to be counted", func() bool { return hostileCount(t, base, p.reason) >= before+1 })
			if n := hostileCount(t, base, p.reason); n != before+1 {
				t.Errorf("hostile_messages_total{reason=%q} went from %v to %v, want one more", p.reason, before, n)
			}
		})
	}
	close(stop)
	wg.Wait()
	if n := fivexx.Load(); n > 0 {
		t.Errorf("%d of %d reads of /fetch-data answered 5xx or failed (first: %v)", n, answers.Load(), firstBad.Load())
	}
	t.Logf("%d reads of /fetch-data while the poisons went through, none 5xx", answers.Load())
}

// mustMarshal is v as JSON with '<' as itself, as an attacker sends it:
// the bytes that grow sixfold once the writer's encoding/json escapes them.
func mustMarshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func getStatus(url string) int {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-API-Key", testKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// currentGeneration is the generation /fetch-data serves.
func currentGeneration(t *testing.T, base string) uint64 {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/fetch-data?metadata_only=true", nil)
	req.Header.Set("X-API-Key", testKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m struct {
		Generation uint64 `json:"generation"`
	}
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil || res.StatusCode != 200 {
		t.Fatalf("metadata: %d %v", res.StatusCode, err)
	}
	return m.Generation
}

// hostileCount reads rowpipe_writer_hostile_messages_total{reason} from /metrics.
func hostileCount(t *testing.T, base, reason string) float64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	want := `rowpipe_writer_hostile_messages_total{reason="` + reason + `"} `
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}
