package consume

import (
	"testing"
	"time"
)

const msgBytes = 1024 - headerBytes // stored size 1 KiB: avgBytes stays exact

func TestTrailFollowsTheHeadUntilTheAllowanceIsSpent(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tr := newTrail(2<<20, 1, 0)
	seq := uint64(0)
	for tr.headBytes < headAllowance {
		seq++
		tr.read(seq, msgBytes, 10, now)
		if tr.mustWait(now) && tr.headBytes < headAllowance {
			t.Fatalf("waits after %d bytes near the head, before the allowance of %d", tr.headBytes, headAllowance)
		}
	}
	if !tr.mustWait(now) {
		t.Fatalf("after %d bytes read near the head of a growing stream it does not wait", tr.headBytes)
	}
	if !tr.mustWait(now.Add(serverCacheExpiry - time.Millisecond)) {
		t.Error("stops waiting before the server's cache of the last head read expired")
	}
	if tr.mustWait(now.Add(serverCacheExpiry)) {
		t.Error("still waits once the server's cache of the last head read expired")
	}
}

func TestTrailWaitsUntilAFetchStaysABlockBehindTheHead(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	const fetch = 2 << 20
	tr := newTrail(fetch, 1, 0)
	tr.headBytes, tr.lastHead = headAllowance, now // allowance spent
	tr.read(100, msgBytes, 0, now)
	head := uint64(100)
	for tr.mustWait(now) {
		if tr.behindBytes() >= serverBlockBytes+fetch {
			t.Fatalf("waits while %d bytes behind the head", tr.behindBytes())
		}
		head += 1000
		if !tr.grewTo(head) {
			t.Fatalf("growth to %d not seen", head)
		}
	}
	if got, want := tr.behindBytes(), serverBlockBytes+fetch; got < want {
		t.Errorf("stopped waiting %d bytes behind the head, want at least %d", got, want)
	}
	if tr.grewTo(head) {
		t.Error("a stream that did not grow is reported as grown")
	}
}

func TestTrailStartsAsFarBehindAsTheBacklog(t *testing.T) {
	tr := newTrail(2<<20, 1001, 100_000)
	if tr.behind != 99_000 {
		t.Errorf("behind = %d, want 99000", tr.behind)
	}
	if tr := newTrail(2<<20, 5, 4); tr.behind != 0 {
		t.Errorf("an empty backlog: behind = %d, want 0", tr.behind)
	}
}

func TestTrailReadsAQuietStreamToItsHeadWithoutWaitingAgain(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tr := newTrail(2<<20, 1, 0)
	tr.headBytes, tr.lastHead = headAllowance, now // allowance spent
	tr.read(100, msgBytes, 50, now)
	if !tr.mustWait(now) {
		t.Fatal("50 messages behind a growing head with the allowance spent, it does not wait")
	}
	if tr.grewTo(150) {
		t.Fatal("a stream that stayed at 150 is reported as grown")
	}
	for seq := uint64(101); seq <= 150; seq++ {
		if tr.mustWait(now) {
			t.Fatalf("waits again at %d while catching up with a quiet stream", seq)
		}
		tr.read(seq, msgBytes, 150-seq, now)
	}
	tr.read(151, msgBytes, 20, now) // the stream grows again
	if !tr.mustWait(now) {
		t.Error("does not wait once a message shows the stream growing again")
	}
}
