package store

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
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
	var lastFlush, lastCheckpoint time.Time
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			if s.failed.Load() != nil {
				continue
			}
			if s.cfg.FlushMode == FlushAsync && now.Sub(lastFlush) >= s.cfg.FlushInterval {
				lastFlush = now
				if err := s.syncFile(s.activeSegment().f); err != nil {
					s.fail(fmt.Errorf("%w: fsync: %v; restart the broker to recover", ErrWriteFailed, err))
					slog.Error("commit log fsync failed; appends are refused", "dir", s.cfg.Dir, "err", err)
					continue
				}
			}
			if now.Sub(lastCheckpoint) >= s.cfg.CheckpointInterval {
				lastCheckpoint = now
				if err := s.flushIndex(); err != nil {
					slog.Warn("segment index write failed; will retry", "dir", s.cfg.Dir, "err", err)
				}
			}
			if s.cfg.SealAfter > 0 {
				select {
				case s.rollCh <- struct{}{}:
				default:
				}
			}
			s.applyRetention()
		}
	}
}

// flushIndex writes the pending segment-index entries. The log is fsynced first, so a durable
// index entry always describes a durable record.
func (s *Store) flushIndex() error {
	s.idxMu.Lock()
	pending := s.idxPending
	s.idxPending = make(map[int64][]byte)
	s.idxMu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	// Under FlushSync every dispatched record is already fsynced.
	if s.cfg.FlushMode != FlushSync {
		if err := s.syncFile(s.activeSegment().f); err != nil {
			s.restorePending(pending)
			return fmt.Errorf("fsync commit log before index: %w", err)
		}
	}
	bases := make([]int64, 0, len(pending))
	for b := range pending {
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	for i, base := range bases {
		if err := s.writeIndex(base, pending[base]); err != nil {
			rest := make(map[int64][]byte)
			for _, b := range bases[i:] {
				rest[b] = pending[b]
			}
			s.restorePending(rest)
			return err
		}
	}
	return nil
}

func (s *Store) restorePending(p map[int64][]byte) {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	for b, data := range p {
		s.idxPending[b] = append(data, s.idxPending[b]...)
	}
}

func (s *Store) writeIndex(base int64, data []byte) error {
	s.segMu.RLock()
	live := false
	for _, g := range s.segments {
		live = live || g.base == base
	}
	s.segMu.RUnlock()
	if !live {
		return nil // deleted by retention meanwhile
	}
	path := indexName(s.logDir, base)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("write segment index %d: %w", base, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("write segment index %d: %w", base, err)
	}
	if _, err := f.WriteAt(data, st.Size()); err != nil {
		f.Truncate(st.Size())
		return fmt.Errorf("write segment index %d: %w", base, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync segment index %d: %w", base, err)
	}
	if st.Size() == 0 {
		return syncDir(s.logDir)
	}
	return nil
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

// deleteSegment removes the oldest segment; consume queues and the key index drop what
// pointed into it, so reads below the new min offset report offset-too-small.
func (s *Store) deleteSegment(g *segment) error {
	s.segMu.Lock()
	s.segments = s.segments[1:]
	newMin := s.segments[0].base
	s.minPos.Store(newMin)
	s.segMu.Unlock()
	s.idxMu.Lock()
	delete(s.idxPending, g.base)
	s.idxMu.Unlock()
	s.qmu.RLock()
	qs := make([]*consumeQueue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.qmu.RUnlock()
	for _, q := range qs {
		q.trimBelow(newMin)
	}
	s.keyMu.Lock()
	s.keys.trimBelow(newMin)
	s.keyMu.Unlock()
	g.f.Close()
	if err := os.Remove(g.path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove segment %d: %w", g.base, err)
	}
	if err := os.Remove(indexName(s.logDir, g.base)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove segment index %d: %w", g.base, err)
	}
	return syncDir(s.logDir)
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
