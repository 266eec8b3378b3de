package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/stratamq/strata/broker/message"
)

// Replication support. A master ships its commit log as it stored it (ReadLog); a follower
// writes the same bytes at the same positions (AppendReplicated), segment headers included,
// so its segments roll where the master's did, and indexes them through indexRecord like any
// append. The store refuses local appends while it is a follower (SetFollower), so that only
// one writer assigns offsets. TruncateTo drops a divergent tail; BeginEpoch and EpochHistory
// (epochs.go) keep which epoch wrote which part of the log.

var (
	// ErrFollower refuses a local Append while the store follows a master.
	ErrFollower = errors.New("store is a replication follower: local appends are refused; send to the group's master")
	// ErrNotFollower refuses AppendReplicated and TruncateTo on a store that is not in follower
	// mode (SetFollower(ctx, true)).
	ErrNotFollower = errors.New("store is not in follower mode: call SetFollower(ctx, true) before replicating into it")
	// ErrReplicaGap refuses replicated bytes that do not start at the local log end.
	ErrReplicaGap = errors.New("replicated bytes do not start at the local commit-log end")
	// ErrLogTrimmed is returned by ReadLog for a position below the oldest local segment: the
	// bytes are no longer on local disk (retention removed them).
	ErrLogTrimmed = errors.New("commit-log position is below the oldest local segment")
)

// EndOffset is the end of the written commit log: the position the next record (or, right
// after a roll, the next segment's first record) is written at. Under FlushSync the bytes
// below it that an append or AppendReplicated has answered for are fsynced; under FlushAsync
// they are written. A follower resumes replication from here.
func (s *Store) EndOffset() int64 { return s.logEnd.Load() }

// IsFollower reports whether the store is in follower mode.
func (s *Store) IsFollower() bool { return s.follower.Load() }

// SetFollower switches follower mode, in order with appends: once it returns with on set, no
// local Append is written until it is switched off again (they fail with ErrFollower), the
// store does not seal segments by age on its own (segments roll where the master's do), and
// AppendReplicated and TruncateTo are allowed. A promoted follower calls SetFollower(ctx,
// false) and then BeginEpoch before it accepts writes.
func (s *Store) SetFollower(ctx context.Context, on bool) error {
	op := &writeOp{kind: opSetFollower, done: make(chan struct{})}
	if on {
		op.next = 1
	}
	return s.runControl(ctx, op)
}

// WaitLogEnd blocks until EndOffset() is above pos and returns it, or until ctx ends (then
// it returns the current end and ctx's error) or the store closes (ErrClosed). It wakes on
// the write, so a master ships records without polling.
func (s *Store) WaitLogEnd(ctx context.Context, pos int64) (int64, error) {
	for {
		s.endMu.Lock()
		end := s.logEnd.Load()
		if end > pos {
			s.endMu.Unlock()
			return end, nil
		}
		if s.endCh == nil {
			s.endCh = make(chan struct{})
		}
		ch := s.endCh
		s.endMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return s.logEnd.Load(), ctx.Err()
		case <-s.stop:
			return s.logEnd.Load(), ErrClosed
		}
	}
}

// notifyEnd wakes WaitLogEnd callers after logEnd moved.
func (s *Store) notifyEnd() {
	s.endMu.Lock()
	if s.endCh != nil {
		close(s.endCh)
		s.endCh = nil
	}
	s.endMu.Unlock()
}

// ReadLog returns the commit log's bytes from position pos as stored: whole frames (record
// and CRC32C trailer), preceded by the 16-byte segment header when pos is a segment's base,
// up to maxBytes but at least one frame, never past the end of the segment that holds pos.
// It reads the active segment too, up to EndOffset(). At EndOffset() it returns no bytes.
// pos must be a frame boundary (a record's position, a segment's base, or the position
// right after a segment header); anything else is an error, as is a position below the oldest
// local segment (ErrLogTrimmed) or past the end.
func (s *Store) ReadLog(pos int64, maxBytes int) ([]byte, error) {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	if pos < s.segments[0].base {
		return nil, fmt.Errorf("read log at %d: %w %d; the bytes must come from the bucket", pos, ErrLogTrimmed, s.segments[0].base)
	}
	g, err := s.segmentForLocked(pos)
	if err != nil {
		return nil, fmt.Errorf("read log at %d: %w", pos, err)
	}
	end := g.base + g.size.Load()
	if pos >= end {
		if pos > end {
			return nil, fmt.Errorf("read log at %d: %w: the log ends at %d", pos, ErrOffsetNotFound, end)
		}
		return nil, nil
	}
	var out []byte
	p := pos
	if pos == g.base {
		out = make([]byte, segmentHeaderBytes)
		if _, err := g.f.ReadAt(out, 0); err != nil {
			return nil, fmt.Errorf("read log at %d: segment header: %w", pos, err)
		}
		p += segmentHeaderBytes
	} else if pos < g.base+segmentHeaderBytes {
		return nil, fmt.Errorf("read log at %d: %w: inside the header of segment %d", pos, ErrOffsetNotFound, g.base)
	}
	if p == end {
		return out, nil
	}
	want := min(max(int64(maxBytes-len(out)), 4), end-p) // at least the first frame's size

	buf := make([]byte, want)
	if _, err := g.f.ReadAt(buf, p-g.base); err != nil {
		return nil, fmt.Errorf("read log at %d: %w", p, err)
	}
	n := 0 // valid frames in buf[:n]
	for n+4 <= len(buf) {
		sz := int(int32(binary.BigEndian.Uint32(buf[n:])))
		if sz < message.MinRecordBytes || sz > s.maxRecord || p+int64(n+sz+frameTrailerBytes) > end {
			return nil, fmt.Errorf("read log at %d: %w: no frame at %d", pos, ErrCorrupt, p+int64(n))
		}
		if n+sz+frameTrailerBytes > len(buf) {
			if n > 0 {
				break
			}
			buf = make([]byte, sz+frameTrailerBytes) // the first frame is larger than max
			if _, err := g.f.ReadAt(buf, p-g.base); err != nil {
				return nil, fmt.Errorf("read log at %d: %w", p, err)
			}
		}
		if err := checkShippedFrame(buf[n:n+sz+frameTrailerBytes], p+int64(n)); err != nil {
			return nil, fmt.Errorf("read log at %d: %w", pos, err)
		}
		n += sz + frameTrailerBytes
	}
	if n == 0 {
		return nil, fmt.Errorf("read log at %d: %w: torn frame at %d", pos, ErrCorrupt, p)
	}
	return append(out, buf[:n]...), nil
}

// replPiece is one parsed part of replicated bytes: a segment header (roll) or a frame.
type replPiece struct {
	off    int // in raw
	header bool
	h      message.RecordHeader
}

// AppendReplicated stores raw — bytes ReadLog returned on the master — at commit-log position
// pos, which must be EndOffset(). Every frame is checked (size, CRC32C, record layout, and
// that the record names its own position) before anything is written; a segment header in raw
// (the master rolled there) makes the follower roll at the same position. The records are
// indexed through the path appends use (consume queues, key index), and it returns once the
// flush policy is met (after an fsync under FlushSync). The store must be in follower mode.
func (s *Store) AppendReplicated(pos int64, raw []byte) error {
	wait, err := s.AppendReplicatedAsync(pos, raw)
	if err != nil {
		return err
	}
	return wait()
}

// AppendReplicatedAsync is AppendReplicated that does not wait: it checks raw, queues it
// behind everything submitted before and returns a function that waits for the outcome. Calls
// from one goroutine are written in call order, so a follower keeps several chunks in flight
// (each at the end of the previous one; if one fails, the later ones fail with
// ErrReplicaGap). raw must not change until the wait function returns.
func (s *Store) AppendReplicatedAsync(pos int64, raw []byte) (func() error, error) {
	if len(raw) == 0 {
		return func() error { return nil }, nil
	}
	pieces, err := parseReplicated(pos, raw, s.maxRecord)
	if err != nil {
		return nil, fmt.Errorf("append replicated bytes at %d: %w", pos, err)
	}
	op := &writeOp{kind: opReplicate, next: pos, raw: raw, pieces: pieces, done: make(chan struct{})}
	if err := s.submit(context.Background(), op); err != nil {
		return nil, err
	}
	return func() error {
		<-op.done
		return op.err
	}, nil
}

// parseReplicated validates raw as stored at pos: segment headers naming their own position
// and valid frames, back to back, nothing left over.
func parseReplicated(pos int64, raw []byte, maxRecord int) ([]replPiece, error) {
	var out []replPiece
	for i := 0; i < len(raw); {
		p := pos + int64(i)
		if len(raw)-i >= segmentHeaderBytes && [4]byte(raw[i:i+4]) == segmentMagic {
			if err := decodeSegmentHeader(raw[i:i+segmentHeaderBytes], p); err != nil {
				return nil, fmt.Errorf("segment header at %d: %w", p, err)
			}
			out = append(out, replPiece{off: i, header: true})
			i += segmentHeaderBytes
			continue
		}
		h, err := checkFrame(raw[i:], p, maxRecord)
		if err != nil {
			return nil, fmt.Errorf("%w (replicated bytes must be whole frames as the master stored them)", err)
		}
		out = append(out, replPiece{off: i, h: h})
		i += int(h.TotalSize) + frameTrailerBytes
	}
	return out, nil
}

// commitReplicated writes a validated replicated op on the writer goroutine and hands it to
// the completer, which fsyncs (FlushSync), indexes and answers it.
func (s *Store) commitReplicated(op *writeOp) {
	finish := func(err error) {
		op.err = err
		close(op.done)
	}
	if p := s.failed.Load(); p != nil {
		finish(*p)
		return
	}
	if !s.follower.Load() {
		finish(ErrNotFollower)
		return
	}
	if end := s.logEnd.Load(); op.next != end {
		finish(fmt.Errorf("append replicated bytes at %d: %w %d; truncate or resume from there", op.next, ErrReplicaGap, end))
		return
	}
	act := s.activeSegment()
	var (
		recs  = make([]logRecord, 0, len(op.pieces))
		from  = 0 // raw[from:cut] is not yet written
		dirty bool
	)
	write := func(cut int) error {
		if cut == from {
			return nil
		}
		off := act.size.Load()
		n, err := s.writeAt(act.f, op.raw[from:cut], off)
		if err == nil && n != cut-from {
			err = fmt.Errorf("short write: %d of %d bytes", n, cut-from)
		}
		if err != nil {
			err = fmt.Errorf("%w: replicated bytes, segment %d at byte %d: %v", ErrWriteFailed, act.base, off, err)
			if terr := act.f.Truncate(off); terr != nil {
				s.fail(fmt.Errorf("%w; truncating the partial write also failed (%v); restart the broker to recover", err, terr))
			}
			return err
		}
		act.size.Store(off + int64(cut-from))
		s.logEnd.Store(act.base + act.size.Load())
		from, dirty = cut, true
		return nil
	}
	var failErr error
	for i := range op.pieces {
		pc := &op.pieces[i]
		if pc.header {
			if failErr = write(pc.off); failErr != nil {
				break
			}
			next, err := s.roll(act)
			if err != nil {
				failErr = err
				break
			}
			act, dirty = next, false
			from = pc.off + segmentHeaderBytes
			continue
		}
		h := &pc.h
		pos := op.next + int64(pc.off)
		q := s.queueAt(h.Topic, h.QueueID, pos)
		q.next = max(q.next, h.QueueOffset+1)
		if act.firstTime.Load() == 0 {
			act.firstTime.Store(h.StoreTimestamp)
		}
		act.lastTime.Store(max(act.lastTime.Load(), h.StoreTimestamp))
		s.lastStoreTs = max(s.lastStoreTs, h.StoreTimestamp)
		recs = append(recs, logRecord{pos: pos, h: h, tag: message.TagHashCode(h.Tags), q: q})
	}
	if failErr == nil {
		failErr = write(len(op.raw))
	}
	s.notifyEnd()
	if failErr != nil {
		// What was written stays (it is valid and at the right place); index it, then report.
		op.err = failErr
	}
	c := completion{ops: []*writeOp{op}, recs: trimWritten(recs, s.logEnd.Load())}
	if dirty {
		c.seg = act
	}
	s.completions <- c
}

// trimWritten keeps the records that end at or below end (written).
func trimWritten(recs []logRecord, end int64) []logRecord {
	n := len(recs)
	for n > 0 && recs[n-1].pos+int64(recs[n-1].h.TotalSize)+frameTrailerBytes > end {
		n--
	}
	return recs[:n]
}

// TruncateTo drops the commit log from position pos on — the tail a deposed master wrote
// under an epoch the new master does not have — with every consume-queue entry and key-index
// entry of the dropped records, and the epoch-history entries that start at or after pos. pos
// must be a frame boundary at or above the oldest local segment's first record; at or past
// EndOffset() only the epoch history is trimmed. The store must be in follower mode.
//
// It is durable across a crash at any point: the index checkpoint is first pointed at a
// state at or below pos (the newest checkpoint, or the one BeginEpoch saved, whose indexed end
// is at or below pos; if none is, the checkpoint is removed, so that a restart rebuilds the
// index from the log), then the log is cut, then the epoch history; the in-memory state is
// then recovered from that checkpoint and the log tail, as Open does. Readers wait while it
// runs. The dropped segments' seal notifications are not retracted: only a master offloads.
func (s *Store) TruncateTo(pos int64) error {
	return s.runControl(context.Background(), &writeOp{kind: opTruncate, next: pos, done: make(chan struct{})})
}

// recordPhysicalOffset is where a V1 record holds its PHYSICALOFFSET (PROTOCOL.md §4.2).
const recordPhysicalOffset = 28

// checkShippedFrame is the master's check of a frame it ships: its CRC32C and that the record
// names pos as its position, without parsing the header (the follower parses it as it stores
// it).
func checkShippedFrame(b []byte, pos int64) error {
	n := len(b) - frameTrailerBytes
	if crc32c(b[:n]) != binary.BigEndian.Uint32(b[n:]) {
		return fmt.Errorf("%w: checksum mismatch at %d", ErrCorrupt, pos)
	}
	if got := int64(binary.BigEndian.Uint64(b[recordPhysicalOffset:])); got != pos {
		return fmt.Errorf("%w: record at %d names position %d", ErrCorrupt, pos, got)
	}
	return nil
}
