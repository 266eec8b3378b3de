package store

import (
	"context"
	"fmt"
)

// EnsureQueueOffset makes the queue (topic, queueID) continue at offset next or later: when
// the queue holds no local entry and its next offset is below next, it becomes an empty
// queue whose min and max offsets are next, so the next append gets queue offset next. The
// broker calls it at startup for every queue its cold tier holds, so that a queue whose
// records all left local disk (or a wiped disk) does not restart at 0. A queue that still
// holds local entries ending at or after next is unchanged; one whose local entries end
// before next is inconsistent with the caller's view and reported as an error.
func (s *Store) EnsureQueueOffset(ctx context.Context, topic string, queueID int32, next int64) error {
	if queueID < 0 || next < 0 {
		return fmt.Errorf("ensure queue offset %s/%d at %d: negative queue id or offset", topic, queueID, next)
	}
	return s.runControl(ctx, &writeOp{kind: opQueueBase, topic: topic, queue: queueID, next: next, done: make(chan struct{})})
}

// raiseQueueBase runs on the writer goroutine, so q.next is not being assigned meanwhile.
func (s *Store) raiseQueueBase(topic string, queueID int32, next int64) error {
	q := s.queue(topic, queueID, true)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next >= next {
		return nil
	}
	if len(q.entries) > 0 {
		return fmt.Errorf("ensure queue offset %s/%d at %d: the queue holds local offsets %d..%d below it; the hot store and the cold tier disagree",
			topic, queueID, next, q.base, q.base+int64(len(q.entries))-1)
	}
	q.base, q.next = next, next
	q.entries = q.entries[:0]
	q.publishLocked()
	return nil
}
