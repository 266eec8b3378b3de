package store

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/stratamq/strata/broker/message"
)

// AppendResult is what the store assigned to one appended record.
type AppendResult struct {
	CommitLogOffset int64
	QueueOffset     int64
	StoreTimestamp  int64
	Size            int32
}

type opKind int

const (
	opAppend opKind = iota
	opDeleteTopic
	opQueueBase
)

type writeOp struct {
	kind  opKind
	recs  [][]byte
	hdrs  []message.RecordHeader
	bytes int64 // framed size of recs
	topic string
	queue int32 // opQueueBase
	next  int64 // opQueueBase

	res  []AppendResult
	err  error
	done chan struct{}
}

// maxBatchBytes bounds how much the writer gathers into one write.
const maxBatchBytes = 4 << 20

// Append stores encoded records (message.AppendEncoded output with topic and queue id set) in
// order, as one unit in one segment. The store assigns each record's queue offset, commit-log
// offset and store timestamp by patching a copy; rec is not modified. Append returns once the
// flush policy is met: after the write under FlushAsync, after an fsync covering the records
// under FlushSync. If ctx ends first, Append returns ctx's error but the records may still be
// stored.
func (s *Store) Append(ctx context.Context, recs ...[]byte) ([]AppendResult, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	op := &writeOp{kind: opAppend, recs: recs, hdrs: make([]message.RecordHeader, len(recs)), done: make(chan struct{})}
	for i, rec := range recs {
		if len(rec) > s.cfg.MaxMessageBytes {
			return nil, fmt.Errorf("append record %d: %w: %d bytes, limit %d", i, ErrMessageTooLarge, len(rec), s.cfg.MaxMessageBytes)
		}
		h, err := message.ParseRecordHeader(rec)
		if err != nil {
			return nil, fmt.Errorf("append record %d: %w", i, err)
		}
		if int(h.TotalSize) != len(rec) {
			return nil, fmt.Errorf("append record %d: %w: total size %d but %d bytes given", i, message.ErrMalformed, h.TotalSize, len(rec))
		}
		if h.QueueID < 0 {
			return nil, fmt.Errorf("append record %d: negative queue id %d", i, h.QueueID)
		}
		op.hdrs[i] = h
		op.bytes += int64(len(rec) + frameTrailerBytes)
	}
	if op.bytes > s.cfg.SegmentBytes-segmentHeaderBytes {
		return nil, fmt.Errorf("append %d records: %w: %d bytes do not fit in one segment of %d", len(recs), ErrMessageTooLarge, op.bytes, s.cfg.SegmentBytes)
	}
	if err := s.submit(ctx, op); err != nil {
		return nil, err
	}
	select {
	case <-op.done:
		return op.res, op.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Store) submit(ctx context.Context, op *writeOp) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if p := s.failed.Load(); p != nil && op.kind == opAppend {
		return *p
	}
	select {
	case s.ops <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) writeLoop() {
	defer s.wg.Done()
	batch := make([]*writeOp, 0, 256)
	for {
		select {
		case op := <-s.ops:
			batch = s.gather(append(batch[:0], op))
			s.commit(batch)
		case <-s.rollCh:
			s.rollIfOld()
		case <-s.stop:
			// Close holds no sender: drain what was submitted, then exit.
			for {
				select {
				case op := <-s.ops:
					s.commit(s.gather(append(batch[:0], op)))
				default:
					return
				}
			}
		}
	}
}

// gather adds queued ops to the batch without waiting, up to maxBatchBytes.
func (s *Store) gather(batch []*writeOp) []*writeOp {
	n := batch[0].bytes
	for n < maxBatchBytes {
		select {
		case op := <-s.ops:
			batch = append(batch, op)
			n += op.bytes
		default:
			return batch
		}
	}
	return batch
}

type pendingDispatch struct {
	seg   *segment
	entry indexEntry
}

// commit writes a batch of ops with as few writes as possible (one per segment touched),
// fsyncs once under FlushSync, then makes the records visible and answers the ops.
func (s *Store) commit(batch []*writeOp) {
	var (
		written  []*writeOp // ops whose bytes are written
		chunkOps []*writeOp
		disp     []pendingDispatch
		chunkAt  = len(disp)
		saved    = map[*consumeQueue]int64{}
		failErr  error
	)
	act := s.activeSegment()
	buf := s.wbuf[:0]
	ts := max(nowMillis(), s.lastStoreTs)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		off := act.size.Load()
		n, err := s.writeAt(act.f, buf, off)
		if err == nil && n != len(buf) {
			err = fmt.Errorf("short write: %d of %d bytes", n, len(buf))
		}
		if err != nil {
			err = fmt.Errorf("%w: segment %d at byte %d: %v; stored records stay readable", ErrWriteFailed, act.base, off, err)
			if terr := act.f.Truncate(off); terr != nil {
				s.fail(fmt.Errorf("%w; truncating the partial write also failed (%v); restart the broker to recover", err, terr))
			}
			for q, next := range saved {
				q.next = next
			}
			disp = disp[:chunkAt]
			buf = buf[:0]
			return err
		}
		act.size.Store(off + int64(len(buf)))
		s.logEnd.Store(act.base + off + int64(len(buf)))
		written = append(written, chunkOps...)
		chunkOps = chunkOps[:0]
		chunkAt = len(disp)
		clear(saved)
		buf = buf[:0]
		return nil
	}
	for bi, op := range batch {
		if op.kind != opAppend {
			if failErr = flush(); failErr != nil {
				batch = batch[bi:]
				break
			}
			if op.kind == opDeleteTopic {
				op.err = s.deleteTopic(op.topic)
			} else {
				op.err = s.raiseQueueBase(op.topic, op.queue, op.next)
			}
			close(op.done)
			continue
		}
		if p := s.failed.Load(); p != nil {
			failErr = *p
			batch = batch[bi:]
			break
		}
		if act.size.Load()+int64(len(buf))+op.bytes > s.cfg.SegmentBytes {
			if failErr = flush(); failErr == nil {
				var next *segment
				if next, failErr = s.roll(act); failErr == nil {
					act = next
				}
			}
			if failErr != nil {
				batch = batch[bi:]
				break
			}
		}
		op.res = make([]AppendResult, len(op.recs))
		for i, rec := range op.recs {
			h := &op.hdrs[i]
			q := s.queue(h.Topic, h.QueueID, true)
			if _, ok := saved[q]; !ok {
				saved[q] = q.next
			}
			qoff := q.next
			q.next++
			pos := act.base + act.size.Load() + int64(len(buf))
			start := len(buf)
			buf = append(buf, rec...)
			if err := message.PatchAppendFields(buf[start:], qoff, pos, ts); err != nil {
				panic(fmt.Sprintf("store: patch validated record: %v", err)) // ParseRecordHeader accepted it
			}
			buf = binary.BigEndian.AppendUint32(buf, crc32c(buf[start:]))
			h.QueueOffset, h.CommitLogOffset, h.StoreTimestamp = qoff, pos, ts
			op.res[i] = AppendResult{CommitLogOffset: pos, QueueOffset: qoff, StoreTimestamp: ts, Size: h.TotalSize}
			disp = append(disp, pendingDispatch{seg: act, entry: entryFromHeader(pos, h)})
		}
		chunkOps = append(chunkOps, op)
		if len(buf) >= maxBatchBytes {
			if failErr = flush(); failErr != nil {
				batch = batch[bi+1:]
				break
			}
		}
	}
	if failErr == nil {
		if failErr = flush(); failErr != nil {
			batch = nil
		}
	}
	if failErr != nil {
		// The unflushed chunk's ops fail with the rest.
		for q, next := range saved {
			q.next = next
		}
		disp = disp[:chunkAt]
		batch = append(chunkOps, batch...)
	}
	if cap(buf) <= 2*maxBatchBytes {
		s.wbuf = buf[:0]
	}
	if len(written) > 0 && s.cfg.FlushMode == FlushSync {
		if err := s.syncFile(act.f); err != nil {
			err = fmt.Errorf("%w: fsync segment %d: %v; restart the broker to recover", ErrWriteFailed, act.base, err)
			s.fail(err)
			for _, op := range written {
				op.res, op.err = nil, err
				close(op.done)
			}
			written = nil
			disp = nil
		}
	}
	s.lastStoreTs = ts
	if len(disp) > 0 {
		s.idxMu.Lock()
		for i := range disp {
			d := &disp[i]
			s.idxPending[d.seg.base] = appendIndexEntry(s.idxPending[d.seg.base], &d.entry)
		}
		s.idxMu.Unlock()
		for i := range disp {
			s.dispatch(disp[i].seg, &disp[i].entry)
		}
	}
	for _, op := range written {
		close(op.done)
	}
	if failErr != nil {
		for _, op := range batch {
			if op.kind == opAppend {
				op.res, op.err = nil, failErr
			} else {
				op.err = failErr
			}
			close(op.done)
		}
	}
}

func (s *Store) fail(err error) {
	s.failed.CompareAndSwap(nil, &err)
}

// roll seals the active segment (fsync, then listeners are told) and starts the next one.
func (s *Store) roll(act *segment) (*segment, error) {
	if err := s.syncFile(act.f); err != nil {
		err = fmt.Errorf("%w: fsync segment %d before sealing: %v; restart the broker to recover", ErrWriteFailed, act.base, err)
		s.fail(err)
		return nil, err
	}
	next, err := s.createSegment(act.base + act.size.Load())
	if err != nil {
		return nil, fmt.Errorf("%w: %v; check disk space and permissions of %s", ErrWriteFailed, err, s.logDir)
	}
	s.segMu.Lock()
	act.sealed = true
	s.segments = append(s.segments, next)
	s.segMu.Unlock()
	s.logEnd.Store(next.base + segmentHeaderBytes)
	s.hookMu.Lock()
	s.sealQueue = append(s.sealQueue, act.info())
	s.hookMu.Unlock()
	select {
	case s.sealWake <- struct{}{}:
	default:
	}
	return next, nil
}

// rollIfOld seals the active segment if it holds records older than SealAfter.
func (s *Store) rollIfOld() {
	act := s.activeSegment()
	first := act.firstTime.Load()
	if s.cfg.SealAfter <= 0 || act.size.Load() <= segmentHeaderBytes || first == 0 ||
		nowMillis()-first < s.cfg.SealAfter.Milliseconds() || s.failed.Load() != nil {
		return
	}
	_, _ = s.roll(act) // a failure is retried on the next tick and reported by appends
}
