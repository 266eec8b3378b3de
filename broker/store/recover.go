package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/stratamq/strata/broker/message"
)

// Recovery. Open reads the index files as the last checkpoint left them (queue table, page
// maps, key index files: all proportional to the number of pages and queues, not messages),
// then replays the commit log from the checkpoint's replay position — a tail bounded by
// RecoveryReplayBytes plus one checkpoint interval — through the same indexRecord path
// appends use, truncating a torn tail by checksum. When the index files do not match the
// checkpoint, or the log ends before what the checkpoint says was indexed, every index file
// is dropped and rebuilt from the whole log.

// errIndexAhead reports a commit log shorter than what the index describes.
var errIndexAhead = errors.New("the commit log ends before the position the index checkpoint covers")

func (s *Store) recover(ctx context.Context) error {
	if err := s.loadTombstones(); err != nil {
		return err
	}
	legacy, err := removeLegacyIndex(s.logDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.cfg.Dir, indexDir), 0o755); err != nil {
		return fmt.Errorf("create index directory: %w", err)
	}
	bases, err := listSegments(s.logDir)
	if err != nil {
		return err
	}
	if len(bases) == 0 {
		if err := s.resetIndex(); err != nil {
			return err
		}
		g, err := s.createSegment(s.cfg.BaseOffset)
		if err != nil {
			return err
		}
		s.segments = []*segment{g}
		s.minPos.Store(g.base)
		s.logEnd.Store(g.base + segmentHeaderBytes)
		s.idx.curSeg = g.base
		s.idx.dispatchedEnd, s.idx.keyFrom = g.base+segmentHeaderBytes, g.base
		return nil
	}
	for i, base := range bases {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("recovery stopped before segment %d of %d: %w", i+1, len(bases), err)
		}
		flag := os.O_RDONLY
		if i == len(bases)-1 {
			flag = os.O_RDWR
		}
		path := segmentName(s.logDir, base)
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			return fmt.Errorf("open segment %d: %w", base, err)
		}
		s.segments = append(s.segments, &segment{base: base, path: path, f: f, sealed: i < len(bases)-1})
	}
	s.idx.curSeg = bases[len(bases)-1]
	ck, why := s.loadIndex(bases)
	if why != nil {
		if legacy {
			slog.Info("store: data directory has the previous index format; rebuilding consume queues and the key index from the commit log",
				"dir", s.cfg.Dir)
		} else if !errors.Is(why, errNoCheckpoint) {
			slog.Warn("store: index files do not match their checkpoint; rebuilding them from the commit log",
				"dir", s.cfg.Dir, "reason", why)
		}
		if ck, err = s.rebuildState(); err != nil {
			return err
		}
	}
	firstPos, err := s.replay(ctx, ck)
	if errors.Is(err, errIndexAhead) {
		slog.Warn("store: the commit log is shorter than the index checkpoint says; rebuilding the index from the log",
			"dir", s.cfg.Dir, "reason", err)
		if ck, err = s.rebuildState(); err != nil {
			return err
		}
		firstPos, err = s.replay(ctx, ck)
	}
	if err != nil {
		return err
	}
	act := s.segments[len(s.segments)-1]
	minPos := s.segments[0].base
	s.minPos.Store(minPos)
	s.logEnd.Store(act.base + act.size.Load())
	s.idx.dispatchedEnd = s.logEnd.Load()
	s.lastStoreTs = s.idx.lastStoreTs
	if err := s.idx.keys.dropBelow(minPos); err != nil {
		return err
	}
	s.qmu.RLock()
	qs := make([]*consumeQueue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.qmu.RUnlock()
	for _, q := range qs {
		q.mu.Lock()
		q.next = q.endLocked()
		q.publishLocked()
		resolved := len(q.pages) > 0 && firstPos[q] >= minPos
		q.mu.Unlock()
		if !resolved {
			if err := s.trimQueue(q, minPos, 0); err != nil {
				return fmt.Errorf("find the oldest local offset of %s/%d: %w", q.topic, q.id, err)
			}
		}
	}
	return nil
}

// removeLegacyIndex deletes the per-segment .idx files of the previous index format; their
// content is rebuilt from the log. It reports whether there were any.
func removeLegacyIndex(logDir string) (bool, error) {
	ents, err := os.ReadDir(logDir)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("list commit log %s: %w", logDir, err)
	}
	found := false
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".idx") {
			found = true
			if err := os.Remove(filepath.Join(logDir, e.Name())); err != nil {
				return found, fmt.Errorf("remove previous-format index %s: %w", e.Name(), err)
			}
		}
	}
	return found, nil
}

var errNoCheckpoint = errors.New("no index checkpoint")

// rebuildState drops every index file and returns the state that replays the whole log.
func (s *Store) rebuildState() (checkpoint, error) {
	if err := s.resetIndex(); err != nil {
		return checkpoint{}, err
	}
	s.loadFirstPos = map[*consumeQueue]int64{}
	s.recoveredRecords, s.rebuiltIndex = 0, true
	first := s.segments[0].base
	return checkpoint{replayFrom: first, indexedEnd: first, cqSegment: s.idx.curSeg, keyFile: -1}, nil
}

// resetIndex closes and deletes every index file and forgets every queue, leaving an empty
// queue table.
func (s *Store) resetIndex() error {
	s.closeIndexFiles()
	dir := filepath.Join(s.cfg.Dir, indexDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list index directory: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, sealExt) {
			continue // derived from the log alone, and still right
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove index file %s: %w", name, err)
		}
	}
	s.qmu.Lock()
	s.queues = make(map[queueKey]*consumeQueue)
	s.qmu.Unlock()
	x := &s.idx
	x.nextNum, x.lastStoreTs = 0, 0
	x.keys.files, x.keys.active = nil, nil
	s.ckptSeq = 0
	qt, _, err := openAppendFile(s.indexPath(queueTableFile), 0, 64<<10)
	if err != nil {
		return fmt.Errorf("create queue table: %w", err)
	}
	x.queueTable = qt
	x.newFiles = true
	return qt.append(encodeQueueTableHeader())
}

// loadIndex opens the index files as the last checkpoint describes them. Any mismatch is
// returned as an error and the caller rebuilds.
func (s *Store) loadIndex(bases []int64) (checkpoint, error) {
	x := &s.idx
	dir := filepath.Join(s.cfg.Dir, indexDir)
	ck, ok := readCheckpoint(filepath.Join(dir, checkpointFile))
	if !ok {
		return ck, errNoCheckpoint
	}
	s.ckptSeq = ck.seq
	if ck.indexedEnd < bases[0] && ck.replayFrom < bases[0] && ck.cqSegment < bases[0] {
		// Everything the checkpoint covered was deleted; the tail replay still applies.
		ck.replayFrom, ck.indexedEnd = bases[0], bases[0]
	}
	if ck.cqSegment > bases[len(bases)-1] {
		return ck, fmt.Errorf("checkpoint names segment %d, past the last segment %d", ck.cqSegment, bases[len(bases)-1])
	}
	// Queue table.
	qt, _, err := openAppendFile(filepath.Join(dir, queueTableFile), ck.queueTableBytes, 64<<10)
	if err != nil {
		return ck, fmt.Errorf("queue table: %w", err)
	}
	x.queueTable = qt
	b := make([]byte, ck.queueTableBytes)
	if err := qt.readAt(b, 0, nil); err != nil {
		return ck, err
	}
	if err := checkQueueTableHeader(b); err != nil {
		return ck, err
	}
	byNum := map[uint32]*consumeQueue{}
	dead := map[uint32]bool{}
	for off := queueTableHeader; off < len(b); {
		r, n, err := decodeQueueRecord(b[off:])
		if err != nil {
			return ck, fmt.Errorf("queue table at byte %d: %w", off, err)
		}
		off += n
		if r.num != x.nextNum+1 {
			return ck, fmt.Errorf("%w: queue table numbers %d after %d", ErrCorrupt, r.num, x.nextNum)
		}
		x.nextNum = r.num
		if below, ok := s.deleted[r.topic]; ok && r.createdPos < below {
			dead[r.num] = true
			continue
		}
		k := queueKey{r.topic, r.queueID}
		if old := s.queues[k]; old != nil {
			dead[old.num] = true // superseded by a newer incarnation
		}
		q := newConsumeQueue(r.topic, r.queueID, r.createdPos)
		q.num = r.num
		s.queues[k] = q
		byNum[r.num] = q
	}
	for num := range dead {
		delete(byNum, num)
	}
	// Page maps and pages.
	segs, err := listIndexSegments(dir)
	if err != nil {
		return ck, err
	}
	live := map[int64]bool{}
	for _, b := range bases {
		live[b] = true
	}
	for _, seg := range segs {
		if seg > ck.cqSegment || !live[seg] || (seg == ck.cqSegment && ck.cqMapBytes == 0) {
			for _, ext := range []string{cqMapExt, cqPagesExt} {
				if err := os.Remove(filepath.Join(dir, cqName(seg, ext))); err != nil && !os.IsNotExist(err) {
					return ck, err
				}
			}
			continue
		}
		if err := s.loadCQFiles(seg, ck, byNum, dead); err != nil {
			return ck, fmt.Errorf("consume-queue files of segment %d: %w", seg, err)
		}
	}
	if ck.cqSegment >= bases[0] && ck.cqMapBytes > 0 && (len(x.cq) == 0 || x.cq[len(x.cq)-1].seg != ck.cqSegment) {
		return ck, fmt.Errorf("the page map of segment %d named by the checkpoint is missing", ck.cqSegment)
	}
	// Key index files.
	names, err := listKeyFiles(dir)
	if err != nil {
		return ck, err
	}
	found := false
	for _, p := range names {
		switch {
		case ck.keyFile < 0 || p > ck.keyFile:
			if err := os.Remove(keyFileName(dir, p)); err != nil && !os.IsNotExist(err) {
				return ck, err
			}
		case p < ck.keyFile:
			if err := x.keys.loadSealed(p); err != nil {
				return ck, err
			}
		default:
			found = true
			if err := x.keys.loadNewest(p, uint32(ck.keyCount)); err != nil {
				return ck, err
			}
		}
	}
	if ck.keyFile >= 0 && !found {
		return ck, fmt.Errorf("the key index file %d named by the checkpoint is missing", ck.keyFile)
	}
	return ck, nil
}

// loadCQFiles reads one segment's page map and applies its records to the queues.
func (s *Store) loadCQFiles(seg int64, ck checkpoint, byNum map[uint32]*consumeQueue, dead map[uint32]bool) error {
	x := &s.idx
	mapLen, pageBytes := int64(-1), int64(-1)
	if seg == ck.cqSegment {
		mapLen, pageBytes = ck.cqMapBytes, ck.cqPages*cqPageBytes
	}
	maps, _, err := openAppendFile(s.indexPath(cqName(seg, cqMapExt)), mapLen, cqFlushBytes)
	if err != nil {
		return err
	}
	pages, _, err := openAppendFile(s.indexPath(cqName(seg, cqPagesExt)), pageBytes, cqFlushBytes)
	if err != nil {
		maps.close()
		return err
	}
	x.nextNo++
	f := &cqFiles{seg: seg, no: x.nextNo, pages: pages, maps: maps}
	x.cq = append(x.cq, f)
	n := pages.size()
	if n%cqPageBytes != 0 {
		return fmt.Errorf("%w: pages file of %d bytes is not whole pages", ErrCorrupt, n)
	}
	f.pageCount = uint32(n / cqPageBytes)
	b := make([]byte, maps.size())
	if err := maps.readAt(b, 0, nil); err != nil {
		return err
	}
	if err := checkCQMapHeader(b, seg); err != nil {
		return err
	}
	for off := cqMapHeaderBytes; off < len(b); {
		r, k, err := decodeCQRecord(b[off:])
		if err != nil {
			return fmt.Errorf("page map at byte %d: %w", off, err)
		}
		off += k
		q := byNum[r.queue]
		if q == nil {
			if dead[r.queue] || r.queue <= x.nextNum {
				continue
			}
			return fmt.Errorf("%w: page map names queue %d, not in the queue table", ErrCorrupt, r.queue)
		}
		if err := s.applyCQRecord(q, f, &r); err != nil {
			return fmt.Errorf("page map at byte %d: %w", off-k, err)
		}
	}
	return nil
}

// applyCQRecord replays one page-map record into q's state at open.
func (s *Store) applyCQRecord(q *consumeQueue, f *cqFiles, r *cqRecord) error {
	switch r.kind {
	case cqRecordReset:
		q.restartLocked(r.first)
	case cqRecordPage:
		if r.page >= f.pageCount {
			return fmt.Errorf("%w: page %d of %d", ErrCorrupt, r.page, f.pageCount)
		}
		ob := q.openBaseLocked()
		switch {
		case r.first > ob:
			q.restartLocked(r.first)
		case r.first < ob:
			return fmt.Errorf("%w: queue %d page at offset %d below its end %d", ErrCorrupt, r.queue, r.first, ob)
		}
		if len(q.pages) == 0 {
			s.loadFirstPos[q] = r.firstP
		}
		q.pages = append(q.pages, pageRef{ref: uint64(f.no)<<32 | uint64(r.page), firstTs: r.firstTs})
		q.open = q.open[:0]
	case cqRecordFragment:
		end := q.endLocked()
		switch {
		case r.first > end:
			q.restartLocked(r.first)
		case r.first < end:
			return fmt.Errorf("%w: queue %d fragment at offset %d below its end %d", ErrCorrupt, r.queue, r.first, end)
		}
		if len(q.open)+len(r.entries) >= cqPageEntries {
			return fmt.Errorf("%w: queue %d fragments overfill a page", ErrCorrupt, r.queue)
		}
		q.open = append(q.open, r.entries...)
	}
	return nil
}

// listIndexSegments returns the segment bases named by page maps and pages in dir.
func listIndexSegments(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	seen := map[int64]bool{}
	var out []int64
	for _, e := range ents {
		name := e.Name()
		ext := filepath.Ext(name)
		if ext != cqMapExt && ext != cqPagesExt {
			continue
		}
		b, err := strconv.ParseInt(strings.TrimSuffix(name, ext), 10, 64)
		if err != nil || seen[b] {
			continue
		}
		seen[b] = true
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// replay scans the commit log from ck.replayFrom and indexes what it finds; it sizes every
// segment, truncates a torn tail of the last one and sets segment times. It returns each
// queue's first page's first commit-log position as loaded (for finding its oldest offset).
func (s *Store) replay(ctx context.Context, ck checkpoint) (map[*consumeQueue]int64, error) {
	x := &s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	firstPos := s.loadFirstPos
	s.loadFirstPos = map[*consumeQueue]int64{}
	from := ck.replayFrom
	x.keyFrom = ck.indexedEnd
	x.dispatchedEnd = max(ck.indexedEnd, s.segments[0].base+segmentHeaderBytes)
	x.lastStoreTs = ck.lastStoreTs
	// What the page maps held is durable; what the replay adds is not, until a checkpoint
	// writes it out as a fragment or a page.
	for _, q := range s.queues {
		q.mu.Lock()
		q.synced, q.unsyncedPos = len(q.open), -1
		q.mu.Unlock()
	}
	for i, g := range s.segments {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("recovery stopped at segment %d of %d: %w", i+1, len(s.segments), err)
		}
		last := i == len(s.segments)-1
		st, err := g.f.Stat()
		if err != nil {
			return nil, fmt.Errorf("stat segment %d: %w", g.base, err)
		}
		fileLen := st.Size()
		end := g.base + fileLen
		if !last {
			if seal, ok := s.readSeal(g.base); ok && seal.end <= end {
				g.size.Store(seal.end - g.base)
				g.firstTime.Store(seal.firstTs)
				g.lastTime.Store(seal.lastTs)
				if seal.end <= from {
					continue
				}
				valid, bad, err := s.scanIndex(g, max(from-g.base, segmentHeaderBytes), from, false)
				if err != nil {
					return nil, err
				}
				if bad || valid != seal.end-g.base {
					slog.Warn("commit log segment has a corrupt record; its records after it are not re-indexed",
						"segment", g.base, "validBytes", valid, "sealedBytes", seal.end-g.base)
				}
				continue
			}
			valid, bad, err := s.scanIndex(g, segmentHeaderBytes, from, true)
			if err != nil {
				return nil, err
			}
			if valid == 0 {
				return nil, fmt.Errorf("%w: segment %d has a bad header; move %s aside to start without it", ErrCorrupt, g.base, g.path)
			}
			if bad {
				slog.Warn("commit log segment has a corrupt record; serving the valid prefix",
					"segment", g.base, "validBytes", valid, "fileBytes", fileLen)
				if g.base+valid < ck.indexedEnd {
					return nil, fmt.Errorf("%w: segment %d is valid to %d", errIndexAhead, g.base, g.base+valid)
				}
			}
			g.size.Store(valid)
			if err := s.writeSeal(g); err != nil {
				return nil, err
			}
			continue
		}
		// The active segment: find its valid end from the replay position.
		if end < ck.indexedEnd {
			return nil, fmt.Errorf("%w: the last segment ends at %d, the checkpoint covers %d", errIndexAhead, end, ck.indexedEnd)
		}
		start := int64(segmentHeaderBytes)
		if from > g.base {
			start = from - g.base
		}
		valid, bad, err := s.scanIndex(g, start, from, start == segmentHeaderBytes)
		if err != nil {
			return nil, err
		}
		switch {
		case valid == 0: // bad header
			if ck.indexedEnd > g.base+segmentHeaderBytes {
				return nil, fmt.Errorf("%w: the last segment has a bad header", errIndexAhead)
			}
			if err := resetSegmentFile(g); err != nil {
				return nil, err
			}
			valid = segmentHeaderBytes
		case bad:
			if g.base+valid < ck.indexedEnd {
				return nil, fmt.Errorf("%w: the last segment is valid to %d", errIndexAhead, g.base+valid)
			}
			if err := g.f.Truncate(valid); err != nil {
				return nil, fmt.Errorf("truncate torn tail of segment %d at %d: %w", g.base, valid, err)
			}
			if err := g.f.Sync(); err != nil {
				return nil, fmt.Errorf("truncate torn tail of segment %d: %w", g.base, err)
			}
		}
		g.size.Store(valid)
		if g.firstTime.Load() == 0 && valid > segmentHeaderBytes {
			ts, err := s.firstStoreTime(g)
			if err != nil {
				return nil, err
			}
			g.firstTime.Store(ts)
		}
		if valid > segmentHeaderBytes && g.lastTime.Load() == 0 {
			g.lastTime.Store(x.lastStoreTs)
		}
	}
	return firstPos, nil
}

// scanIndex validates the records of g from file offset start and indexes those at or after
// commit-log position from. It keeps g's last store time, and with first set (a scan from
// the header) its first store time too.
func (s *Store) scanIndex(g *segment, start, from int64, first bool) (int64, bool, error) {
	var ierr error
	valid, bad, err := scanSegment(g.f, g.base, start, s.maxRecord, func(pos int64, _ []byte, h *message.RecordHeader) {
		if first && g.firstTime.Load() == 0 {
			g.firstTime.Store(h.StoreTimestamp)
		}
		g.lastTime.Store(max(g.lastTime.Load(), h.StoreTimestamp))
		if pos < from || ierr != nil {
			return
		}
		s.recoveredRecords++
		ierr = s.indexRecordLocked(&logRecord{pos: pos, h: h, tag: message.TagHashCode(h.Tags)})
	})
	if err == nil {
		err = ierr
	}
	return valid, bad, err
}

// firstStoreTime reads the store time of g's first record.
func (s *Store) firstStoreTime(g *segment) (int64, error) {
	var sz [4]byte
	if _, err := g.f.ReadAt(sz[:], segmentHeaderBytes); err != nil {
		return 0, fmt.Errorf("read first record of segment %d: %w", g.base, err)
	}
	n := int(int32(uint32(sz[0])<<24 | uint32(sz[1])<<16 | uint32(sz[2])<<8 | uint32(sz[3])))
	if n < message.MinRecordBytes || n > s.maxRecord {
		return 0, fmt.Errorf("%w: first record of segment %d has size %d", ErrCorrupt, g.base, n)
	}
	b := make([]byte, n+frameTrailerBytes)
	if _, err := g.f.ReadAt(b, segmentHeaderBytes); err != nil {
		return 0, fmt.Errorf("read first record of segment %d: %w", g.base, err)
	}
	h, err := checkFrame(b, g.base+segmentHeaderBytes, s.maxRecord)
	if err != nil {
		return 0, err
	}
	return h.StoreTimestamp, nil
}

func resetSegmentFile(g *segment) error {
	if err := g.f.Truncate(0); err != nil {
		return fmt.Errorf("reset segment %d: %w", g.base, err)
	}
	if _, err := g.f.WriteAt(encodeSegmentHeader(g.base), 0); err != nil {
		return fmt.Errorf("reset segment %d: %w", g.base, err)
	}
	if err := g.f.Sync(); err != nil {
		return fmt.Errorf("reset segment %d: %w", g.base, err)
	}
	return nil
}

// trimQueue makes q's oldest visible offset the first whose record lies at or after minPos,
// dropping the page refs of page files numbered below firstLive.
func (s *Store) trimQueue(q *consumeQueue, minPos int64, firstLive uint32) error {
	q.mu.Lock()
	k := 0
	for k < len(q.pages) && q.pages[k].file() < firstLive {
		k++
	}
	if k > 0 {
		rest := len(q.pages) - k
		if rest < len(q.pages)/2 {
			q.pages = append(make([]pageRef, 0, rest+rest/4+4), q.pages[k:]...)
		} else {
			q.pages = q.pages[k:]
		}
		q.pageBase += int64(k) * cqPageEntries
		q.minOff = max(q.minOff, q.pageBase)
	}
	q.mu.Unlock()
	page := make([]byte, cqPageBytes)
	for {
		q.mu.RLock()
		off, epoch, end, ob := q.minOff, q.epoch, q.endLocked(), q.openBaseLocked()
		if off >= end {
			q.mu.RUnlock()
			return nil
		}
		if off >= ob {
			i := int(off - ob)
			for i < len(q.open) && q.open[i].pos < minPos {
				i++
			}
			q.mu.RUnlock()
			q.mu.Lock()
			if q.epoch == epoch {
				q.minOff = ob + int64(i)
			}
			q.mu.Unlock()
			return nil
		}
		k := (off - q.pageBase) / cqPageEntries
		ref, first, num := q.pages[k], q.pageBase+k*cqPageEntries, q.num
		q.mu.RUnlock()
		if err := s.readCQPage(ref, num, first, page, false); err != nil {
			return err
		}
		i := int(off - first)
		for i < cqPageEntries && getCQEntry(page[cqPageHeaderBytes+i*cqEntryBytes:]).pos < minPos {
			i++
		}
		q.mu.Lock()
		if q.epoch == epoch {
			q.minOff = first + int64(i)
		}
		done := q.epoch == epoch && i < cqPageEntries
		q.mu.Unlock()
		if done {
			return nil
		}
	}
}
