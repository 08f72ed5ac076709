package svc

import (
	"runtime"
	"testing"
)

func TestPipelineProcsDefaultsToOneP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(3)
	t.Setenv("GOMAXPROCS", "")
	n, from := PipelineProcs()
	if n != 1 || from != "default" || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("PipelineProcs() = %d, %q; GOMAXPROCS now %d; want 1, default, 1", n, from, runtime.GOMAXPROCS(0))
	}
}

func TestPipelineProcsLeavesAnExplicitGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(3) // what the runtime would have read from GOMAXPROCS=3 at start
	t.Setenv("GOMAXPROCS", "3")
	n, from := PipelineProcs()
	if n != 3 || from != "GOMAXPROCS" || runtime.GOMAXPROCS(0) != 3 {
		t.Errorf("PipelineProcs() = %d, %q; GOMAXPROCS now %d; want 3, GOMAXPROCS, 3", n, from, runtime.GOMAXPROCS(0))
	}
}
