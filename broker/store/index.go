package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/stratamq/strata/broker/message"
)

// The index writer. Everything the store knows about a record beyond the commit log — its
// consume-queue entry and its keys — is derived by indexRecord from the record's header and
// commit-log position, in commit-log order. Local appends (the writer goroutine, after the
// bytes are written), recovery (replaying the log tail at open) and, later, replication
// (records a slave stores at the master's positions) all go through it, so the three cannot
// disagree about what the index holds.

const (
	indexDir       = "index"
	cqPagesExt     = ".cqp"
	cqMapExt       = ".cqm"
	queueTableFile = "queues"
	cqFlushBytes   = 256 << 10
)

// cqFiles are the consume-queue files of one commit-log segment's era: the full pages
// (.cqp) and the page map (.cqm) written while that segment was the newest. A page only
// holds entries of records already stored, so the files of segment k describe records in
// segments ≤ k and are deleted with segment k.
type cqFiles struct {
	seg       int64
	no        uint32 // page-file number used in page refs; ascending with seg
	pages     *appendFile
	maps      *appendFile
	pageCount uint32
}

// logRecord is one stored record handed to the index, in commit-log order.
type logRecord struct {
	pos    int64
	h      *message.RecordHeader
	tag    int64
	q      *consumeQueue // resolved by the writer; nil: look it up
	keys   []uint64      // key hashes when hashed (appendKeyHashes); else computed here
	hashed bool
}

// appendKeyHashes appends the key-index hashes of a record: its unique key and each key.
func appendKeyHashes(dst []uint64, h *message.RecordHeader) []uint64 {
	if h.UniqKey != "" {
		dst = append(dst, keyHash(h.Topic, h.UniqKey))
	}
	for _, k := range h.Keys {
		if k != "" && k != h.UniqKey {
			dst = append(dst, keyHash(h.Topic, k))
		}
	}
	return dst
}

// indexState is the index's mutable state. mu orders every change to the consume queues'
// entries and to the index files; readers never take it.
type indexState struct {
	mu            sync.Mutex
	dispatchedEnd int64 // every record below is indexed
	keyFrom       int64 // replay: records below are already in the key index
	lastStoreTs   int64
	curSeg        int64 // base of the newest segment: new pages go to its files
	nextNum       uint32
	queueTable    *appendFile
	newFiles      bool // a file was created since the last checkpoint
	pageBuf       []byte
	recBuf        []byte
	scratch       []byte
	qscratch      []*consumeQueue
	keyScratch    []uint64

	filesMu sync.RWMutex // cq (lifetime of page files)
	cq      []*cqFiles   // ascending seg
	nextNo  uint32

	keys    keyIndex
	cqCache *blockCache
}

func (s *Store) indexPath(name string) string { return filepath.Join(s.cfg.Dir, indexDir, name) }

func cqName(seg int64, ext string) string { return fmt.Sprintf("%020d%s", seg, ext) }

// indexRecords indexes records written to the log, in order, and publishes them to readers.
func (s *Store) indexRecords(recs []logRecord) {
	x := &s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range recs {
		if err := s.indexRecordLocked(&recs[i]); err != nil {
			s.fail(fmt.Errorf("%w: index: %v; restart the broker to rebuild the index from the commit log", ErrWriteFailed, err))
			return
		}
	}
}

// indexRecordLocked adds one record to its consume queue and to the key index.
func (s *Store) indexRecordLocked(r *logRecord) error {
	x := &s.idx
	h := r.h
	if end := r.pos + int64(h.TotalSize) + frameTrailerBytes; end > x.dispatchedEnd {
		x.dispatchedEnd = end
	}
	x.lastStoreTs = max(x.lastStoreTs, h.StoreTimestamp)
	if len(s.deleted) > 0 {
		if below, dead := s.deleted[h.Topic]; dead && r.pos < below {
			return nil
		}
	}
	q := r.q
	if q == nil {
		q = s.queueAt(h.Topic, h.QueueID, r.pos)
	}
	e := cqEntry{pos: r.pos, size: h.TotalSize, tag: r.tag, storeTs: h.StoreTimestamp}
	q.mu.Lock()
	err := s.addEntryLocked(q, h.QueueOffset, e)
	q.publishLocked()
	q.mu.Unlock()
	if err != nil {
		return err
	}
	if r.pos < x.keyFrom || h.SysFlag&message.FlagTransactionMask == message.FlagTransactionRollback {
		return nil
	}
	keys := r.keys
	if !r.hashed {
		keys = appendKeyHashes(x.keyScratch[:0], h)
		x.keyScratch = keys
	}
	for _, k := range keys {
		if err := x.keys.add(k, r.pos, h.TotalSize, h.StoreTimestamp); err != nil {
			return err
		}
	}
	return nil
}

// addEntryLocked adds the entry for queue offset off. An offset below the end is already
// present (replay overlap); one above it (entries lost below, or the first entry after a
// reset) restarts the queue there. Index mutex and q.mu held.
func (s *Store) addEntryLocked(q *consumeQueue, off int64, e cqEntry) error {
	end := q.endLocked()
	if off < end {
		return nil
	}
	if off > end {
		q.restartLocked(off)
		if err := s.writeResetLocked(q, off); err != nil {
			return err
		}
	}
	if q.unsyncedPos < 0 {
		q.unsyncedPos = e.pos
	}
	q.open = append(q.open, e)
	if len(q.open) == cqPageEntries {
		return s.writePageLocked(q)
	}
	return nil
}

// curFilesLocked returns the consume-queue files of the newest segment, creating them.
func (s *Store) curFilesLocked() (*cqFiles, error) {
	x := &s.idx
	n := len(x.cq)
	if n > 0 && x.cq[n-1].seg == x.curSeg {
		return x.cq[n-1], nil
	}
	if n > 0 { // the previous segment's files are complete
		if err := errors.Join(x.cq[n-1].pages.finish(), x.cq[n-1].maps.finish()); err != nil {
			return nil, err
		}
	}
	maps, created, err := openAppendFile(s.indexPath(cqName(x.curSeg, cqMapExt)), 0, cqFlushBytes)
	if err != nil {
		return nil, fmt.Errorf("create page map: %w", err)
	}
	if err := maps.append(encodeCQMapHeader(x.curSeg)); err != nil {
		maps.close()
		return nil, err
	}
	pages, _, err := openAppendFile(s.indexPath(cqName(x.curSeg, cqPagesExt)), 0, cqFlushBytes)
	if err != nil {
		maps.close()
		return nil, fmt.Errorf("create consume-queue pages: %w", err)
	}
	x.newFiles = x.newFiles || created
	x.nextNo++
	f := &cqFiles{seg: x.curSeg, no: x.nextNo, pages: pages, maps: maps}
	x.filesMu.Lock()
	x.cq = append(x.cq, f)
	x.filesMu.Unlock()
	return f, nil
}

// queueNumLocked returns q's number, assigning it and writing its queue-table record the
// first time. Index mutex and q.mu held.
func (s *Store) queueNumLocked(q *consumeQueue) (uint32, error) {
	if q.num != 0 {
		return q.num, nil
	}
	x := &s.idx
	x.nextNum++
	rec := appendQueueRecord(x.recBuf[:0], &queueRecord{num: x.nextNum, queueID: q.id, createdPos: q.createdPos, topic: q.topic})
	x.recBuf = rec
	if err := x.queueTable.append(rec); err != nil {
		return 0, err
	}
	q.num = x.nextNum
	return q.num, nil
}

func (s *Store) appendCQRecordLocked(f *cqFiles, r *cqRecord) error {
	x := &s.idx
	x.recBuf, x.scratch = appendCQRecord(x.recBuf[:0], x.scratch, r)
	return f.maps.append(x.recBuf)
}

// writePageLocked writes q's full open page and moves it into the page table.
func (s *Store) writePageLocked(q *consumeQueue) error {
	x := &s.idx
	num, err := s.queueNumLocked(q)
	if err != nil {
		return err
	}
	f, err := s.curFilesLocked()
	if err != nil {
		return err
	}
	first := q.openBaseLocked()
	encodeCQPage(x.pageBuf, num, first, q.open)
	if err := f.pages.append(x.pageBuf); err != nil {
		return err
	}
	idx := f.pageCount
	f.pageCount++
	r := cqRecord{kind: cqRecordPage, queue: num, first: first, page: idx, firstTs: q.open[0].storeTs,
		firstP: q.open[0].pos, lastP: q.open[len(q.open)-1].pos}
	if err := s.appendCQRecordLocked(f, &r); err != nil {
		return err
	}
	q.pages = append(q.pages, pageRef{ref: uint64(f.no)<<32 | uint64(idx), firstTs: q.open[0].storeTs})
	q.open = q.open[:0]
	q.synced, q.unsyncedPos = 0, -1
	return nil
}

// writeFragmentLocked makes q's unfinished entries not yet durable part of the page map, so
// that a restart need not replay the log back to them. Index mutex held.
func (s *Store) writeFragmentLocked(q *consumeQueue) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	num, err := s.queueNumLocked(q)
	if err != nil {
		return err
	}
	f, err := s.curFilesLocked()
	if err != nil {
		return err
	}
	r := cqRecord{kind: cqRecordFragment, queue: num, first: q.openBaseLocked() + int64(q.synced), entries: q.open[q.synced:]}
	if err := s.appendCQRecordLocked(f, &r); err != nil {
		return err
	}
	q.synced, q.unsyncedPos = len(q.open), -1
	return nil
}

// writeResetLocked records that q restarted, empty, at off. Index mutex and q.mu held.
func (s *Store) writeResetLocked(q *consumeQueue, off int64) error {
	num, err := s.queueNumLocked(q)
	if err != nil {
		return err
	}
	f, err := s.curFilesLocked()
	if err != nil {
		return err
	}
	return s.appendCQRecordLocked(f, &cqRecord{kind: cqRecordReset, queue: num, first: off})
}

// switchSegmentLocked directs new pages to the files of the segment starting at base.
func (s *Store) switchSegment(base int64) {
	s.idx.mu.Lock()
	s.idx.curSeg = base
	s.idx.mu.Unlock()
}

var errPageGone = errors.New("consume-queue page deleted by retention")

// readCQPage reads the page ref names into dst (cqPageBytes) and checks it holds queue num
// from offset first. With noWait it reads only what is cached (appendFile.read).
func (s *Store) readCQPage(ref pageRef, num uint32, first int64, dst []byte, noWait bool) error {
	name, err := s.readCQPageBytes(ref, dst, noWait)
	if err != nil {
		return err
	}
	if err := checkCQPage(dst, num, first); err != nil {
		s.markIndexCorrupt(err)
		return fmt.Errorf("%s page %d: %w; the index is rebuilt from the commit log at the next start: restart the broker",
			name, ref.index(), err)
	}
	return nil
}

func (s *Store) readCQPageBytes(ref pageRef, dst []byte, noWait bool) (string, error) {
	x := &s.idx
	x.filesMu.RLock()
	defer x.filesMu.RUnlock()
	no := ref.file()
	i := sort.Search(len(x.cq), func(i int) bool { return x.cq[i].no >= no })
	if i == len(x.cq) || x.cq[i].no != no {
		return "", errPageGone
	}
	f := x.cq[i]
	return filepath.Base(f.pages.path), f.pages.read(dst, int64(ref.index())*cqPageBytes, x.cqCache, noWait)
}

// markIndexCorrupt stops checkpoints and removes the checkpoint, so that the next Open
// rebuilds every index file from the commit log. The log itself is intact.
func (s *Store) markIndexCorrupt(cause error) {
	if s.indexCorrupt.Swap(true) {
		return
	}
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	err := os.Remove(s.indexPath(checkpointFile))
	if err == nil || os.IsNotExist(err) {
		err = syncDir(filepath.Join(s.cfg.Dir, indexDir))
	}
	slog.Error("store: a consume-queue page failed its check; the index will be rebuilt from the commit log at the next start",
		"dir", s.cfg.Dir, "cause", cause, "err", err)
}

// dropCQFilesBelow deletes the consume-queue files of segments below base and returns the
// lowest page-file number still held. Index mutex held.
func (s *Store) dropCQFilesBelow(base int64) (uint32, error) {
	x := &s.idx
	x.filesMu.Lock()
	k := 0
	for k < len(x.cq) && x.cq[k].seg < base {
		k++
	}
	gone := append([]*cqFiles(nil), x.cq[:k]...)
	x.cq = append(x.cq[:0], x.cq[k:]...)
	firstLive := x.nextNo + 1
	if len(x.cq) > 0 {
		firstLive = x.cq[0].no
	}
	x.filesMu.Unlock()
	var errs []error
	for _, f := range gone {
		f.pages.close()
		f.maps.close()
		for _, p := range []string{f.pages.path, f.maps.path} {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return firstLive, errors.Join(errs...)
}

// closeIndexFiles closes every index file (Close, and the crash test helper).
func (s *Store) closeIndexFiles() {
	x := &s.idx
	x.filesMu.Lock()
	for _, f := range x.cq {
		f.pages.close()
		f.maps.close()
	}
	x.cq = nil
	x.filesMu.Unlock()
	x.keys.closeFiles()
	if x.queueTable != nil {
		x.queueTable.close()
		x.queueTable = nil
	}
	if s.ckptFile != nil {
		s.ckptFile.Close()
		s.ckptFile = nil
	}
}
