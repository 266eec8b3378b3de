package txn

import (
	"context"
	"fmt"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

// Recovery replays HalfTopic and OpTopic from the latest checkpoint, merged in commit-log
// order, exactly as the service changed its table while they were written: a half message
// adds an entry, an op applies to it. Memory so follows the number of half messages that
// were pending at once, not the number written since the checkpoint.
//
// The last op record read is applied last and, if it is a commit or a parking, only once
// its companion is found right after it (store.NextRecordPos). A crash can keep the op
// record of such a decision without its companion only when nothing after it was kept
// (recovery of the store cuts the log at the first bad frame, and both were one write), so
// only the last op record can lack it. Then the decision is made again, in one append led by
// a void op record that cancels the cut one: every earlier op record without its companion
// is so followed by its void, and only the last needs checking.

type recoveryStats struct {
	from        checkpoint
	halves, ops int
	pending     int
	redone      int
}

// queueCursor reads one system queue in order.
type queueCursor struct {
	topic string
	off   int64 // next offset to read
	buf   []parsedRecord
	done  bool
}

type parsedRecord struct {
	m    *message.Message
	size int32
}

func (c *queueCursor) head(ctx context.Context, log Log) (*parsedRecord, error) {
	for len(c.buf) == 0 && !c.done {
		recs, next, err := log.ReadQueue(ctx, c.topic, 0, c.off, 256)
		if err != nil {
			return nil, fmt.Errorf("read %s at offset %d: %w", c.topic, c.off, err)
		}
		if len(recs) == 0 {
			if next > c.off { // records gone from both tiers: go on after them
				c.off = next
				continue
			}
			c.done = true
			break
		}
		for _, rec := range recs {
			m, _, err := message.Decode(rec)
			if err != nil {
				return nil, fmt.Errorf("decode %s record near offset %d: %w", c.topic, c.off, err)
			}
			c.buf = append(c.buf, parsedRecord{m: m, size: int32(len(rec))})
		}
		c.off = next
	}
	if len(c.buf) == 0 {
		return nil, nil
	}
	return &c.buf[0], nil
}

func (c *queueCursor) pop() { c.buf = c.buf[1:] }

// nextOffset is the queue offset of the first record not yet taken.
func (c *queueCursor) nextOffset() int64 {
	if len(c.buf) > 0 {
		return c.buf[0].m.QueueOffset
	}
	return c.off
}

func (s *Service) recover(ctx context.Context) (recoveryStats, error) {
	var st recoveryStats
	cp, err := s.readCheckpoint(ctx)
	if err != nil {
		return st, err
	}
	st.from = cp
	s.lastCk = cp
	halves := &queueCursor{topic: HalfTopic, off: min(cp.halfLow, s.log.MaxOffset(HalfTopic, 0))}
	ops := &queueCursor{topic: OpTopic, off: min(cp.opFrom, s.log.MaxOffset(OpTopic, 0))}
	var held *parsedRecord // the last op record read, applied when the next one comes
	for {
		h, err := halves.head(ctx, s.log)
		if err != nil {
			return st, err
		}
		o, err := ops.head(ctx, s.log)
		if err != nil {
			return st, err
		}
		if h == nil && o == nil {
			break
		}
		if o == nil || h != nil && h.m.CommitLogOffset < o.m.CommitLogOffset {
			s.replayHalf(h.m, ops.nextOffset())
			halves.pop()
			st.halves++
			continue
		}
		if held != nil {
			s.replayOp(ctx, held.m)
		}
		rec := *o
		held = &rec
		ops.pop()
		st.ops++
	}
	if held != nil {
		redone, err := s.replayLastOp(ctx, held)
		if err != nil {
			return st, err
		}
		st.redone = redone
	}
	s.mu.Lock()
	st.pending = s.t.live
	s.mu.Unlock()
	return st, nil
}

func (s *Service) replayHalf(m *message.Message, opFrom int64) {
	wait := s.firstWait(m.Properties)
	s.mu.Lock()
	s.t.insert(entry{pos: m.CommitLogOffset, opFrom: opFrom, dueMs: m.StoreTimestamp + wait.Milliseconds()},
		m.Properties[message.PropertyProducerGroup])
	s.mu.Unlock()
}

// replayOp applies an op record's entries to the table.
func (s *Service) replayOp(ctx context.Context, m *message.Message) {
	entries, err := decodeOpBody(m.Body)
	if err != nil {
		s.cfg.Logger.Warn("txn recovery: skipping an unreadable op record", "commit_log_offset", m.CommitLogOffset, "err", err)
		return
	}
	for _, e := range entries {
		s.mu.Lock()
		i, ok := s.t.find(e.halfPos)
		switch {
		case e.kind == opVoid:
			s.mu.Unlock()
			if !ok {
				s.reinstate(ctx, e.halfPos, m.QueueOffset)
			}
			continue
		case !ok:
			// decided before, or below the checkpoint
		case e.kind == opCheck:
			en := &s.t.entries[i]
			en.checks = min(en.checks+1, 1<<15)
			en.dueMs = m.StoreTimestamp + s.cfg.CheckInterval.Milliseconds()
		default:
			s.t.remove(i)
		}
		s.mu.Unlock()
	}
}

// reinstate makes the half message at pos pending again (a void op: the decision that
// dropped it lost its companion).
func (s *Service) reinstate(ctx context.Context, pos, opFrom int64) {
	half, err := s.readHalf(ctx, pos)
	if err != nil {
		s.cfg.Logger.Error("txn recovery: a half message whose decision was voided cannot be read; it is not checked back", "commit_log_offset", pos, "err", err)
		return
	}
	s.mu.Lock()
	s.t.insert(entry{pos: pos, opFrom: opFrom, dueMs: half.StoreTimestamp + s.firstWait(half.Properties).Milliseconds()},
		half.Properties[message.PropertyProducerGroup])
	s.mu.Unlock()
}

// replayLastOp applies the last op record, first checking that a commit or a parking has
// its companion; without one, it makes the decision again. It reports how many it redid.
func (s *Service) replayLastOp(ctx context.Context, op *parsedRecord) (int, error) {
	entries, err := decodeOpBody(op.m.Body)
	if err != nil || len(entries) != 1 || !entries[0].kind.hasCompanion() {
		s.replayOp(ctx, op.m)
		return 0, nil
	}
	e := entries[0]
	s.mu.Lock()
	_, pending := s.t.find(e.halfPos)
	s.mu.Unlock()
	if !pending { // a decision repeated after an earlier one: nothing to check
		return 0, nil
	}
	half, err := s.readHalf(ctx, e.halfPos)
	if err != nil {
		return 0, fmt.Errorf("%s op at commit-log offset %d: %w", e.kind, op.m.CommitLogOffset, err)
	}
	next := store.NextRecordPos(op.m.CommitLogOffset, op.size)
	if rec, err := s.log.ReadAt(ctx, next, 0); err == nil && isCompanionOf(rec, e.halfPos, half.UniqKey()) {
		s.replayOp(ctx, op.m)
		return 0, nil
	}
	s.cfg.Logger.Warn("txn recovery: the last decision's record after its op record is missing (cut by a crash); making the decision again",
		"decision", e.kind.String(), "half_commit_log_offset", e.halfPos, "uniq_key", half.UniqKey())
	s.mu.Lock()
	if i, ok := s.t.find(e.halfPos); ok {
		s.t.entries[i].state = stateDeciding
	}
	s.redoing = true
	s.mu.Unlock()
	if e.kind == opCommit {
		_, err = s.commit(ctx, half)
	} else {
		err = s.park(ctx, half, 0)
	}
	s.mu.Lock()
	s.redoing = false
	s.mu.Unlock()
	s.finish(e.halfPos, err == nil)
	if err != nil {
		// Still pending: the next check-back asks the producer again.
		s.cfg.Logger.Error("txn recovery: making the decision again failed; the half message stays pending for check-back",
			"decision", e.kind.String(), "half_commit_log_offset", e.halfPos, "err", err)
		return 0, nil
	}
	return 1, nil
}

// readCheckpoint returns the latest readable checkpoint in the log (zero if none).
func (s *Service) readCheckpoint(ctx context.Context) (checkpoint, error) {
	end := s.log.MaxOffset(CheckpointTopic, 0)
	for off := end - 1; off >= 0 && off >= end-16; off-- {
		recs, _, err := s.log.ReadQueue(ctx, CheckpointTopic, 0, off, 1)
		if err != nil {
			return checkpoint{}, fmt.Errorf("read the checkpoint at %s offset %d: %w", CheckpointTopic, off, err)
		}
		if len(recs) == 0 {
			break
		}
		m, _, err := message.Decode(recs[0])
		if err == nil && m.QueueOffset != off {
			err = fmt.Errorf("record at offset %d is not the one asked for", m.QueueOffset)
		}
		var c checkpoint
		if err == nil {
			if c, err = decodeCheckpoint(m.Body); err == nil {
				return c, nil
			}
		}
		s.cfg.Logger.Warn("txn: checkpoint unreadable; trying the one before", "offset", off, "err", err)
	}
	return checkpoint{}, nil
}

// checkpointNow writes where recovery may start, if it moved since the last one.
func (s *Service) checkpointNow(ctx context.Context) error {
	var c checkpoint
	s.barrier.Lock()
	s.mu.Lock()
	oldest, any := s.t.oldest()
	if any {
		c.opFrom = oldest.opFrom
	} else {
		c.halfLow, c.opFrom = s.log.MaxOffset(HalfTopic, 0), s.log.MaxOffset(OpTopic, 0)
	}
	s.mu.Unlock()
	s.barrier.Unlock()
	if any {
		half, err := s.readHalf(ctx, oldest.pos)
		if err != nil {
			return fmt.Errorf("txn checkpoint: %w", err)
		}
		c.halfLow = half.QueueOffset
	}
	if c == s.lastCk {
		return nil
	}
	rec, err := systemRecord(CheckpointTopic, s.cfg.StoreHost, s.cfg.Clock.Now().UnixMilli(), encodeCheckpoint(c), nil)
	if err != nil {
		return err
	}
	if _, err := s.log.Append(ctx, rec); err != nil {
		return fmt.Errorf("txn checkpoint: %w", err)
	}
	s.lastCk = c
	return nil
}
