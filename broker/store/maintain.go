package store

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// maintainLoop runs the periodic work: fsync under FlushAsync, index checkpoints, age-based
// sealing and local retention.
func (s *Store) maintainLoop() {
	defer s.wg.Done()
	tick := min(s.cfg.FlushInterval, s.cfg.CheckpointInterval)
	if s.cfg.SealAfter > 0 {
		tick = min(tick, max(s.cfg.SealAfter/4, time.Millisecond))
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	lastFlush, lastCheckpoint := time.Now(), time.Now() // Open has just checkpointed
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.truncMu.RLock() // TruncateTo replaces the segments and the index
			lastFlush, lastCheckpoint = s.maintain(now, lastFlush, lastCheckpoint)
			s.truncMu.RUnlock()
		}
	}
}

// maintain is one tick of maintainLoop; it returns the new times of the last flush and
// checkpoint.
func (s *Store) maintain(now, lastFlush, lastCheckpoint time.Time) (time.Time, time.Time) {
	if s.failed.Load() != nil {
		return lastFlush, lastCheckpoint
	}
	if s.cfg.FlushMode == FlushAsync && now.Sub(lastFlush) >= s.cfg.FlushInterval {
		lastFlush = now
		if err := s.syncFile(s.activeSegment().f); err != nil {
			s.fail(fmt.Errorf("%w: fsync: %v; restart the broker to recover", ErrWriteFailed, err))
			slog.Error("commit log fsync failed; appends are refused", "dir", s.cfg.Dir, "err", err)
			return lastFlush, lastCheckpoint
		}
	}
	if now.Sub(lastCheckpoint) >= s.cfg.CheckpointInterval {
		lastCheckpoint = now
		if err := s.checkpointNow(false); err != nil {
			err = fmt.Errorf("%w: index checkpoint: %v; restart the broker to recover", ErrWriteFailed, err)
			s.fail(err)
			slog.Error("index checkpoint failed; appends are refused", "dir", s.cfg.Dir, "err", err)
			return lastFlush, lastCheckpoint
		}
	}
	if s.cfg.SealAfter > 0 {
		select {
		case s.rollCh <- struct{}{}:
		default:
		}
	}
	s.applyRetention()
	return lastFlush, lastCheckpoint
}

// applyRetention deletes the oldest sealed segments while the policy allows it.
func (s *Store) applyRetention() {
	s.hookMu.Lock()
	allow := s.retention
	s.hookMu.Unlock()
	if allow == nil {
		return
	}
	for {
		s.segMu.RLock()
		g := s.segments[0]
		sealed := g.sealed && len(s.segments) > 1
		s.segMu.RUnlock()
		if !sealed || !allow(g.info()) {
			return
		}
		if err := s.deleteSegment(g); err != nil {
			slog.Warn("delete sealed segment failed; will retry", "segment", g.base, "err", err)
			return
		}
	}
}

// deleteSegment removes the oldest segment with its seal file, consume-queue files and the
// key index files that only point below the new oldest segment; the queues' oldest visible
// offsets move up, so reads below them report offset-too-small.
func (s *Store) deleteSegment(g *segment) error {
	s.segMu.Lock()
	s.segments = s.segments[1:]
	newMin := s.segments[0].base
	s.minPos.Store(newMin)
	s.segMu.Unlock()
	g.f.Close()
	if err := os.Remove(g.path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove segment %d: %w", g.base, err)
	}
	// The index writer reads the file lists under the index mutex: change them under it too.
	s.idx.mu.Lock()
	firstLive, err := s.dropCQFilesBelow(newMin)
	if err == nil {
		err = s.idx.keys.dropBelow(newMin)
	}
	s.idx.mu.Unlock()
	if err != nil {
		return fmt.Errorf("remove index files below segment %d: %w", newMin, err)
	}
	if err := os.Remove(s.sealPath(g.base)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove seal of segment %d: %w", g.base, err)
	}
	s.qmu.RLock()
	qs := make([]*consumeQueue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.qmu.RUnlock()
	for _, q := range qs {
		if err := s.trimQueue(q, newMin, firstLive); err != nil {
			return fmt.Errorf("trim %s/%d below segment %d: %w", q.topic, q.id, newMin, err)
		}
	}
	if err := syncDir(s.logDir); err != nil {
		return err
	}
	return syncDir(filepath.Join(s.cfg.Dir, indexDir))
}

// notifyLoop tells seal listeners about sealed segments, in order, off the writer goroutine.
func (s *Store) notifyLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.sealWake:
		}
		for {
			s.hookMu.Lock()
			if len(s.sealQueue) == 0 {
				s.hookMu.Unlock()
				break
			}
			seg := s.sealQueue[0]
			s.sealQueue = s.sealQueue[1:]
			ls := slices.Clone(s.listeners)
			s.hookMu.Unlock()
			for _, fn := range ls {
				fn(seg)
			}
		}
	}
}
