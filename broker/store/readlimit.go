package store

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Read limit: a replication follower's high watermark. A follower's log may end with records
// its master's in-sync set does not hold yet; a failover can truncate them away (the new
// master's log may be shorter), so a consumer reading from the follower must not see them.
// SetReadLimit bounds what the queue reads serve; the records past the limit are stored and
// indexed all the same, and a queue reads as ending at the first of them until the limit
// passes it. The commit-log reads of replication (ReadLog, EndOffset) ignore the limit.
//
// A Replicated store keeps its last finite limit in keptLimitFile, so that a follower that
// restarts can serve what its master had confirmed at once (KeptReadLimit) instead of
// nothing until a master streams to it. A raised limit is written without fsync at most
// every keepLimitEvery: a lost write leaves an older, lower limit, the safe side. A lowered
// one (TruncateTo) is fsynced, since a lost lowering would leave a limit above records the
// new master may replace.

// Unlimited is the read limit of a store that serves its whole log (the default).
const Unlimited int64 = math.MaxInt64

// SetReadLimit makes the queue reads (Read, MaxOffset, WaitForAppend) serve only records that
// end at or below commit-log position pos (store.NextRecordPos of a record is its end);
// Unlimited lifts the limit. A follower keeps it at the position its master confirmed
// (replica.Follower), a master at Unlimited. TruncateTo lowers a limit above the truncation
// point. Waiters of WaitForAppend re-check when it moves.
func (s *Store) SetReadLimit(pos int64) {
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	s.setReadLimitLocked(pos)
}

// ReadLimit is the limit SetReadLimit set (Unlimited unless one was set).
func (s *Store) ReadLimit() int64 { return s.readLimit.Load() }

// lowerReadLimit lowers a read limit above pos to pos; an unlimited store stays so.
func (s *Store) lowerReadLimit(pos int64) {
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	if l := s.readLimit.Load(); l != Unlimited && l > pos {
		s.setReadLimitLocked(pos)
	}
}

func (s *Store) setReadLimitLocked(pos int64) {
	old := s.readLimit.Load()
	if old == pos {
		return
	}
	s.readLimit.Store(pos)
	if pos != Unlimited && (pos < old || time.Since(s.keptAt) >= keepLimitEvery) {
		s.keepLimitLocked(pos, pos < old)
	}
	if s.limitCh != nil {
		close(s.limitCh)
		s.limitCh = nil
	}
}

const (
	keptLimitFile    = "readlimit" // FORMAT.md
	keptLimitBytes   = 20
	keptLimitVersion = 1
	keepLimitEvery   = 100 * time.Millisecond
)

var keptLimitMagic = [4]byte{'S', 'R', 'L', 'M'}

// KeptReadLimit is the read limit an earlier run of a Replicated store last kept, capped at
// the log's end; 0 when none was kept or its file is unreadable.
func (s *Store) KeptReadLimit() int64 { return min(s.keptAtOpen, s.logEnd.Load()) }

// loadKeptLimit reads keptLimitFile at open.
func (s *Store) loadKeptLimit() {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, keptLimitFile))
	if err != nil || len(b) != keptLimitBytes || [4]byte(b[:4]) != keptLimitMagic || b[4] != keptLimitVersion ||
		crc32c(b[:16]) != binary.BigEndian.Uint32(b[16:]) {
		return
	}
	s.keptAtOpen = max(0, int64(binary.BigEndian.Uint64(b[8:16])))
}

// keepLimitLocked writes pos to keptLimitFile (fsynced when durable). Caller holds limitMu.
// A failed write is not an error of the store: the file then holds an older limit, or none.
func (s *Store) keepLimitLocked(pos int64, durable bool) {
	if !s.cfg.Replicated {
		return
	}
	if s.keptFile == nil {
		f, err := os.OpenFile(filepath.Join(s.cfg.Dir, keptLimitFile), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return
		}
		s.keptFile = f
	}
	var b [keptLimitBytes]byte
	copy(b[:4], keptLimitMagic[:])
	b[4] = keptLimitVersion
	binary.BigEndian.PutUint64(b[8:16], uint64(pos))
	binary.BigEndian.PutUint32(b[16:], crc32c(b[:16]))
	if _, err := s.keptFile.WriteAt(b[:], 0); err != nil {
		return
	}
	s.keptAt, s.keptPos = time.Now(), pos
	if durable {
		_ = s.keptFile.Sync()
	}
}

// closeKeptLimit writes the last limit if a throttled write skipped it, and closes the file.
func (s *Store) closeKeptLimit() {
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	if pos := s.readLimit.Load(); pos != Unlimited && pos != s.keptPos {
		s.keepLimitLocked(pos, true)
	}
	if s.keptFile != nil {
		_ = s.keptFile.Close()
		s.keptFile = nil
	}
}

// readLimitWait returns the read limit and a channel closed when it next changes.
func (s *Store) readLimitWait() (int64, <-chan struct{}) {
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	if s.limitCh == nil {
		s.limitCh = make(chan struct{})
	}
	return s.readLimit.Load(), s.limitCh
}

// visibleEnd is the end of q's offsets in [lo, hi) that limit lets a reader see: the first
// offset whose record ends past limit, or hi if none does. Caller holds truncMu shared.
func (s *Store) visibleEnd(q *consumeQueue, lo, hi, limit int64) (int64, error) {
	if lo >= hi || limit >= s.logEnd.Load() {
		return hi, nil // every stored record ends at or below the log end
	}
	past := func(o int64) (bool, error) {
		e, err := s.entryAt(q, o)
		return NextRecordPos(e.pos, e.size) > limit, err
	}
	// Positions grow with offsets, and the hidden tail is short (a round trip of appends):
	// step back from hi in doubling strides until a visible record, then bisect.
	top, bottom := hi, lo // [top, hi) are past the limit, [lo, bottom) are not
	for step := int64(1); top > bottom; step *= 2 {
		o := max(hi-step, bottom)
		p, err := past(o)
		if err != nil {
			return 0, err
		}
		if !p {
			bottom = o + 1
			break
		}
		top = o
	}
	var err error
	n := sort.Search(int(top-bottom), func(i int) bool {
		if err != nil {
			return true
		}
		p, perr := past(bottom + int64(i))
		err = perr
		return p || perr != nil
	})
	return bottom + int64(n), err
}

// entryAt reads the consume-queue entry of offset o of q; errPageGone when it is no longer
// held (retention moved the queue's start).
func (s *Store) entryAt(q *consumeQueue, o int64) (cqEntry, error) {
	q.mu.RLock()
	v := q.viewLocked(o, o+1)
	q.mu.RUnlock()
	if o < v.minOff || o >= v.maxOff {
		return cqEntry{}, errPageGone
	}
	var e cqEntry
	found := false
	if err := s.eachEntry(&v, o, o+1, func(_ int64, got cqEntry) bool { e, found = got, true; return false }); err != nil {
		return cqEntry{}, err
	}
	if !found {
		return cqEntry{}, errPageGone
	}
	return e, nil
}
