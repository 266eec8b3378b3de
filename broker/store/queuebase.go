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

// raiseQueueBase runs on the writer goroutine, so q.next is not being assigned meanwhile
// and every assigned offset is indexed.
func (s *Store) raiseQueueBase(topic string, queueID int32, next int64) error {
	q := s.queue(topic, queueID, true)
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.next >= next {
		return nil
	}
	if end := q.endLocked(); q.minOff < end {
		return fmt.Errorf("ensure queue offset %s/%d at %d: the queue holds local offsets %d..%d below it; the hot store and the cold tier disagree",
			topic, queueID, next, q.minOff, end-1)
	}
	q.restartLocked(next)
	if err := s.writeResetLocked(q, next); err != nil {
		err = fmt.Errorf("%w: index: %v; restart the broker to rebuild the index from the commit log", ErrWriteFailed, err)
		s.fail(err)
		return err
	}
	q.next = next
	q.publishLocked()
	return nil
}
