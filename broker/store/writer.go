package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"

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
	opReplicate   // AppendReplicated: raw at position next
	opSetFollower // next = 1: on
	opBeginEpoch  // next = epoch
	opTruncate    // next = position
	opReset       // next = new base
)

type writeOp struct {
	kind  opKind
	recs  [][]byte
	meta  []recordMeta
	keys  []uint64 // key hashes of all records, sliced by recordMeta
	bytes int64    // framed size of recs
	topic string
	queue int32 // opQueueBase
	next  int64 // opQueueBase, and the argument of the replication ops

	raw    []byte      // opReplicate
	pieces []replPiece // opReplicate: raw parsed

	res      []AppendResult
	err      error
	done     chan struct{}               // closed when answered, unless callback is set
	callback func([]AppendResult, error) // AppendAsync's
}

// recordMeta is what the appender works out about a record before the writer sees it, so
// that the single writer goroutine does only what needs its order.
type recordMeta struct {
	h      message.RecordHeader
	tag    int64
	q      *consumeQueue // re-resolved by the writer if its topic was deleted meanwhile
	k0, k1 int32         // op.keys[k0:k1] are the record's key hashes
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
	return s.AppendVia(ctx, nil, recs...)
}

// QueueRef remembers the consume queue an appender writes to, so that its next appends skip
// the store's lookup of the queue by topic and queue id (a map of every queue, which misses
// the CPU caches once there are thousands). The zero QueueRef is ready to use; it may be
// shared by concurrent appenders to the same queue of one Store.
type QueueRef struct{ q atomic.Pointer[consumeQueue] }

// AppendVia is Append with ref, when not nil, remembering the queue of the records: a record
// of that queue uses it instead of the lookup. A ref whose topic was deleted is looked up
// again.
func (s *Store) AppendVia(ctx context.Context, ref *QueueRef, recs ...[]byte) ([]AppendResult, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	op, err := s.newAppendOp(ref, recs)
	if err != nil {
		return nil, err
	}
	op.done = make(chan struct{})
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

// AppendAsync is AppendVia without the wait. If it refuses recs it returns the error and
// never calls done; otherwise it returns nil once the records are queued for the writer and
// later calls done exactly once with what AppendVia would have returned. done runs on a
// goroutine of the store and holds up the answers of later appends while it runs, so it must
// not block. The store keeps no reference to recs once it calls done, so the caller may
// reuse them from then on. A sender with many appends in flight (a connection's pipelined
// sends) saves a goroutine parked on each. Queueing waits while the writer is behind, which
// pushes back on the caller.
func (s *Store) AppendAsync(ref *QueueRef, recs [][]byte, done func([]AppendResult, error)) error {
	if len(recs) == 0 {
		done(nil, nil)
		return nil
	}
	op, err := s.newAppendOp(ref, recs)
	if err != nil {
		return err
	}
	op.callback = done
	return s.submit(context.Background(), op)
}

// newAppendOp validates recs and works out what the writer needs of each record.
func (s *Store) newAppendOp(ref *QueueRef, recs [][]byte) (*writeOp, error) {
	if s.follower.Load() {
		return nil, ErrFollower
	}
	op := &writeOp{kind: opAppend, recs: recs, meta: make([]recordMeta, len(recs))}
	for i, rec := range recs {
		if len(rec) > s.cfg.MaxMessageBytes {
			return nil, fmt.Errorf("append record %d: %w: %d bytes, limit %d", i, ErrMessageTooLarge, len(rec), s.cfg.MaxMessageBytes)
		}
		m := &op.meta[i]
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
		m.h = h
		m.tag = message.TagHashCode(h.Tags)
		if i > 0 && op.meta[i-1].h.QueueID == h.QueueID && op.meta[i-1].h.Topic == h.Topic {
			m.q = op.meta[i-1].q
		} else if q := ref.queue(h.Topic, h.QueueID); q != nil {
			m.q = q
		} else {
			m.q = s.queue(h.Topic, h.QueueID, true)
			ref.keep(m.q)
		}
		m.k0 = int32(len(op.keys))
		op.keys = appendKeyHashes(op.keys, &m.h)
		m.k1 = int32(len(op.keys))
		op.bytes += int64(len(rec) + frameTrailerBytes)
	}
	if op.bytes > s.cfg.SegmentBytes-segmentHeaderBytes {
		return nil, fmt.Errorf("append %d records: %w: %d bytes do not fit in one segment of %d", len(recs), ErrMessageTooLarge, op.bytes, s.cfg.SegmentBytes)
	}
	return op, nil
}

// finish answers an op: its waiter, or its callback (AppendAsync).
func (op *writeOp) finish() {
	if op.callback != nil {
		op.callback(op.res, op.err)
		return
	}
	close(op.done)
}

// queue returns the remembered queue if it is (topic, id) and still live, else nil.
func (r *QueueRef) queue(topic string, id int32) *consumeQueue {
	if r == nil {
		return nil
	}
	q := r.q.Load()
	if q == nil || q.id != id || q.topic != topic || q.removed.Load() {
		return nil
	}
	return q
}

func (r *QueueRef) keep(q *consumeQueue) {
	if r != nil {
		r.q.Store(q)
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
	defer close(s.completions) // the completer answers what is in flight, then exits
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

// completion is a run of appends the writer has written, handed to the completer goroutine,
// which fsyncs them under FlushSync, indexes them — making them visible — and answers them,
// while the writer goes on writing the next run. Under FlushSync one fsync covers every run
// written while the previous fsync ran: group commit with the fsyncs back to back.
type completion struct {
	ops     []*writeOp
	recs    []logRecord
	seg     *segment // to fsync under FlushSync (an earlier segment was fsynced when it sealed)
	barrier chan struct{}
}

// completeLoop is the completer goroutine.
func (s *Store) completeLoop() {
	defer s.wg.Done()
	var pending []completion
	for c := range s.completions {
		pending = append(pending[:0], c)
		for more := true; more; { // take everything already written
			select {
			case c, ok := <-s.completions:
				if !ok {
					more = false
					break
				}
				pending = append(pending, c)
			default:
				more = false
			}
		}
		s.complete(pending)
		clear(pending)
	}
}

func (s *Store) complete(cs []completion) {
	var failErr error
	if p := s.failed.Load(); p != nil {
		failErr = *p
	} else if s.cfg.FlushMode == FlushSync {
		var synced *segment
		for i := len(cs) - 1; i >= 0 && failErr == nil; i-- {
			if g := cs[i].seg; g != nil && g != synced {
				if synced != nil && g.base < synced.base {
					continue // sealed: fsynced by the roll
				}
				if err := s.syncFile(g.f); err != nil {
					failErr = fmt.Errorf("%w: fsync segment %d: %v; restart the broker to recover", ErrWriteFailed, g.base, err)
					s.fail(failErr)
				}
				synced = g
			}
		}
	}
	for _, c := range cs {
		if failErr == nil && len(c.recs) > 0 {
			s.indexRecords(c.recs)
		}
		for _, op := range c.ops {
			if failErr != nil {
				op.res, op.err = nil, failErr
			}
			op.finish()
		}
		if c.barrier != nil {
			close(c.barrier)
		}
	}
}

// drainCompletions waits until the completer has answered every run handed to it, so a
// control op sees every earlier append indexed.
func (s *Store) drainCompletions() {
	b := make(chan struct{})
	s.completions <- completion{barrier: b}
	<-b
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

// commit runs a batch of ops in order: runs of appends are written together, control ops
// between them run once the appends before them are indexed.
func (s *Store) commit(batch []*writeOp) {
	start := 0
	for i, op := range batch {
		if op.kind == opAppend {
			continue
		}
		s.commitAppends(batch[start:i])
		start = i + 1
		if op.kind == opReplicate {
			s.commitReplicated(op) // answered by the completer
			continue
		}
		s.drainCompletions()
		switch op.kind {
		case opDeleteTopic:
			op.err = s.deleteTopic(op.topic)
		case opQueueBase:
			op.err = s.raiseQueueBase(op.topic, op.queue, op.next)
		case opSetFollower:
			s.follower.Store(op.next == 1)
			s.leading.Store(op.next == 0)
		case opBeginEpoch:
			op.err = s.beginEpoch(op.next)
		case opTruncate:
			op.err = s.truncateTo(op.next)
		case opReset:
			op.err = s.resetTo(op.next)
		}
		close(op.done)
	}
	s.commitAppends(batch[start:])
}

// commitAppends writes appends with as few writes as possible (one per segment touched, or
// per maxBatchBytes) and hands what it wrote to the completer, which fsyncs it under
// FlushSync, indexes the records — which makes them visible — and answers the ops.
func (s *Store) commitAppends(ops []*writeOp) {
	if len(ops) == 0 {
		return
	}
	if s.follower.Load() {
		for _, op := range ops {
			op.res, op.err = nil, ErrFollower
			op.finish()
		}
		return
	}
	var (
		act      = s.activeSegment()
		buf      = s.wbuf[:0]
		recs     = s.recBuf[:0]
		ts       = max(nowMillis(), s.lastStoreTs)
		encoded  int // ops[:encoded] are in buf or written
		written  int // ops[:written] are written
		recChunk int // recs[recChunk:] are not yet written
		dirty    bool
		failErr  error
	)
	write := func() error {
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
			for _, r := range recs[recChunk:] { // give the offsets back
				r.q.next = min(r.q.next, r.h.QueueOffset)
			}
			recs, buf = recs[:recChunk], buf[:0]
			return err
		}
		act.size.Store(off + int64(len(buf)))
		s.logEnd.Store(act.base + off + int64(len(buf)))
		s.notifyEnd()
		if act.firstTime.Load() == 0 {
			act.firstTime.Store(ts)
		}
		act.lastTime.Store(ts)
		written, recChunk, dirty, buf = encoded, len(recs), true, buf[:0]
		return nil
	}
	for _, op := range ops {
		if p := s.failed.Load(); p != nil {
			failErr = *p
			break
		}
		if act.size.Load()+int64(len(buf))+op.bytes > s.cfg.SegmentBytes {
			if failErr = write(); failErr != nil {
				break
			}
			next, err := s.roll(act) // fsyncs act: what is written to it is durable
			if err != nil {
				failErr = err
				break
			}
			act, dirty = next, false
		}
		op.res = make([]AppendResult, len(op.recs))
		for i, rec := range op.recs {
			m := &op.meta[i]
			h, q := &m.h, m.q
			if q.removed.Load() { // its topic was deleted after the appender looked it up
				q = s.queue(h.Topic, h.QueueID, true)
				m.q = q
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
			recs = append(recs, logRecord{pos: pos, h: h, tag: m.tag, q: q, keys: op.keys[m.k0:m.k1:m.k1], hashed: true})
		}
		encoded++
		if len(buf) >= maxBatchBytes {
			if failErr = write(); failErr != nil {
				break
			}
		}
	}
	if failErr == nil {
		failErr = write()
	}
	if cap(buf) <= 2*maxBatchBytes {
		s.wbuf = buf[:0]
	}
	s.lastStoreTs = ts
	for _, op := range ops[written:] { // never written: answer now
		op.res, op.err = nil, failErr
		op.finish()
	}
	if written == 0 {
		s.recBuf = recs[:0]
		return
	}
	c := completion{ops: append([]*writeOp(nil), ops[:written]...), recs: recs}
	if dirty {
		c.seg = act
	}
	s.recBuf = nil // owned by the completion now
	s.completions <- c
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
	if err := s.writeSeal(act); err != nil {
		err = fmt.Errorf("%w: %v; check disk space and permissions of %s", ErrWriteFailed, err, s.cfg.Dir)
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
	s.notifyEnd()
	s.switchSegment(next.base)
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
	if act := s.activeSegment(); s.ageRollDue(act) {
		_, _ = s.roll(act) // a failure is retried on the next tick and reported by appends
	}
}

// ageRollDue reports whether act is to be sealed for its age (SealAfter).
func (s *Store) ageRollDue(act *segment) bool {
	first := act.firstTime.Load()
	return s.cfg.SealAfter > 0 && act.size.Load() > segmentHeaderBytes && first != 0 &&
		nowMillis()-first >= s.cfg.SealAfter.Milliseconds() && s.failed.Load() == nil && s.leading.Load()
}
