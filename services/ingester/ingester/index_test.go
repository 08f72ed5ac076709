package ingester

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestIndexColumnsAreInTheBegin(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("idx", writeFile(t, "p.csv", "Handle,Variant SKU,limit\ntee,T-1,1\n"))
	cfg.Index = []string{"Variant SKU", "limit"}
	out := e.run(context.Background(), cfg)
	if out.err != nil {
		t.Fatal(out.err)
	}
	if a := applyLikeWriter(t, e.messages("idx"))[out.res.Sync]; !slices.Equal(a.Begin.Index, cfg.Index) {
		t.Errorf("begin index %q, want %q", a.Begin.Index, cfg.Index)
	}
}

func TestIndexOfAFieldTheSourceLacksIsRefused(t *testing.T) {
	e := newEnv(t)
	cfg := e.config("idx", writeFile(t, "p.csv", "Handle,Title\ntee,Tee\n"))
	cfg.Index = []string{"Variant SKU"}
	out := e.run(context.Background(), cfg)
	if ExitCode(out.err) != ExitRefused || !strings.Contains(out.err.Error(), `--index: index column "Variant SKU" is not a field`) {
		t.Fatalf("err = %v (exit %d), want exit 3 naming the column", out.err, ExitCode(out.err))
	}
	if n := len(e.messages("idx")); n != 0 {
		t.Fatalf("%d messages published", n)
	}
}
