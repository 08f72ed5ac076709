package consume

import "time"

// Why the consumer trails the head of a fast-growing stream.
//
// nats-server's file store keeps a block's messages in memory (its cache)
// for 10 s after the last read of that block, and keeps the cache of the
// block it is writing strongly referenced while that block is read. A
// consumer that follows the head of a stream reads each block while it is
// being written, so every block stays in memory for 10 s after it is full:
// the broker holds the last 10 s of the ingest, about 450 MB at 45 MB/s.
// A block read only once it is complete is loaded from disk and weakly
// held, so the next GC may release it.
// Measured on one machine with a publisher at full speed: following the
// head, 385 MiB of broker heap and 31K msgs/s; reading at least one block
// behind it, 60 MiB and 48K msgs/s.
//
// So while the stream grows, the consumer asks for more only when what it
// asks for lies at least a block behind the head, after an allowance of
// reads near the head that keeps small syncs as fast as before (they are
// read while they arrive). When the stream stops growing (a sync's end was
// published) it reads up to the head at once: what a reader of the api
// waits for is the end of a sync, and that is never delayed by more than
// one poll.

const (
	// serverBlockBytes is nats-server's file store block for a stream with
	// limits retention and a MaxBytes over 32 MB (schema.StreamConfig).
	serverBlockBytes = 8 << 20
	// serverCacheExpiry is how long nats-server keeps a block's cache after
	// its last read (defaultCacheBufferExpiration, not configurable).
	serverCacheExpiry = 10 * time.Second
	// headAllowance is how many bytes may be read near the head of a
	// growing stream before the consumer trails it: the broker memory a
	// burst may pin for serverCacheExpiry.
	headAllowance = 8 << 20
	// growthPoll is how long the consumer waits before asking the stream
	// again whether it still grows.
	growthPoll = 10 * time.Millisecond
	// headerBytes estimates what a message stores besides its data
	// (subject, headers, the store's own framing).
	headerBytes = 160
)

// trail tracks how far the consumer is behind the head of the stream and
// how much it has read near the head.
type trail struct {
	fetchBytes int     // the most one fetch asks for
	avgBytes   float64 // a message's stored size, moving average
	behind     uint64  // messages in the stream after the last one read
	head       uint64  // the stream's last sequence, as last known
	headBytes  int     // read near the head since the last 10 s without
	lastHead   time.Time
	quiet      bool // the stream did not grow while the consumer waited
}

func newTrail(fetchBytes int, startSeq, lastSeq uint64) *trail {
	t := &trail{fetchBytes: fetchBytes, avgBytes: 1024, head: lastSeq}
	if lastSeq >= startSeq {
		t.behind = lastSeq - startSeq + 1
	}
	return t
}

// read records a message read at stream sequence seq with pending
// messages after it.
func (t *trail) read(seq uint64, size int, pending uint64, now time.Time) {
	size += headerBytes
	t.avgBytes += (float64(size) - t.avgBytes) / 64
	t.behind = pending
	if seq+pending > t.head {
		t.head = seq + pending
		t.quiet = false
	}
	if t.behindBytes() < serverBlockBytes {
		if now.Sub(t.lastHead) >= serverCacheExpiry {
			t.headBytes = 0
		}
		t.headBytes += size
		t.lastHead = now
	}
}

// behindBytes estimates the bytes stored after the last message read.
func (t *trail) behindBytes() int {
	return int(float64(t.behind) * t.avgBytes)
}

// mustWait reports whether a fetch now could reach into the block the
// server is writing after the allowance is spent: then the consumer waits
// for the stream to grow or to go quiet.
func (t *trail) mustWait(now time.Time) bool {
	if t.quiet || t.behindBytes() >= serverBlockBytes+t.fetchBytes {
		return false
	}
	return t.headBytes >= headAllowance && now.Sub(t.lastHead) < serverCacheExpiry
}

// grewTo records the stream's last sequence seen while waiting and reports
// whether the stream grew since it was last known. A stream that did not
// grow is read up to its head without waiting again, until a message read
// shows it growing.
func (t *trail) grewTo(lastSeq uint64) bool {
	if lastSeq <= t.head {
		t.quiet = true
		return false
	}
	t.behind += lastSeq - t.head
	t.head = lastSeq
	return true
}
