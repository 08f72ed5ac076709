package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleHeader() Header {
	created := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	h := Header{
		Dataset:    "products",
		Generation: 42,
		State:      StateBuilding,
		Mode:       ModeReplace,
		Sync:       testSync,
		Fields:     []string{"Handle", "Title", "Body (HTML)", "Tags", "Tags_2", "<&>", `q"uote`, "é"},
		Source:     Source{Name: "/data/exports/products.csv", Size: 123456},
		CreatedAt:  created,
		UpdatedAt:  created,
	}
	h.Size = HeaderSizeFor(h)
	return h
}

// sealHeader builds a header line by hand from a JSON object missing its
// closing brace, with the checksum rule of docs/header.md: a CRC-32C over
// those bytes, then `,"crc32c":"<8 hex>"}`, spaces, '\n', size bytes in all.
func sealHeader(obj string, size int) []byte {
	line := fmt.Sprintf(`%s,"crc32c":"%08x"}`, obj, crc32.Checksum([]byte(obj), crc32.MakeTable(crc32.Castagnoli)))
	if pad := size - len(line) - 1; pad > 0 {
		line += strings.Repeat(" ", pad)
	}
	return []byte(line + "\n")
}

func TestHeaderSizeForIsWholeBlocks(t *testing.T) {
	for n := 0; n <= 400; n += 7 {
		h := sampleHeader()
		h.Fields = nil
		for i := range n {
			h.Fields = append(h.Fields, fmt.Sprintf("Google Shopping / Custom Label %d", i))
		}
		size := HeaderSizeFor(h)
		if size <= 0 || size%HeaderBlock != 0 {
			t.Fatalf("%d fields: HeaderSizeFor = %d, not a positive multiple of %d", n, size, HeaderBlock)
		}
		h.Size = size
		b, err := EncodeHeader(h)
		if err != nil {
			t.Fatalf("%d fields: EncodeHeader = %v", n, err)
		}
		if len(b) != size || b[len(b)-1] != '\n' || bytes.IndexByte(b, '\n') != len(b)-1 {
			t.Fatalf("%d fields: EncodeHeader gave %d bytes, want exactly %d ending in the only '\\n'", n, len(b), size)
		}
		// No block wasted: the widest later state would not fit in one
		// block less, give or take the few bytes HeaderSizeFor keeps spare.
		widest, err := EncodeHeader(maxedHeader(h, MaxHeaderSize))
		if err != nil {
			t.Fatal(err)
		}
		if used := len(bytes.TrimRight(widest, " \n")) + 1; size-HeaderBlock >= used+64 {
			t.Errorf("%d fields: HeaderSizeFor = %d for a header of at most %d bytes", n, size, used)
		}
	}
}

func maxedHeader(h Header, size int) Header {
	h.Count, h.Rejected, h.LastSeq, h.Generation = math.MaxUint64, math.MaxUint64, math.MaxUint64, math.MaxUint64
	h.State = StateComplete
	h.Mode = ModeReplace
	h.Sync = strings.Repeat("f", MaxSyncIDLen)
	h.Source.Size = math.MinInt64
	h.Source.SHA256 = strings.Repeat("e", 64)
	h.CreatedAt = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	h.UpdatedAt = h.CreatedAt

	h.Size = size
	return h
}

func TestHeaderSizeForLeavesRoomForEveryLaterState(t *testing.T) {
	// Every length of field name around the first block boundary, so the
	// header's needs land on each side of it.
	for fieldLen := HeaderBlock - 1000; fieldLen <= HeaderBlock; fieldLen++ {
		h := sampleHeader()
		h.Fields = []string{strings.Repeat("f", fieldLen), "<&>\u2028"} // escaped when encoded
		h.Source = Source{Name: "-", Size: -1}                          // stdin: size and digest come at the end
		h.Count, h.LastSeq, h.Generation = 0, 0, 1
		size := HeaderSizeFor(h)
		for _, later := range []Header{maxedHeader(h, size), func() Header {
			m := maxedHeader(h, size)
			m.Mode, m.State = ModeAppend, StateBuilding
			m.Sync = "a"
			return m
		}()} {
			b, err := EncodeHeader(later)
			if err != nil {
				t.Fatalf("field of %d bytes: EncodeHeader of a later state in %d bytes: %v", fieldLen, size, err)
			}
			if len(b) != size {
				t.Fatalf("EncodeHeader = %d bytes, want %d", len(b), size)
			}
			got, err := DecodeHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Count != math.MaxUint64 || got.Source.Size != math.MinInt64 {
				t.Errorf("round trip lost the maxed counters: %+v", got)
			}
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := sampleHeader()
	h.State = StateComplete
	h.Count, h.Rejected, h.LastSeq = 1000, 3, 1044
	h.Source.SHA256 = strings.Repeat("ab", 32)
	h.Mode = ModeAppend
	h.UpdatedAt = time.Date(2024, 5, 1, 13, 0, 0, 0, time.FixedZone("CEST", 2*3600)) // written in UTC
	b, err := EncodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	want := h
	want.Version = HeaderVersion
	if !got.UpdatedAt.Equal(want.UpdatedAt) || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("UpdatedAt = %v, want %v in UTC", got.UpdatedAt, want.UpdatedAt)
	}
	got.UpdatedAt, want.UpdatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DecodeHeader(EncodeHeader(h)) =\n%+v\nwant\n%+v", got, want)
	}
	again, err := EncodeHeader(mustDecodeHeader(t, b))
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("EncodeHeader(DecodeHeader(b)) differs from b:\n%s\n%s", again, b)
	}
}

// A header written with the superseded member (by writers before it was
// dropped from the format) still decodes; the member is ignored.
func TestHeaderOfAnOlderWriterWithSupersededDecodes(t *testing.T) {
	h := docExampleHeader()
	b, err := EncodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	obj := bytes.TrimRight(b[:len(b)-1], " ")
	at := bytes.LastIndex(obj, []byte(checksumKey))
	body := bytes.Replace(obj[:at], []byte(`,"header_size"`), []byte(`,"superseded":false,"header_size"`), 1)
	line := fmt.Appendf(nil, "%s%s%08x\"}", body, checksumKey, crc32.Checksum(body, castagnoli))
	line = append(line, bytes.Repeat([]byte(" "), h.Size-len(line)-1)...)
	got, err := DecodeHeader(append(line, '\n'))
	if err != nil || got.Count != h.Count || got.LastSeq != h.LastSeq {
		t.Fatalf("%v, %+v", err, got)
	}
}

func mustDecodeHeader(t testing.TB, b []byte) Header {
	t.Helper()
	h, err := DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHeaderBytesFollowTheDocument(t *testing.T) {
	h := Header{
		Dataset: "p", Generation: 7, State: StateComplete, Mode: ModeReplace, Sync: "s1", Count: 2,
		Fields: []string{"a"}, Source: Source{Name: "p.csv", Size: 5, SHA256: "ff"},
		CreatedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), UpdatedAt: time.Date(2024, 1, 2, 3, 4, 6, 0, time.UTC),
		LastSeq: 10, Size: HeaderBlock,
	}
	obj := `{"version":1,"dataset":"p","generation":7,"state":"complete","mode":"replace","sync":"s1","count":2,"rejected":0,"fields":["a"],"source":{"name":"p.csv","size":5,"sha256":"ff"},"created_at":"2024-01-02T03:04:05Z","updated_at":"2024-01-02T03:04:06Z","last_seq":10,"header_size":4096`
	got, err := EncodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	if want := sealHeader(obj, HeaderBlock); !bytes.Equal(got, want) {
		t.Errorf("EncodeHeader =\n%q\nwant\n%q", got[:300], want[:300])
	}
}

func TestHeaderEncodeCanonicalisesInvalidUTF8(t *testing.T) {
	h := sampleHeader()
	h.Source.Name = "caf\xe9.csv" // a Latin-1 file name
	fields := []string{"ok", "b\xffad"}
	h.Fields = fields
	b, err := EncodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	got := mustDecodeHeader(t, b)
	if got.Source.Name != "caf\ufffd.csv" || got.Fields[1] != "b\ufffdad" {
		t.Errorf("decoded %q %q", got.Source.Name, got.Fields)
	}
	if again, err := EncodeHeader(got); err != nil || !bytes.Equal(again, b) {
		t.Errorf("re-encoding a decoded header changed its bytes:\n%q\n%q", again[:200], b[:200])
	}
	if fields[1] != "b\xffad" {
		t.Error("EncodeHeader wrote into the caller's Fields")
	}
}

func TestEncodeHeaderRefusesBadSizes(t *testing.T) {
	h := sampleHeader()
	for _, size := range []int{0, -1, MaxHeaderSize + 1, 100} {
		h.Size = size
		if b, err := EncodeHeader(h); err == nil {
			t.Errorf("EncodeHeader with Size %d = %d bytes, nil error", size, len(b))
		}
	}
}

func TestDecodeHeaderDetectsAnyChangedByteInTheJSON(t *testing.T) {
	h := sampleHeader()
	h.Fields = h.Fields[:3]
	b, err := EncodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	jsonEnd := bytes.LastIndex(b, []byte(`,"crc32c":"`)) + len(`,"crc32c":"`) + 8 + 2
	mut := bytes.Clone(b)
	for i := 0; i < jsonEnd; i++ {
		for x := 1; x < 256; x++ {
			mut[i] = b[i] ^ byte(x)
			_, err := DecodeHeader(mut)
			switch {
			case i == 0: // not '{': not a header at all
				if !errors.Is(err, ErrHeaderFormat) {
					t.Fatalf("byte 0 = %q: DecodeHeader = %v, want ErrHeaderFormat", mut[0], err)
				}
			case !errors.Is(err, ErrHeaderTorn):
				t.Fatalf("byte %d changed from %q to %q: DecodeHeader = %v, want ErrHeaderTorn", i, b[i], mut[i], err)
			}
		}
		mut[i] = b[i]
	}
}

func TestDecodeHeaderDetectsATornRewrite(t *testing.T) {
	// A reader that catches the writer's pwrite half done sees the start of
	// one header and the end of the other: it must get one of the two or
	// ErrHeaderTorn, never a mix.
	old := sampleHeader()
	old.Count, old.LastSeq = 999, 1041
	nu := old
	nu.Count, nu.LastSeq, nu.State = 1000, 1044, StateComplete
	nu.UpdatedAt = old.UpdatedAt.Add(time.Second)
	a, err := EncodeHeader(old)
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeHeader(nu)
	if err != nil {
		t.Fatal(err)
	}
	for cut := 0; cut <= len(a); cut++ {
		for _, mix := range [][]byte{append(bytes.Clone(a[:cut]), b[cut:]...), append(bytes.Clone(b[:cut]), a[cut:]...)} {
			got, err := DecodeHeader(mix)
			switch {
			case err == nil && (got.Count == 999 && bytes.Equal(mix, a) || got.Count == 1000 && bytes.Equal(mix, b)):
			case errors.Is(err, ErrHeaderTorn):
			default:
				t.Fatalf("cut at %d: DecodeHeader = %+v, %v", cut, got.Count, err)
			}
		}
	}
}

func TestDecodeHeaderRefusesOtherVersions(t *testing.T) {
	for _, v := range []string{"0", "2", "99", "-1"} {
		obj := `{"version":` + v + `,"dataset":"p","header_size":4096`
		_, err := DecodeHeader(sealHeader(obj, 4096))
		if !errors.Is(err, ErrHeaderVersion) {
			t.Errorf("version %s: DecodeHeader = %v, want ErrHeaderVersion", v, err)
		}
	}
	// A later version may lay its object out differently: the version is
	// checked before the members.
	_, err := DecodeHeader(sealHeader(`{"version":2,"count":"many","header_size":4096`, 4096))
	if !errors.Is(err, ErrHeaderVersion) {
		t.Errorf("version 2 with other members: DecodeHeader = %v, want ErrHeaderVersion", err)
	}
}

func TestDecodeHeaderRefusesGarbage(t *testing.T) {
	valid, err := EncodeHeader(sampleHeader())
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]byte{
		"empty":              nil,
		"newline":            []byte("\n"),
		"a record":           []byte(`{"Handle":"x","Title":"y"}` + "\n"),
		"text":               []byte("hello, world\n"),
		"binary":             {0x00, 0xff, 0x10, '\n'},
		"no newline":         valid[:len(valid)-1],
		"leading space":      append([]byte{' '}, valid[1:]...),
		"empty object":       []byte("{}\n"),
		"size disagrees":     sealHeader(`{"version":1,"header_size":8192`, 4096),
		"not an object":      sealHeader(`{"version":1,"fields":{}`, 4096),
		"bad JSON under CRC": sealHeader(`{"version":1,,`, 4096),
		"index file":         append(AppendIndexHeader(nil, 4096), '\n'),
	}
	for name, line := range tests {
		_, err := DecodeHeader(line)
		if !errors.Is(err, ErrHeaderFormat) {
			t.Errorf("%s: DecodeHeader = %v, want ErrHeaderFormat", name, err)
		}
	}
}

func TestDecodeHeaderTakesOnlyTheEncodersChecksumForm(t *testing.T) {
	b, err := EncodeHeader(sampleHeader())
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.LastIndex(b, []byte(`,"crc32c":"`)) + len(`,"crc32c":"`)
	sum := string(b[at : at+8])
	for _, other := range []string{strings.ToUpper(sum), " " + sum[1:], "+" + sum[1:], "0x" + sum[2:]} {
		if other == sum {
			continue
		}
		mut := bytes.Clone(b)
		copy(mut[at:], other)
		if _, err := DecodeHeader(mut); !errors.Is(err, ErrHeaderTorn) {
			t.Errorf("checksum %q for %q: DecodeHeader = %v, want ErrHeaderTorn", other, sum, err)
		}
	}
	// A header cut before its checksum member (a torn read of a longer
	// line) is torn, not foreign.
	cut := bytes.Clone(b[:at-20])
	cut = append(cut, '\n')
	if _, err := DecodeHeader(cut); !errors.Is(err, ErrHeaderTorn) {
		t.Errorf("cut header: DecodeHeader = %v, want ErrHeaderTorn", err)
	}
}

func TestReadHeaderFromAFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		fields int
	}{
		{"one block", 8},
		{"three blocks", 300}, // many long field names: the header outgrows the first read
	}
	for _, tt := range tests {
		h := sampleHeader()
		h.Fields = nil
		for i := range tt.fields {
			h.Fields = append(h.Fields, fmt.Sprintf("Variant Metafield: custom.long_field_name_%03d", i))
		}
		h.Size = HeaderSizeFor(h)
		b, err := EncodeHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, tt.name)
		data := append(bytes.Clone(b), `{"Handle":"x"}`+"\n"...)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadHeader(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s (%d bytes): ReadHeader = %v", tt.name, h.Size, err)
		}
		if got.Size != h.Size || len(got.Fields) != tt.fields || got.Generation != 42 {
			t.Errorf("%s: ReadHeader = size %d, %d fields", tt.name, got.Size, len(got.Fields))
		}
		if tt.fields == 300 && h.Size <= HeaderBlock {
			t.Fatalf("the test header is only %d bytes", h.Size)
		}
	}
}

func TestReadHeaderRefusesAShortOrForeignFile(t *testing.T) {
	b, err := EncodeHeader(sampleHeader())
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string][]byte{
		"empty file":         nil,
		"cut header":         b[:len(b)/2],
		"header without \\n": b[:len(b)-1],
		"a CSV file":         []byte("Handle,Title\nx,y\n"),
		"no newline at all":  bytes.Repeat([]byte("x"), 3*HeaderBlock+5),
	}
	for name, data := range tests {
		got, err := ReadHeader(bytes.NewReader(data))
		if !errors.Is(err, ErrHeaderFormat) {
			t.Errorf("%s: ReadHeader = %+v, %v; want ErrHeaderFormat", name, got, err)
		}
	}
	huge := bytes.Repeat([]byte(" "), MaxHeaderSize+10)
	huge[0] = '{'
	if _, err := ReadHeader(bytes.NewReader(huge)); !errors.Is(err, ErrHeaderFormat) || !strings.Contains(err.Error(), "no end of line") {
		t.Errorf("a first line over MaxHeaderSize: ReadHeader = %v", err)
	}
}

func FuzzDecodeHeader(f *testing.F) {
	h := sampleHeader()
	for _, v := range []Header{h, maxedHeader(h, h.Size), {Size: 4096}} {
		if b, err := EncodeHeader(v); err == nil {
			f.Add(b, false)
			f.Add(b[:len(b)/2], false)
			f.Add(b, true)
		}
	}
	f.Add([]byte("{}\n"), true)
	f.Add([]byte(`{"version":1,"header_size":100,"fields":["a"]`), true)
	f.Add([]byte(`{"VERSION":1,"Header_Size":100, "count":1e3 `), true)
	f.Add([]byte(`{"version":1,"header_size":200,"count":5,"count":6,"unknown":[1,{}]`), true)
	f.Add([]byte(`{"version":1,"created_at":"2024-01-01T00:00:00+02:00","header_size":100`), true)
	f.Add([]byte(`{"version":1,"created_at":"9999-12-31T23:59:59-12:00","header_size":100`), true)
	f.Add([]byte(`{"version":1,"source":{"name":"\ud800"},"header_size":100`), true)
	f.Add([]byte(`{"version":1,"fields":"x"`), true)
	f.Add([]byte("\x00\xff\n"), false)
	f.Add([]byte(`{"version":1,"crc32c":"00000000"}`+"\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, reseal bool) {
		line := data
		if reseal {
			// Give arbitrary JSON a valid checksum, so the fuzzer reaches
			// the JSON decoding behind it.
			// Pad it to the header_size it claims when that is plausible.
			obj := bytes.TrimRight(bytes.TrimSuffix(data, []byte("\n")), " ")
			obj = bytes.TrimSuffix(obj, []byte("}"))
			var claim struct {
				Size int `json:"header_size"`
			}
			_ = json.Unmarshal(append(bytes.Clone(obj), '}'), &claim)
			line = sealHeader(string(obj), min(max(claim.Size, 0), 1<<16))
		}
		got, err := DecodeHeader(line)
		if err != nil {
			if !errors.Is(err, ErrHeaderTorn) && !errors.Is(err, ErrHeaderFormat) && !errors.Is(err, ErrHeaderVersion) {
				t.Fatalf("DecodeHeader error %v wraps none of its sentinels", err)
			}
			return
		}
		if got.Version != HeaderVersion || got.Size != len(line) {
			t.Fatalf("accepted version %d, size %d for %d bytes", got.Version, got.Size, len(line))
		}
		again, err := EncodeHeader(got)
		if err != nil {
			if reseal {
				return // hand-made JSON may hold what the encoder never writes (a time past year 9999)
			}
			t.Fatalf("EncodeHeader(DecodeHeader(%q)) = %v", line, err)
		}
		if !reseal && !bytes.Equal(again, line) {
			t.Fatalf("DecodeHeader accepted bytes the encoder would not write:\n%q\nre-encodes to\n%q", line, again)
		}
		// Whatever was accepted, its re-encoding is a fixed point.
		back, err := DecodeHeader(again)
		if err != nil {
			t.Fatalf("DecodeHeader(EncodeHeader(h)) = %v", err)
		}
		third, err := EncodeHeader(back)
		if err != nil || !bytes.Equal(third, again) {
			t.Fatalf("encoding is not stable:\n%q\n%q", again, third)
		}
	})
}
