package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/stratamq/strata/broker/message"
)

// Truncation of the log tail (TruncateTo). The index is derived from the log by replaying it
// from a checkpoint, so rolling the index back is recovery from a checkpoint that covers no
// dropped record: the newest checkpoint slot, or the one saved when the current epoch began
// (index/rollback), whose indexed end is at or below the cut. Such a checkpoint stays valid
// while its files exist, because index files only grow and Open truncates them to the
// lengths it names. Without one, the index is rebuilt from the whole log.

const rollbackFile = "rollback"

// saveRollbackCheckpoint takes a checkpoint and keeps a copy as index/rollback (BeginEpoch,
// on the writer goroutine with every append indexed).
func (s *Store) saveRollbackCheckpoint() error {
	if err := s.checkpointNow(false); err != nil {
		return fmt.Errorf("checkpoint the index: %w", err)
	}
	c := s.lastCheckpoint.Load()
	if c == nil || s.indexCorrupt.Load() {
		return nil // the index is marked corrupt: the next open rebuilds it anyway
	}
	return s.writeFileAtomic(s.indexPath(rollbackFile), encodeCheckpoint(c))
}

// writeFileAtomic replaces path with b: temporary file, fsync, rename, directory fsync.
func (s *Store) writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := s.syncFile(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// rollbackBase returns the newest saved checkpoint whose indexed end is at or below pos.
func (s *Store) rollbackBase(pos int64) (checkpoint, bool) {
	var cands []checkpoint
	if b, err := os.ReadFile(s.indexPath(checkpointFile)); err == nil {
		for off := 0; off+checkpointSlotBytes <= len(b) && off <= checkpointSlotBytes; off += checkpointSlotBytes {
			if c, err := decodeCheckpoint(b[off : off+checkpointSlotBytes]); err == nil {
				cands = append(cands, c)
			}
		}
	}
	if b, err := os.ReadFile(s.indexPath(rollbackFile)); err == nil {
		if c, err := decodeCheckpoint(b); err == nil {
			cands = append(cands, c)
		}
	}
	var best checkpoint
	ok := false
	for _, c := range cands {
		if c.indexedEnd <= pos && (!ok || c.indexedEnd > best.indexedEnd) {
			best, ok = c, true
		}
	}
	return best, ok
}

// truncateTo runs on the writer goroutine with every earlier append indexed.
func (s *Store) truncateTo(pos int64) error {
	if !s.follower.Load() {
		return ErrNotFollower
	}
	if p := s.failed.Load(); p != nil {
		return *p
	}
	s.truncMu.Lock()
	defer s.truncMu.Unlock()
	s.lowerReadLimit(pos) // what is written there next is the new master's, not confirmed yet
	end := s.logEnd.Load()
	s.segMu.RLock()
	if first := s.segments[0].base; pos == first {
		pos += segmentHeaderBytes // the first segment's header stays
	}
	s.segMu.RUnlock()
	if pos >= end {
		if err := s.trimEpochsFrom(pos, false); err != nil {
			return fmt.Errorf("truncate to %d: %w", pos, err)
		}
		return nil
	}
	keep, err := s.checkCut(pos)
	if err != nil {
		return fmt.Errorf("truncate to %d: %w", pos, err)
	}
	if err := s.cut(pos, keep); err != nil {
		err = fmt.Errorf("%w: truncate the commit log to %d: %v; restart the broker: it recovers a consistent state", ErrWriteFailed, pos, err)
		s.fail(err)
		return err
	}
	return nil
}

// checkCut checks that pos is a frame boundary in the local log and returns how many
// segments stay.
func (s *Store) checkCut(pos int64) (int, error) {
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	first := s.segments[0]
	if pos < first.base {
		return 0, fmt.Errorf("%w %d", ErrLogTrimmed, first.base)
	}
	i := len(s.segments) - 1
	for s.segments[i].base > pos {
		i--
	}
	g := s.segments[i]
	switch {
	case pos == g.base && i > 0:
		return i, nil // g and the later segments go; the previous one ends at pos
	case pos == g.base || pos == g.base+segmentHeaderBytes:
		return i + 1, nil
	}
	if pos+message.MinRecordBytes+frameTrailerBytes > g.base+g.size.Load() {
		return 0, fmt.Errorf("%w: no record starts there", ErrOffsetNotFound)
	}
	b := make([]byte, 4)
	if _, err := g.f.ReadAt(b, pos-g.base); err != nil {
		return 0, err
	}
	n := int(int32(binary.BigEndian.Uint32(b)))
	if n < message.MinRecordBytes || pos+int64(n)+frameTrailerBytes > g.base+g.size.Load() {
		return 0, fmt.Errorf("%w: no record starts there", ErrOffsetNotFound)
	}
	fb := make([]byte, n+frameTrailerBytes)
	if _, err := g.f.ReadAt(fb, pos-g.base); err != nil {
		return 0, err
	}
	if _, err := verifyFrame(fb, pos, s.maxRecord); err != nil {
		return 0, fmt.Errorf("no record starts there: %w", err)
	}
	return i + 1, nil
}

func (s *Store) truncateStep(step string) error {
	if s.truncateHook != nil {
		return s.truncateHook(step)
	}
	return nil
}

// cut does the truncation's file work and recovers the in-memory state: keep segments stay,
// the last of them is cut at pos.
func (s *Store) cut(pos int64, keep int) error {
	indexDirPath := filepath.Join(s.cfg.Dir, indexDir)
	// 1. Point the checkpoint at a state at or below pos, or remove it (rebuild at open).
	if ck, ok := s.rollbackBase(pos); ok {
		s.ckptMu.Lock()
		s.ckptSeq++
		ck.seq = s.ckptSeq
		err := s.writeCheckpointSlot(&ck)
		s.ckptMu.Unlock()
		if err != nil {
			return err
		}
	} else {
		if err := os.Remove(s.indexPath(checkpointFile)); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := syncDir(indexDirPath); err != nil {
			return err
		}
	}
	if err := s.truncateStep("checkpoint"); err != nil {
		return err
	}
	// Topic deletions made in the dropped tail did not happen in the history kept: forget
	// them before the log is cut (a crash in between leaves the tail, and a retry).
	if err := s.dropTombstonesAfter(pos); err != nil {
		return err
	}
	// 2. Close every file, drop the later segments newest first, cut the last kept one.
	s.segMu.Lock()
	segs := s.segments
	s.segMu.Unlock()
	s.closeFiles()
	for i := len(segs) - 1; i >= keep; i-- {
		if err := os.Remove(segs[i].path); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := os.Remove(s.sealPath(segs[i].base)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := syncDir(s.logDir); err != nil {
		return err
	}
	if err := s.truncateStep("segments"); err != nil {
		return err
	}
	last := segs[keep-1]
	if err := os.Remove(s.sealPath(last.base)); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := syncDir(indexDirPath); err != nil {
		return err
	}
	f, err := os.OpenFile(last.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(pos - last.base)
	if err == nil {
		err = s.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := s.truncateStep("log"); err != nil {
		return err
	}
	// 3. The epoch history: entries of the dropped records go.
	if err := s.trimEpochsFrom(pos, false); err != nil {
		return err
	}
	if err := s.truncateStep("epochs"); err != nil {
		return err
	}
	// 4. Recover the in-memory state as Open does.
	return s.reload(pos)
}

// reload recovers the in-memory state from the files, as Open does, after TruncateTo or
// ResetTo changed them (truncMu held, files closed); seal notifications of segments past end
// are dropped and waiters on the old queues look their queue up again.
func (s *Store) reload(end int64) error {
	s.qmu.Lock()
	old := s.queues
	s.queues = make(map[queueKey]*consumeQueue)
	s.deleted = make(map[string]int64)
	s.qmu.Unlock()
	s.segMu.Lock()
	s.segments = nil
	s.segMu.Unlock()
	s.initIndex()
	s.loadFirstPos = make(map[*consumeQueue]int64)
	s.recoveredRecords, s.rebuiltIndex = 0, false
	s.lastCheckpoint.Store(nil)
	if err := s.recoverAll(context.Background()); err != nil {
		return err
	}
	s.loadFirstPos = nil
	s.hookMu.Lock()
	kept := s.sealQueue[:0]
	for _, g := range s.sealQueue {
		if g.EndOffset <= end {
			kept = append(kept, g)
		}
	}
	s.sealQueue = kept
	s.hookMu.Unlock()
	for _, q := range old {
		q.removed.Store(true)
		q.mu.Lock()
		if q.waitCh != nil {
			close(q.waitCh)
			q.waitCh = nil
		}
		q.mu.Unlock()
	}
	s.notifyEnd()
	return s.checkpointNow(false)
}

// ResetTo discards the whole local log, its index and its epoch history, and starts an empty
// log whose first segment begins at base, which must be above EndOffset(). A follower whose
// log ends below the master's oldest local segment does this to continue from there (the
// records below are in the cold tier, as the master deletes only offloaded segments). The
// store must be in follower mode. A crash part way leaves a shorter log (or an empty one at
// Config.BaseOffset), from which replication resets again.
func (s *Store) ResetTo(base int64) error {
	return s.runControl(context.Background(), &writeOp{kind: opReset, next: base, done: make(chan struct{})})
}

func (s *Store) resetTo(base int64) error {
	if !s.follower.Load() {
		return ErrNotFollower
	}
	if p := s.failed.Load(); p != nil {
		return *p
	}
	if end := s.logEnd.Load(); base <= end {
		return fmt.Errorf("reset the log to %d: it is not above the local end %d; truncate instead", base, end)
	}
	s.truncMu.Lock()
	defer s.truncMu.Unlock()
	err := func() error {
		indexDirPath := filepath.Join(s.cfg.Dir, indexDir)
		if err := os.Remove(s.indexPath(checkpointFile)); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := syncDir(indexDirPath); err != nil {
			return err
		}
		s.segMu.Lock()
		segs := s.segments
		s.segMu.Unlock()
		s.closeFiles()
		for i := len(segs) - 1; i >= 0; i-- {
			if err := os.Remove(segs[i].path); err != nil && !os.IsNotExist(err) {
				return err
			}
			if err := os.Remove(s.sealPath(segs[i].base)); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		if err := syncDir(s.logDir); err != nil {
			return err
		}
		if err := s.trimEpochsFrom(-1, false); err != nil {
			return err
		}
		g, err := s.createSegment(base)
		if err != nil {
			return err
		}
		g.f.Close()
		return s.reload(base + segmentHeaderBytes)
	}()
	if err != nil {
		err = fmt.Errorf("%w: reset the log to %d: %v; restart the broker: it recovers a consistent state", ErrWriteFailed, base, err)
		s.fail(err)
	}
	return err
}

// dropTombstonesAfter rewrites the topic tombstones file without the entries whose position
// is past pos (atomically: temporary file, fsync, rename).
func (s *Store) dropTombstonesAfter(pos int64) error {
	path := filepath.Join(s.cfg.Dir, tombstonesFile)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read topic tombstones: %w", err)
	}
	if len(b) < 8 {
		return nil
	}
	out := append([]byte(nil), b[:8]...)
	dropped := false
	for r := b[8:]; len(r) >= 8; {
		n := int(binary.BigEndian.Uint32(r))
		if n < 9 || len(r) < 4+n+4 || crc32c(r[4:4+n]) != binary.BigEndian.Uint32(r[4+n:]) {
			break
		}
		if int64(binary.BigEndian.Uint64(r[4:])) > pos {
			dropped = true
		} else {
			out = append(out, r[:8+n]...)
		}
		r = r[8+n:]
	}
	if !dropped {
		return nil
	}
	return s.writeFileAtomic(path, out)
}
