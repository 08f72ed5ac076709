package ratelimit

import (
	"testing"
	"time"

	"github.com/rowpipe/rowpipe/services/api/internal/auth"
)

func TestEachKeyHasItsOwnBucket(t *testing.T) {
	l := New(1, 2, 10)
	now := time.Unix(1000, 0)
	a, b := auth.ID{1}, auth.ID{2}
	for i := range 2 {
		if ok, _ := l.Allow(a, now); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := l.Allow(a, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("third request: ok %v, retry after %v; want refused, within 1s", ok, wait)
	}
	if ok, _ := l.Allow(b, now); !ok {
		t.Fatal("another key was limited by the first one's use")
	}
	if ok, _ := l.Allow(a, now.Add(time.Second)); !ok {
		t.Fatal("no token a second later")
	}
}

func TestBucketsAreBounded(t *testing.T) {
	l := New(1, 1, 3)
	now := time.Unix(1000, 0)
	for i := range 100 {
		l.Allow(auth.ID{byte(i)}, now)
	}
	if n := len(l.buckets); n > 3 {
		t.Fatalf("%d buckets, want at most 3", n)
	}
}

func TestNilLimiterAllowsAll(t *testing.T) {
	var l *Limiter = New(0, 0, 0)
	if ok, _ := l.Allow(auth.ID{}, time.Now()); !ok {
		t.Fatal("a disabled limiter refused")
	}
}

// A request of a known key takes its token without allocating.
func TestAllowDoesNotAllocate(t *testing.T) {
	l := New(1e9, 1e9, 10)
	now := time.Unix(1000, 0)
	l.Allow(auth.ID{1}, now)
	if n := testing.AllocsPerRun(100, func() { l.Allow(auth.ID{1}, now) }); n != 0 {
		t.Fatalf("%v allocations per Allow", n)
	}
}
