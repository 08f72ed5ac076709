package schema

import (
	"math"
	"testing"
)

func TestFileNames(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{DataFile(1), "gen-1.ndjson"},
		{IndexFile(42), "gen-42.idx"},
		{RejectsFile(42), "gen-42.rejects.ndjson"},
		{DataFile(math.MaxUint64), "gen-18446744073709551615.ndjson"},
		{CurrentFile, "CURRENT"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestGenerationOfInvertsTheFileNames(t *testing.T) {
	for _, g := range []uint64{1, 42, 1000000, math.MaxUint64} {
		for _, name := range []string{DataFile(g), IndexFile(g), RejectsFile(g)} {
			if got, ok := GenerationOf(name); !ok || got != g {
				t.Errorf("GenerationOf(%q) = %d, %v; want %d", name, got, ok, g)
			}
		}
	}
}

func TestGenerationOfRefusesOtherNames(t *testing.T) {
	for _, name := range []string{
		"", "CURRENT", "CURRENT.tmp", ".writer.lock", ".writer-checkpoint", "nats",
		"gen-.ndjson", "gen-0.ndjson", "gen-01.ndjson", "gen-+1.ndjson", "gen--1.ndjson", "gen- 1.ndjson",
		"gen-1.ndjson.tmp", "gen-1.idx.tmp", "gen-1", "gen-1.json", "gen-1.rejects.idx", "gen-1.rejects",
		"gen-x.ndjson", "Gen-1.ndjson", "gen-18446744073709551616.ndjson", "gen-1.NDJSON", "xgen-1.ndjson",
	} {
		if g, ok := GenerationOf(name); ok {
			t.Errorf("GenerationOf(%q) = %d, true; want false", name, g)
		}
	}
}

func TestCurrentFileRoundTrip(t *testing.T) {
	for _, g := range []uint64{1, 42, math.MaxUint64} {
		b := FormatCurrent(g)
		if string(b) != DataFile(g)[len("gen-"):len(DataFile(g))-len(".ndjson")]+"\n" {
			t.Errorf("FormatCurrent(%d) = %q", g, b)
		}
		if got, ok := ParseCurrent(b); !ok || got != g {
			t.Errorf("ParseCurrent(%q) = %d, %v", b, got, ok)
		}
	}
}

func TestParseCurrentRefusesPartialOrForeignContent(t *testing.T) {
	for _, s := range []string{
		"", "\n", "42", "0\n", "-1\n", "+1\n", " 42\n", "42 \n", "42\n\n", "42\r\n", "4 2\n", "x\n",
		"18446744073709551616\n",
	} {
		if g, ok := ParseCurrent([]byte(s)); ok {
			t.Errorf("ParseCurrent(%q) = %d, true; want false", s, g)
		}
	}
}
