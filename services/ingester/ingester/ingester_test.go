package ingester

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/pkg/schema"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestFramingAndOrder(t *testing.T) {
	e := newEnv(t)
	csv := "Handle,Title,Body (HTML)\n" +
		"mug,Crème Mug,\"<p>hot, \"\"strong\"\"</p>\n<p>coffee</p>\"\n" +
		"cap,Cap,\n" +
		"tee,北欧 Tee,<b>cotton</b>\n"
	path := writeFile(t, "products.csv", csv)
	out := e.run(context.Background(), e.config("products", path))
	if out.err != nil {
		t.Fatalf("Run: %v\nstderr: %s", out.err, out.stderr)
	}
	msgs := e.messages("products")
	if len(msgs) != 5 {
		t.Fatalf("%d messages, want begin, 3 rows, end", len(msgs))
	}
	sync := out.res.Sync
	if schema.ValidateSyncID(sync) != nil {
		t.Fatalf("sync id %q", sync)
	}

	begin := msgs[0]
	if begin.Env.Event != schema.EventBegin {
		t.Fatalf("first message %+v, want the begin", begin)
	}
	var b schema.Begin
	if err := json.Unmarshal(begin.Body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Version != schema.EnvelopeVersion || b.Dataset != "products" || b.Sync != sync || b.Mode != schema.ModeReplace ||
		strings.Join(b.Fields, "|") != "Handle|Title|Body (HTML)" || b.Source.Name != path ||
		b.Source.Size != int64(len(csv)) || b.Source.SHA256 != sha(csv) || b.StartedAt.IsZero() {
		t.Errorf("begin body %+v", b)
	}

	want := encodeRows(t, []string{"Handle", "Title", "Body (HTML)"}, [][]string{
		{"mug", "Crème Mug", "<p>hot, \"strong\"</p>\n<p>coffee</p>"},
		{"cap", "Cap", ""},
		{"tee", "北欧 Tee", "<b>cotton</b>"},
	})
	for i, m := range msgs[1:4] {
		row := uint64(i + 1)
		if m.Env != (schema.Envelope{Event: schema.EventRow, Sync: sync, Row: row}) {
			t.Errorf("message %d envelope %+v", i+2, m.Env)
		}
		if m.MsgID != "" {
			t.Errorf("row %d has a Nats-Msg-Id, %q", row, m.MsgID)
		}
		if !bytes.Equal(m.Body, want[i]) {
			t.Errorf("row %d body\n  %s\nwant\n  %s", row, m.Body, want[i])
		}
	}

	end := msgs[4]
	var en schema.End
	if err := json.Unmarshal(end.Body, &en); err != nil {
		t.Fatal(err)
	}
	if end.Env.Event != schema.EventEnd || en.Rows != 3 || en.Rejected != 0 ||
		en.Source.SHA256 != sha(csv) || en.Source.Size != int64(len(csv)) {
		t.Errorf("end %+v body %+v", end, en)
	}

	if out.res.Generation != begin.Seq || out.res.Rows != 3 || out.res.Outcome != OutcomePublished {
		t.Errorf("result %+v, want generation %d (the begin's sequence), 3 rows, published", out.res, begin.Seq)
	}
	wantSummary := fmt.Sprintf("dataset=products generation=%d rows=3 rejected=0 seconds=", begin.Seq)
	if !strings.HasPrefix(out.stdout, wantSummary) || strings.Count(out.stdout, "\n") != 1 {
		t.Errorf("stdout %q, want one summary line starting %q", out.stdout, wantSummary)
	}
}

func TestRejectedRowsAreReportedPublishedAndCounted(t *testing.T) {
	e := newEnv(t)
	big := strings.Repeat("x", schema.MaxRecordBytes)
	csv := "id,name\n" + // line 1
		"1,ok\n" + // 2
		"2,too,many\n" + // 3: wrong field count
		"\n" + // 4: blank, no record
		"3,caf\xe9\n" + // 5: invalid UTF-8
		"\"4\"x,broken\n" + // 6: text after a closing quote
		"5," + big + "\n" + // 7: over the size limit
		"6,\"multi\nline\"\n" + // 8-9
		"7,last\n" // 10
	path := writeFile(t, "bad.csv", csv)
	out := e.run(context.Background(), e.config("bad", path))
	if out.err != nil {
		t.Fatalf("Run: %v\nstderr: %s", out.err, out.stderr)
	}
	for line, reason := range map[int]string{3: "wrong number of fields", 5: "invalid UTF-8", 6: "broken quoting", 7: "record too large"} {
		if !regexp.MustCompile(regexp.QuoteMeta(path) + ":" + strconv.Itoa(line) + ": " + reason).MatchString(out.stderr) {
			t.Errorf("stderr does not report %s:%d: %s:\n%s", path, line, reason, out.stderr)
		}
	}
	if out.res.Rows != 3 || out.res.Rejected != 4 || !strings.Contains(out.stdout, " rows=3 rejected=4 ") {
		t.Errorf("result %+v, stdout %q: want 3 rows, 4 rejected", out.res, out.stdout)
	}
	a := applyLikeWriter(t, e.messages("bad"))[out.res.Sync]
	if a == nil || a.End == nil || a.Failed != "" || a.End.Rows != 3 || a.End.Rejected != 4 {
		t.Fatalf("applied %+v", a)
	}
	want := encodeRows(t, []string{"id", "name"}, [][]string{{"1", "ok"}, {"6", "multi\nline"}, {"7", "last"}})
	for i := range want {
		if !bytes.Equal(a.Rows[i], want[i]) {
			t.Errorf("row %d = %s, want %s", i+1, a.Rows[i], want[i])
		}
	}
	var lines []int
	for _, r := range a.Rejects {
		lines = append(lines, r.Line)
		// Published rejects name the source by its base name only.
		if !strings.HasPrefix(r.Error, filepath.Base(path)+":"+strconv.Itoa(r.Line)+": ") || r.Reason == "" {
			t.Errorf("reject %+v, want its error to start %s:%d: ", r, filepath.Base(path), r.Line)
		}
	}
	if fmt.Sprint(lines) != "[3 5 6 7]" {
		t.Errorf("reject lines %v, want [3 5 6 7]", lines)
	}
	if r := a.Rejects[1]; r.Column != 2 || !strings.Contains(r.Raw, "caf\uFFFD") {
		t.Errorf("invalid UTF-8 reject %+v: want column 2 and the raw text, valid UTF-8", r)
	}
}

func TestStrictAbortsOnFirstReject(t *testing.T) {
	e := newEnv(t)
	path := writeFile(t, "strict.csv", "a,b\n1,2\n3\n4,5\n6,7,8\n")
	cfg := e.config("strict", path)
	cfg.Strict = true
	out := e.run(context.Background(), cfg)
	if !errors.Is(out.err, ErrRefused) || ExitCode(out.err) != ExitRefused {
		t.Fatalf("err = %v, want input refused (exit 3)", out.err)
	}
	for _, want := range []string{path + ":3: wrong number of fields", path + ":5: wrong number of fields"} {
		if !strings.Contains(out.stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, out.stderr)
		}
	}
	if !strings.Contains(out.stdout, "rejected=2") || !strings.Contains(out.stdout, "outcome=aborted") {
		t.Errorf("summary %q", out.stdout)
	}
	msgs := e.messages("strict")
	var events []string
	for _, m := range msgs {
		events = append(events, string(m.Env.Event))
	}
	if got := strings.Join(events, ","); got != "begin,row,reject,abort" {
		t.Fatalf("events %s, want begin,row,reject,abort (no end)", got)
	}
	var ab schema.Abort
	json.Unmarshal(msgs[3].Body, &ab)
	if ab.Code != schema.AbortStrict {
		t.Errorf("abort %+v, want code strict", ab)
	}
}

func TestRefusedSourcesPublishNothing(t *testing.T) {
	e := newEnv(t)
	httpSrv := httptest.NewServer(http.NotFoundHandler())
	defer httpSrv.Close()
	dir := t.TempDir()
	cases := map[string]struct {
		source string
		stdin  string
		want   string
	}{
		"missing file":     {source: filepath.Join(dir, "no-such-file.csv"), want: "no-such-file.csv: cannot be read: no such file"},
		"zero bytes":       {source: writeFile(t, "zero.csv", ""), want: "zero.csv: is empty"},
		"bom only":         {source: writeFile(t, "bom.csv", "\xEF\xBB\xBF"), want: "bom.csv: holds only a byte order mark"},
		"blank lines only": {source: writeFile(t, "blank.csv", "\n\r\n\n"), want: "blank.csv: has no header line"},
		"header not utf-8": {source: writeFile(t, "latin.csv", "caf\xe9\n1\n"), want: "latin.csv: has an unusable header line: line 1: column 1"},
		"http 404":         {source: httpSrv.URL + "/gone.csv?token=secret", want: "/gone.csv: cannot be read: GET answered 404"},
		"empty stdin":      {source: "-", stdin: "", want: "-: is empty"},
		"header too large": {source: writeFile(t, "wide.csv", strings.Repeat("<", 2000)+",b\n1,2\n"), want: "wide.csv:1: header: out of bounds: field 1 is 2000 bytes long"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := e.config("refused", tc.source)
			cfg.Stdin = strings.NewReader(tc.stdin)
			cfg.Wait = true
			out := e.run(context.Background(), cfg)
			if ExitCode(out.err) != ExitRefused || !strings.Contains(out.err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want exit 3 and %q", out.err, ExitCode(out.err), tc.want)
			}
			if strings.Contains(out.err.Error(), "secret") {
				t.Errorf("the error shows the URL's query: %v", out.err)
			}
			if n := len(e.messages("refused")); n != 0 {
				t.Fatalf("%d messages published for a refused source", n)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"no source":       {func(c *Config) { c.Source = "" }, "no source"},
		"bad dataset":     {func(c *Config) { c.Dataset = "Bad/Name" }, "dataset"},
		"bad mode":        {func(c *Config) { c.Mode = "sideways" }, "mode"},
		"bad encoding":    {func(c *Config) { c.Encoding = "klingon" }, "encoding"},
		"bad delimiter":   {func(c *Config) { c.Delimiter = "ab" }, "delimiter"},
		"bad compression": {func(c *Config) { c.StreamCompression = "zstd" }, "STREAM_COMPRESSION"},
		"every too short": {func(c *Config) { c.Every = time.Millisecond }, "--every"},
		"every on stdin":  {func(c *Config) { c.Source, c.Every = "-", time.Minute }, "standard input"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Source: "x.csv"}
			tc.mutate(&cfg)
			// Run refuses before touching the connection, so none is needed.
			_, err := Run(context.Background(), cfg, nil, nil, io.Discard, io.Discard)
			if ExitCode(err) != ExitUsage || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 mentioning %q", err, ExitCode(err), tc.want)
			}
		})
	}
}

func TestBOMAndCRLF(t *testing.T) {
	e := newEnv(t)
	path := writeFile(t, "excel.csv", "\xEF\xBB\xBFHandle,Note\r\nmug,\"two\r\nlines\"\r\ncap,plain\r\n")
	out := e.run(context.Background(), e.config("excel", path))
	if out.err != nil {
		t.Fatal(out.err)
	}
	a := applyLikeWriter(t, e.messages("excel"))[out.res.Sync]
	if strings.Join(a.Begin.Fields, "|") != "Handle|Note" {
		t.Errorf("fields %q: the BOM must not be part of the first name", a.Begin.Fields)
	}
	want := encodeRows(t, []string{"Handle", "Note"}, [][]string{{"mug", "two\r\nlines"}, {"cap", "plain"}})
	if len(a.Rows) != 2 || !bytes.Equal(a.Rows[0], want[0]) || !bytes.Equal(a.Rows[1], want[1]) {
		t.Errorf("rows %q, want %q", a.Rows, want)
	}
}

func TestWindows1252WithEncoding(t *testing.T) {
	e := newEnv(t)
	path := writeFile(t, "cp1252.csv", "Name,Price\nCaf\xe9 cr\xe8me,\x80 3\n")
	cfg := e.config("cp1252", path)
	cfg.Encoding = "windows-1252"
	out := e.run(context.Background(), cfg)
	if out.err != nil {
		t.Fatal(out.err)
	}
	a := applyLikeWriter(t, e.messages("cp1252"))[out.res.Sync]
	want := encodeRows(t, []string{"Name", "Price"}, [][]string{{"Café crème", "€ 3"}})
	if len(a.Rows) != 1 || !bytes.Equal(a.Rows[0], want[0]) {
		t.Errorf("rows %q, want %q", a.Rows, want)
	}

	// The same bytes read as UTF-8: the row is rejected, never mangled.
	out = e.run(context.Background(), e.config("cp1252-as-utf8", path))
	if out.err != nil || out.res.Rows != 0 || out.res.Rejected != 1 || !strings.Contains(out.stderr, path+":2: invalid UTF-8") {
		t.Errorf("read as UTF-8: err %v, result %+v, stderr %s", out.err, out.res, out.stderr)
	}
}

func TestSemicolonDelimiterDetected(t *testing.T) {
	e := newEnv(t)
	path := writeFile(t, "eu.csv", "Artikel;Preis;Beschreibung\nTasse;3,50;\"rot; groß\"\n")
	out := e.run(context.Background(), e.config("eu", path))
	if out.err != nil {
		t.Fatal(out.err)
	}
	a := applyLikeWriter(t, e.messages("eu"))[out.res.Sync]
	want := encodeRows(t, []string{"Artikel", "Preis", "Beschreibung"}, [][]string{{"Tasse", "3,50", "rot; groß"}})
	if len(a.Rows) != 1 || !bytes.Equal(a.Rows[0], want[0]) {
		t.Errorf("rows %q, want %q", a.Rows, want)
	}
}

func TestHeaderNamesMadeUniqueAndReported(t *testing.T) {
	e := newEnv(t)
	path := writeFile(t, "dups.csv", "Tags,,Tags\na,b,c\n")
	out := e.run(context.Background(), e.config("dups", path))
	if out.err != nil {
		t.Fatal(out.err)
	}
	for _, want := range []string{path + `:1: header column 2 has no name; it is called "column_2"`,
		path + `:1: header column 3 repeats the name "Tags"; it is called "Tags_2"`} {
		if !strings.Contains(out.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out.stderr)
		}
	}
	a := applyLikeWriter(t, e.messages("dups"))[out.res.Sync]
	if strings.Join(a.Begin.Fields, "|") != "Tags|column_2|Tags_2" || len(a.Begin.Renamed) != 2 {
		t.Errorf("begin fields %q renamed %+v", a.Begin.Fields, a.Begin.Renamed)
	}
	if string(a.Rows[0]) != `{"Tags":"a","column_2":"b","Tags_2":"c"}` {
		t.Errorf("row %s", a.Rows[0])
	}
}

func TestURLSource(t *testing.T) {
	e := newEnv(t)
	csv := "k,v\n1,über\n2,\"two, too\"\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		io.WriteString(w, csv)
	}))
	defer srv.Close()
	out := e.run(context.Background(), e.config("remote", srv.URL+"/export/remote.csv?key=secret123"))
	if out.err != nil {
		t.Fatal(out.err)
	}
	a := applyLikeWriter(t, e.messages("remote"))[out.res.Sync]
	want := encodeRows(t, []string{"k", "v"}, [][]string{{"1", "über"}, {"2", "two, too"}})
	if len(a.Rows) != 2 || !bytes.Equal(a.Rows[0], want[0]) || !bytes.Equal(a.Rows[1], want[1]) {
		t.Errorf("rows %q", a.Rows)
	}
	if a.Begin.Source.Name != srv.URL+"/export/remote.csv" || a.Begin.Source.SHA256 != "" {
		t.Errorf("begin source %+v: want the URL without its query, no hash yet", a.Begin.Source)
	}
	if a.End.Source.SHA256 != sha(csv) || a.End.Source.Size != int64(len(csv)) {
		t.Errorf("end source %+v: want the hash and size of what was read", a.End.Source)
	}
}

func TestStdinSource(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("from-stdin", "-")
	cfg.Stdin = strings.NewReader("k,v\n1,one\n2,two\n")
	out := e.run(context.Background(), cfg)
	if out.err != nil {
		t.Fatal(out.err)
	}
	a := applyLikeWriter(t, e.messages("from-stdin"))[out.res.Sync]
	if len(a.Rows) != 2 || string(a.Rows[1]) != `{"k":"2","v":"two"}` || a.Begin.Source.Name != "-" || a.Begin.Source.Size != -1 {
		t.Errorf("applied %+v", a)
	}
}

func TestUnchangedFileIsSkipped(t *testing.T) {
	e := newEnv(t)
	csv := "a\n1\n"
	path := writeFile(t, "same.csv", csv)
	e.putState(schema.DatasetState{Dataset: "same", Seq: 7,
		Current: &schema.GenerationState{Generation: 5, Sync: "0123456789abcdef", Count: 1, SHA256: sha(csv)}})
	out := e.run(context.Background(), e.config("same", path))
	if out.err != nil {
		t.Fatal(out.err)
	}
	if out.res.Outcome != OutcomeUnchanged || out.res.Generation != 5 || !strings.Contains(out.stdout, "generation=5 rows=1 rejected=0") {
		t.Errorf("result %+v stdout %q", out.res, out.stdout)
	}
	if n := len(e.messages("same")); n != 0 {
		t.Errorf("%d messages published for an unchanged file", n)
	}
}

func TestUnchangedStdinIsAborted(t *testing.T) {
	e := newEnv(t)
	csv := "a\n1\n"
	e.putState(schema.DatasetState{Dataset: "same-stdin", Seq: 7,
		Current: &schema.GenerationState{Generation: 5, Sync: "0123456789abcdef", Count: 1, SHA256: sha(csv)}})
	cfg := e.config("same-stdin", "-")
	cfg.Stdin = strings.NewReader(csv)
	out := e.run(context.Background(), cfg)
	if out.err != nil || out.res.Outcome != OutcomeUnchanged {
		t.Fatalf("err %v result %+v", out.err, out.res)
	}
	a := applyLikeWriter(t, e.messages("same-stdin"))[out.res.Sync]
	if a == nil || a.End != nil || a.Abort == nil || a.Abort.Code != schema.AbortUnchanged {
		t.Errorf("applied %+v: want an abort with code unchanged instead of the end", a)
	}
}

// TestResumeInterruptedSync plays an ingester that died after publishing
// the begin and the first rows, and a writer that recorded the sync as
// building with the file's hash: a re-run must reuse the sync id, so
// JetStream drops the messages it already has and no row is doubled.
func TestResumeInterruptedSync(t *testing.T) {
	e := newEnv(t)
	csv := productsCSV(50)
	path := writeFile(t, "resume.csv", csv)
	e.ensureStream()
	const dead = "00000000deadbeef"
	header, records := splitCSV(t, csv)
	bodies := encodeRows(t, header, records)
	ctx := context.Background()
	beginBody, _ := json.Marshal(schema.Begin{Version: schema.EnvelopeVersion, Dataset: "resume", Sync: dead, Mode: schema.ModeReplace,
		Fields: header, Source: schema.Source{Name: path, Size: int64(len(csv)), SHA256: sha(csv)}})
	publishRaw(t, e, "resume", schema.Envelope{Event: schema.EventBegin, Sync: dead}, beginBody)
	for i := range 20 {
		publishRaw(t, e, "resume", schema.Envelope{Event: schema.EventRow, Sync: dead, Row: uint64(i + 1)}, bodies[i])
	}
	beginSeq := e.messages("resume")[0].Seq
	e.putState(schema.DatasetState{Dataset: "resume", Seq: beginSeq + 20,
		Building: &schema.GenerationState{Generation: beginSeq, Sync: dead, Count: 20, SHA256: sha(csv)}})

	out := e.run(ctx, e.config("resume", path))
	if out.err != nil {
		t.Fatal(out.err)
	}
	if out.res.Sync != dead || !out.res.Resumed || out.res.Generation != beginSeq {
		t.Fatalf("result %+v: want sync %s resumed, generation %d", out.res, dead, beginSeq)
	}
	msgs := e.messages("resume")
	seen := map[schema.Envelope]bool{}
	for _, m := range msgs {
		if seen[m.Env] {
			t.Errorf("message %+v stored twice", m.Env)
		}
		seen[m.Env] = true
	}
	if len(msgs) != 1+50+1 {
		t.Errorf("%d messages, want begin, 50 rows, end: the resumed sync goes on after row 20", len(msgs))
	}
	a := applyLikeWriter(t, msgs)[dead]
	if a.Failed != "" || a.End == nil || len(a.Rows) != 50 {
		t.Fatalf("applied: failed %q, end %+v, %d rows", a.Failed, a.End, len(a.Rows))
	}
	for i := range bodies {
		if !bytes.Equal(a.Rows[i], bodies[i]) {
			t.Fatalf("row %d differs", i+1)
		}
	}
}

func TestWaitReportsTheWritersOutcome(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.fakeWriter(ctx, "waited", "")
	e.fakeWriter(ctx, "refused-by-writer", "row count mismatch")
	path := writeFile(t, "w.csv", "a,b\n1,2\n3,4\n5\n")

	cfg := e.config("waited", path)
	cfg.Wait = true
	out := e.run(ctx, cfg)
	if out.err != nil {
		t.Fatalf("Run: %v", out.err)
	}
	beginSeq := e.messages("waited")[0].Seq
	want := fmt.Sprintf("dataset=waited generation=%d rows=2 rejected=1 ", beginSeq)
	if out.res.Outcome != schema.OutcomeCommitted || !strings.HasPrefix(out.stdout, want) || !strings.Contains(out.stdout, "outcome=committed") {
		t.Errorf("stdout %q, want it to start %q and say committed", out.stdout, want)
	}

	// The same file again: the writer's state now carries its hash.
	out = e.run(ctx, cfg)
	if out.err != nil || out.res.Outcome != OutcomeUnchanged || out.res.Generation != beginSeq {
		t.Errorf("second run: err %v result %+v", out.err, out.res)
	}

	cfg = e.config("refused-by-writer", path)
	cfg.Wait = true
	out = e.run(ctx, cfg)
	if ExitCode(out.err) != ExitFailure || !strings.Contains(out.err.Error(), "row count mismatch") || !strings.Contains(out.stdout, "outcome=failed") {
		t.Errorf("err %v (exit %d), stdout %q: want exit 1 with the writer's reason", out.err, ExitCode(out.err), out.stdout)
	}
}

func TestWaitTimesOutWithoutAWriter(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("lonely", writeFile(t, "l.csv", "a\n1\n"))
	cfg.Wait, cfg.WaitTimeout = true, 300*time.Millisecond
	out := e.run(context.Background(), cfg)
	if ExitCode(out.err) != ExitFailure || !strings.Contains(out.err.Error(), "is a writer running") {
		t.Errorf("err = %v", out.err)
	}
}

func TestAppendModeIsInTheBegin(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("app", writeFile(t, "a.csv", "a\n1\n"))
	cfg.Mode = schema.ModeAppend
	out := e.run(context.Background(), cfg)
	if out.err != nil {
		t.Fatal(out.err)
	}
	if a := applyLikeWriter(t, e.messages("app"))[out.res.Sync]; a.Begin.Mode != schema.ModeAppend {
		t.Errorf("begin mode %q", a.Begin.Mode)
	}
}

// TestServerRestartMidIngest restarts the NATS server while rows are being
// published: the ingest must complete, and what the stream holds must give
// the writer every row once, in order.
func TestServerRestartMidIngest(t *testing.T) {
	e := newEnv(t)
	const n = 30000
	csv := productsCSV(n)
	path := writeFile(t, "restart.csv", csv)
	done := make(chan outcome, 1)
	go func() { done <- e.run(context.Background(), e.config("restart", path)) }()

	// Wait until rows are flowing, then restart the server.
	obs := e.srv.Conn()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no rows published within 30s")
		}
		if info, err := streamMsgs(obs); err == nil && info > 2000 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.srv.Restart()

	var out outcome
	select {
	case out = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the ingest did not finish within 2 minutes of the restart")
	}
	if out.err != nil {
		t.Fatalf("Run: %v\nstderr: %s", out.err, out.stderr)
	}
	if out.res.Rows != n {
		t.Fatalf("result %+v, want %d rows", out.res, n)
	}
	if out.res.Retries == 0 {
		t.Errorf("no message was published again: the restart did not hit the ingest")
	}
	syncs := applyLikeWriter(t, e.messages("restart"))
	a := syncs[out.res.Sync]
	if a == nil || a.Failed != "" || a.End == nil || len(a.Rows) != n {
		t.Fatalf("final sync %s: %+v", out.res.Sync, a)
	}
	header, records := splitCSV(t, csv)
	want := encodeRows(t, header, records)
	for i := range want {
		if !bytes.Equal(a.Rows[i], want[i]) {
			t.Fatalf("row %d differs", i+1)
		}
	}
	for id, s := range syncs {
		if id != out.res.Sync && (s.End != nil && s.Failed == "") {
			t.Errorf("another sync %s also ended cleanly", id)
		}
	}
	t.Logf("%d syncs in the stream (a restarted sync leaves a failed one); stderr:\n%s", len(syncs), out.stderr)
}

func TestInterruptAbortsTheSync(t *testing.T) {
	e := newEnv(t)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := e.config("interrupted", "-")
	cfg.Stdin = pr
	done := make(chan outcome, 1)
	go func() { done <- e.run(ctx, cfg) }()
	io.WriteString(pw, "a,b\n1,2\n3,4\n")
	for deadline := time.Now().Add(10 * time.Second); len(e.messages("interrupted")) < 3; {
		if time.Now().After(deadline) {
			t.Fatal("rows never published")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	io.WriteString(pw, "5,6\n") // unblocks the read; the loop then sees ctx
	pw.Close()
	out := <-done
	if !errors.Is(out.err, ErrInterrupted) || ExitCode(out.err) != ExitFailure {
		t.Fatalf("err = %v", out.err)
	}
	a := applyLikeWriter(t, e.messages("interrupted"))[out.res.Sync]
	if a.End != nil || a.Abort == nil || a.Abort.Code != schema.AbortInterrupted {
		t.Errorf("applied %+v: want an abort with code interrupted and no end", a)
	}
}

func TestEveryResyncsAndSkipsUnchanged(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.fakeWriter(ctx, "periodic", "")
	path := writeFile(t, "p.csv", "a\n1\n")
	cfg := e.config("periodic", path)
	cfg.Every = time.Second
	var stdout syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, cfg, e.nc, nil, &stdout, io.Discard)
		done <- err
	}()
	waitFor(t, func() bool { return strings.Count(stdout.String(), "outcome=unchanged") >= 1 })
	if err := os.WriteFile(path, []byte("a\n1\n2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Count(stdout.String(), "rows=2") >= 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v after the context ended, want nil", err)
	}
	syncs := applyLikeWriter(t, e.messages("periodic"))
	if len(syncs) != 2 {
		t.Errorf("%d syncs in the stream, want 2 (the unchanged runs publish nothing):\n%s", len(syncs), stdout.String())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNoResumeAfterAnotherSyncsMessage: the writer's state still names an
// interrupted sync of the same file, but the stream's last message on the
// dataset is another sync's: the interrupted one cannot go on after it, so
// the file is synced under a new sync id.
func TestNoResumeAfterAnotherSyncsMessage(t *testing.T) {
	e := newEnv(t)
	csv := "id,v\n1,a\n2,b\n3,c\n4,d\n"
	path := writeFile(t, "other.csv", csv)
	e.ensureStream()
	const old, other = "0000000000000001", "0000000000000002"
	header, records := splitCSV(t, csv)
	bodies := encodeRows(t, header, records)
	beginBody, _ := json.Marshal(schema.Begin{Version: schema.EnvelopeVersion, Dataset: "other", Sync: old, Mode: schema.ModeReplace, Fields: header})
	publishRaw(t, e, "other", schema.Envelope{Event: schema.EventBegin, Sync: old}, beginBody)
	publishRaw(t, e, "other", schema.Envelope{Event: schema.EventRow, Sync: old, Row: 1}, bodies[0])
	publishRaw(t, e, "other", schema.Envelope{Event: schema.EventBegin, Sync: other}, beginBody)
	beginSeq := e.messages("other")[0].Seq
	e.putState(schema.DatasetState{Dataset: "other", Seq: beginSeq + 1,
		Building: &schema.GenerationState{Generation: beginSeq, Sync: old, Count: 1, SHA256: sha(csv)}})

	out := e.run(context.Background(), e.config("other", path))
	if out.err != nil {
		t.Fatalf("Run: %v\n%s", out.err, out.stderr)
	}
	if out.res.Sync == old || out.res.Resumed {
		t.Fatalf("result %+v: want a new sync, not %s resumed", out.res, old)
	}
	a := applyLikeWriter(t, e.messages("other"))[out.res.Sync]
	if a == nil || a.Failed != "" || a.End == nil || len(a.Rows) != 4 {
		t.Fatalf("new sync: %+v", a)
	}
}
