package store

import (
	"sort"
	"sync"
	"sync/atomic"
)

// pageRef locates one full consume-queue page of a queue.
type pageRef struct {
	ref     uint64 // page-file number << 32 | page index in that file
	firstTs int64  // store time of the page's first entry: time lookup without I/O
}

func (r pageRef) file() uint32  { return uint32(r.ref >> 32) }
func (r pageRef) index() uint32 { return uint32(r.ref) }

// consumeQueue is one (topic, queue id)'s in-memory state: its offset bounds, a table of its
// full pages on disk (16 bytes per 145 entries) and its unfinished last page. The index
// mutex orders every change; readers take mu.RLock and copy what they need.
type consumeQueue struct {
	topic string
	id    int32
	// removed is set when DeleteTopic drops the queue (writer goroutine). It sits beside
	// topic and id, which QueueRef checks on every append with it: one cache line, not two,
	// when thousands of queues take turns.
	removed atomic.Bool

	mu       sync.RWMutex
	num      uint32 // queue number in the page map; 0 until first written
	epoch    uint64 // bumped when the queue restarts at another offset
	minOff   int64  // oldest visible offset (retention moves it)
	pageBase int64  // offset of pages[0]'s first entry
	pages    []pageRef
	open     []cqEntry     // entries after the last full page
	waitCh   chan struct{} // closed and cleared on the next append; nil when no one waits

	// max is the end offset, published after the entries are visible.
	max atomic.Int64
	// Index mutex only.
	createdPos  int64 // commit-log end when created: a later topic tombstone kills it
	synced      int   // open[:synced] are durable in fragments
	unsyncedPos int64 // commit-log position of open[synced]; -1 when all are durable

	// next is the next queue offset to assign; writer goroutine only.
	next int64
}

func newConsumeQueue(topic string, id int32, createdPos int64) *consumeQueue {
	return &consumeQueue{topic: topic, id: id, createdPos: createdPos, unsyncedPos: -1}
}

func (q *consumeQueue) openBaseLocked() int64 {
	return q.pageBase + int64(len(q.pages))*cqPageEntries
}

func (q *consumeQueue) endLocked() int64 { return q.openBaseLocked() + int64(len(q.open)) }

func (q *consumeQueue) bounds() (min, max int64) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.minOff, q.endLocked()
}

// restartLocked empties the queue and makes it continue at off.
func (q *consumeQueue) restartLocked(off int64) {
	q.pages = nil
	q.open = q.open[:0]
	q.pageBase, q.minOff = off, off
	q.epoch++
	q.synced, q.unsyncedPos = 0, -1
}

// publishLocked makes appended entries visible to waiters. Caller holds mu.
func (q *consumeQueue) publishLocked() {
	q.max.Store(q.endLocked())
	if q.waitCh != nil {
		close(q.waitCh)
		q.waitCh = nil
	}
}

// queueView is a reader's copy of a queue's bounds and of the page refs and unfinished
// entries covering a range of offsets, taken under the queue's read lock so that the disk
// reads happen without it.
type queueView struct {
	num            uint32
	epoch          uint64
	minOff, maxOff int64
	refFirst       int64 // offset of refs[0]'s first entry
	refs           []pageRef
	openFirst      int64 // offset of open[0]
	open           []cqEntry
	noWait         bool // read pages only from memory and the page cache (ReadRequest.NoWait)
}

// viewLocked copies what is needed to read offsets [from, to).
func (q *consumeQueue) viewLocked(from, to int64) queueView {
	v := queueView{num: q.num, epoch: q.epoch, minOff: q.minOff, maxOff: q.endLocked()}
	from, to = max(from, q.pageBase), min(to, v.maxOff)
	if from >= to {
		return v
	}
	ob := q.openBaseLocked()
	if from < ob {
		k0 := (from - q.pageBase) / cqPageEntries
		k1 := (min(to, ob) - 1 - q.pageBase) / cqPageEntries
		v.refs = append([]pageRef(nil), q.pages[k0:k1+1]...)
		v.refFirst = q.pageBase + k0*cqPageEntries
	}
	if to > ob {
		start := max(from, ob)
		v.open = append([]cqEntry(nil), q.open[start-ob:to-ob]...)
		v.openFirst = start
	}
	return v
}

// searchPages returns the index of the first page whose first store time is at or after ts.
func (q *consumeQueue) searchPagesLocked(ts int64) int {
	return sort.Search(len(q.pages), func(i int) bool { return q.pages[i].firstTs >= ts })
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
