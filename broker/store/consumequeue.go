package store

import (
	"sort"
	"sync"
	"sync/atomic"
)

// cqEntry is one consume-queue entry: where a queue offset's record sits in the commit log,
// its tag hash code (filtering without reading the log) and its store time (time lookup
// without reading the log). On disk entries live in the per-segment index files (FORMAT.md).
type cqEntry struct {
	pos     int64
	size    int32
	tag     int64
	storeTs int64
}

// consumeQueue is one (topic, queue id)'s entries, in memory. The writer goroutine appends;
// readers take mu.RLock.
type consumeQueue struct {
	topic string
	id    int32

	mu      sync.RWMutex
	base    int64 // queue offset of entries[0]; the min offset
	entries []cqEntry
	waitCh  chan struct{} // closed and cleared on the next append; nil when no one waits

	// max is base+len(entries), published after the entries are visible.
	max atomic.Int64
	// next is the next queue offset to assign; writer goroutine only.
	next int64
}

func (q *consumeQueue) bounds() (min, max int64) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.base, q.base + int64(len(q.entries))
}

// appendEntry adds the entry for offset off. A gap (entries lost below, or the first entry
// after a deletion) restarts the queue at off.
func (q *consumeQueue) appendEntry(off int64, e cqEntry) {
	end := q.base + int64(len(q.entries))
	switch {
	case off == end:
		q.entries = append(q.entries, e)
	case len(q.entries) == 0 || off > end:
		q.entries = append(q.entries[:0], e)
		q.base = off
	default: // already present (replay overlap): keep the first.
		return
	}
}

// publish makes appended entries visible to waiters. Caller holds mu.
func (q *consumeQueue) publishLocked() {
	q.max.Store(q.base + int64(len(q.entries)))
	if q.waitCh != nil {
		close(q.waitCh)
		q.waitCh = nil
	}
}

// trimBelow drops entries whose commit-log position is below pos; it returns whether the
// queue became empty.
func (q *consumeQueue) trimBelow(pos int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := sort.Search(len(q.entries), func(i int) bool { return q.entries[i].pos >= pos })
	if k == 0 {
		return
	}
	rest := len(q.entries) - k
	if rest < len(q.entries)/2 {
		// Copy so the dropped prefix can be collected.
		q.entries = append(make([]cqEntry, 0, rest+rest/4+8), q.entries[k:]...)
	} else {
		q.entries = q.entries[k:]
	}
	q.base += int64(k)
}

// offsetForTime returns the first offset whose store time is at or after ts; max if every
// entry is older, min if every entry is newer (PROTOCOL.md §8, LOWER).
func (q *consumeQueue) offsetForTime(ts int64) int64 {
	q.mu.RLock()
	defer q.mu.RUnlock()
	k := sort.Search(len(q.entries), func(i int) bool { return q.entries[i].storeTs >= ts })
	return q.base + int64(k)
}

// QueueID names one consume queue.
type QueueID struct {
	Topic   string
	QueueID int32
}

type queueKey struct {
	topic string
	id    int32
}
