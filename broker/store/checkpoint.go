package store

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// Checkpoint file (FORMAT.md): index/checkpoint holds two 128-byte slots written in turn;
// each names a commit-log position from which Open replays the log, the position below which
// every record is indexed, and the durable lengths of the index files then being appended.
// A torn slot fails its checksum and the other one is used.
const (
	checkpointFile      = "checkpoint"
	checkpointSlotBytes = 128
	checkpointVersion   = 1
)

var checkpointMagic = [4]byte{'S', 'C', 'K', 'P'}

type checkpoint struct {
	seq uint64
	// replayFrom: Open replays the commit log from here; every consume-queue entry of a
	// record below it is in a durable page or fragment.
	replayFrom int64
	// indexedEnd: every record below it is in the key index and was durable in the log.
	indexedEnd  int64
	lastStoreTs int64
	// The page map and pages of segment cqSegment were cqMapBytes and cqPages long; those of
	// older segments are complete, those of newer ones are not covered.
	cqSegment int64
	cqMapBytes,
	cqPages int64
	// The newest key index file (-1: none) held keyCount entries (sealed when at capacity).
	keyFile         int64
	keyCount        int64
	queueTableBytes int64
}

func encodeCheckpoint(c *checkpoint) []byte {
	b := make([]byte, checkpointSlotBytes)
	copy(b, checkpointMagic[:])
	b[4] = checkpointVersion
	be := binary.BigEndian
	be.PutUint64(b[8:], c.seq)
	for i, v := range []int64{c.replayFrom, c.indexedEnd, c.lastStoreTs, c.cqSegment, c.cqMapBytes, c.cqPages,
		c.keyFile, c.keyCount, c.queueTableBytes} {
		be.PutUint64(b[16+8*i:], uint64(v))
	}
	be.PutUint32(b[88:], crc32c(b[:88]))
	return b
}

func decodeCheckpoint(b []byte) (checkpoint, error) {
	var c checkpoint
	be := binary.BigEndian
	if len(b) < checkpointSlotBytes || [4]byte(b[:4]) != checkpointMagic || crc32c(b[:88]) != be.Uint32(b[88:]) {
		return c, fmt.Errorf("%w: checkpoint slot", ErrCorrupt)
	}
	if b[4] != checkpointVersion {
		return c, fmt.Errorf("%w: checkpoint version %d, this build reads %d", ErrCorrupt, b[4], checkpointVersion)
	}
	c.seq = be.Uint64(b[8:])
	vals := make([]int64, 9)
	for i := range vals {
		vals[i] = int64(be.Uint64(b[16+8*i:]))
	}
	c.replayFrom, c.indexedEnd, c.lastStoreTs, c.cqSegment, c.cqMapBytes, c.cqPages, c.keyFile, c.keyCount, c.queueTableBytes =
		vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6], vals[7], vals[8]
	if c.replayFrom < 0 || c.indexedEnd < c.replayFrom || c.cqSegment < 0 || c.cqMapBytes < 0 || c.cqPages < 0 ||
		c.cqPages > 1<<32 || c.keyFile < -1 || c.keyCount < 0 || c.keyCount > 1<<32 || c.queueTableBytes < 0 {
		return checkpoint{}, fmt.Errorf("%w: checkpoint fields out of range", ErrCorrupt)
	}
	return c, nil
}

// readCheckpoint returns the newest valid slot.
func readCheckpoint(path string) (checkpoint, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return checkpoint{}, false
	}
	var best checkpoint
	ok := false
	for off := 0; off+checkpointSlotBytes <= len(b); off += checkpointSlotBytes {
		c, err := decodeCheckpoint(b[off : off+checkpointSlotBytes])
		if err == nil && (!ok || c.seq > best.seq) {
			best, ok = c, true
		}
		if off >= checkpointSlotBytes {
			break
		}
	}
	return best, ok
}

// checkpointNow makes the index durable up to the records dispatched so far and records
// it. With all set, every unfinished page is written out, so the next Open replays nothing
// (clean Close). Only one runs at a time (the maintenance goroutine, Open and Close).
func (s *Store) checkpointNow(all bool) error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	if s.indexCorrupt.Load() {
		return nil // the next Open rebuilds; a checkpoint would vouch for a bad page
	}
	c, files, fresh, err := s.cutIndex(all)
	if err != nil {
		return err
	}
	// Under FlushSync every dispatched record is already fsynced; sealed segments were
	// fsynced when they sealed.
	if s.cfg.FlushMode != FlushSync {
		if err := s.syncFile(s.activeSegment().f); err != nil {
			return fmt.Errorf("%w: fsync commit log before checkpoint: %v", ErrWriteFailed, err)
		}
	}
	for _, f := range files {
		if err := f.sync(); err != nil {
			return err
		}
	}
	if fresh {
		if err := syncDir(filepath.Join(s.cfg.Dir, indexDir)); err != nil {
			return fmt.Errorf("fsync index directory: %w", err)
		}
	}
	s.ckptSeq++
	c.seq = s.ckptSeq
	if err := s.writeCheckpointSlot(&c); err != nil {
		return err
	}
	s.lastCheckpoint.Store(&c)
	return nil
}

// writeCheckpointSlot writes c into slot c.seq mod 2 and fsyncs it. ckptMu held.
func (s *Store) writeCheckpointSlot(c *checkpoint) error {
	if s.ckptFile == nil {
		f, err := os.OpenFile(s.indexPath(checkpointFile), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("open checkpoint: %w", err)
		}
		s.ckptFile = f
		if err := syncDir(filepath.Join(s.cfg.Dir, indexDir)); err != nil {
			return fmt.Errorf("fsync index directory: %w", err)
		}
	}
	if _, err := s.ckptFile.WriteAt(encodeCheckpoint(c), int64(c.seq%2)*checkpointSlotBytes); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := s.ckptFile.Sync(); err != nil {
		return fmt.Errorf("fsync checkpoint: %w", err)
	}
	return nil
}

// cutIndex takes a consistent cut of the index under its mutex: unfinished pages whose
// oldest unwritten entry lies more than half of RecoveryReplayBytes behind are written out
// as fragments, and the lengths the checkpoint will name are read.
func (s *Store) cutIndex(all bool) (checkpoint, []*appendFile, bool, error) {
	x := &s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	if p := s.failed.Load(); p != nil {
		return checkpoint{}, nil, false, *p
	}
	d := x.dispatchedEnd
	bound := d - s.cfg.RecoveryReplayBytes/2
	replay := d
	s.qmu.RLock()
	qs := x.qscratch[:0]
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.qmu.RUnlock()
	for _, q := range qs {
		if q.unsyncedPos < 0 {
			continue
		}
		if all || q.unsyncedPos < bound {
			if err := s.writeFragmentLocked(q); err != nil {
				return checkpoint{}, nil, false, err
			}
			continue
		}
		replay = min(replay, q.unsyncedPos)
	}
	clear(qs)
	x.qscratch = qs[:0]
	c := checkpoint{replayFrom: replay, indexedEnd: d, lastStoreTs: x.lastStoreTs, cqSegment: x.curSeg, keyFile: -1,
		queueTableBytes: x.queueTable.size()}
	var files []*appendFile
	x.filesMu.RLock()
	for _, f := range x.cq {
		if f.seg == x.curSeg {
			c.cqMapBytes, c.cqPages = f.maps.size(), int64(f.pageCount)
		}
		if f.maps.takeDirty() {
			files = append(files, f.maps)
		}
		if f.pages.takeDirty() {
			files = append(files, f.pages)
		}
	}
	x.filesMu.RUnlock()
	x.keys.mu.RLock()
	if n := len(x.keys.files); n > 0 {
		kf := x.keys.files[n-1]
		c.keyFile, c.keyCount = kf.firstPos, int64(kf.count.Load())
	}
	x.keys.mu.RUnlock()
	files, keyFresh := x.keys.dirtyFiles(files)
	if x.queueTable.takeDirty() {
		files = append(files, x.queueTable)
	}
	fresh := x.newFiles || keyFresh
	x.newFiles = false
	return c, files, fresh, nil
}
