package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sort"
	"sync"

	"github.com/stratamq/strata/broker/message"
)

// ReadStatus is the outcome of a Read (PROTOCOL.md §7.4).
type ReadStatus int

const (
	// ReadFound: Records holds at least one message.
	ReadFound ReadStatus = iota
	// ReadNoMatch: entries were scanned but none passed the tag filter.
	ReadNoMatch
	// ReadNoNewMessage: the offset equals the max offset (caught up; long-poll).
	ReadNoNewMessage
	// ReadNoMessageInQueue: the queue is unknown or has never had a message.
	ReadNoMessageInQueue
	// ReadOffsetTooSmall: the offset is below the min offset.
	ReadOffsetTooSmall
	// ReadOffsetOverflow: the offset is above the max offset.
	ReadOffsetOverflow
)

func (r ReadStatus) String() string {
	return [...]string{"found", "no matched message", "no new message", "no message in queue",
		"offset too small", "offset overflow"}[r]
}

// Read limits used when a request leaves them at zero, and the scan bound per read.
const (
	DefaultReadMessages = 32
	DefaultReadBytes    = 256 << 10
	maxScanEntries      = 16000
)

// ReadRequest asks for a run of one queue's messages.
type ReadRequest struct {
	Topic       string
	QueueID     int32
	Offset      int64
	MaxMessages int // 0 = DefaultReadMessages
	MaxBytes    int // 0 = DefaultReadBytes; the first message is returned even if larger
	// TagCodes filters by tag hash code (message.TagHashCode); empty matches everything.
	TagCodes []int64
	// NoWait reads only what is in memory or the page cache, and takes no lock a writer
	// holds: a read that would wait fails with ErrWouldBlock instead, at the cost of a few
	// microseconds. It lets a caller that must not block (a connection's read goroutine)
	// serve what it can at once and hand the rest to a goroutine that may wait.
	NoWait bool
}

// ReadEntry describes one returned record.
type ReadEntry struct {
	QueueOffset     int64
	CommitLogOffset int64
	Size            int32
	TagCode         int64
	StoreTimestamp  int64
}

// ReadResult is the answer to a Read. Records holds the stored records back to back, as a
// PULL_MESSAGE body, in the order of Entries.
type ReadResult struct {
	Status     ReadStatus
	NextOffset int64
	MinOffset  int64
	MaxOffset  int64
	Records    []byte
	Entries    []ReadEntry
	// held is the recycled buffer Records is in, which Release returns.
	held *heldReadBuf
}

// Release lets the store reuse the memory of Records (and of every copy of the result) for a
// later Read. A caller that sends the records calls it once they are sent (the pull answer,
// through remoting.Command.Written), and must not touch them afterwards; a caller that never
// calls it keeps the records valid for as long as it holds them, and the garbage collector
// frees them. Calls after the first do nothing.
func (r ReadResult) Release() {
	if h := r.held; h != nil {
		h.once.Do(func() { putReadBuf(h.buf, h.class) })
	}
}

type heldReadBuf struct {
	once  sync.Once
	buf   []byte
	class int
}

// readBufs recycles Read's record buffers, by size class: class c holds buffers for reads of
// more than 2 KiB << c and at most 4 KiB << c. A pull's answer of 32 messages of 1 KiB was a fresh, zeroed 36 KiB buffer per
// pull, a quarter of Read's time.
var readBufs [readBufClasses]sync.Pool

const (
	minReadBufShift = 12 // 4 KiB
	readBufClasses  = 11 // up to 4 MiB; larger reads allocate
)

// getReadBuf returns an empty buffer of at least n bytes and its class, or class -1 for a
// buffer that is not recycled. With none to recycle it allocates n bytes exactly, so a
// reader that never releases pays nothing for the pool; a recycled buffer too small for n
// is replaced by one of the class's largest size, which fits any read of the class.
func getReadBuf(n int) ([]byte, int) {
	c := max(bits.Len(uint(n-1)), minReadBufShift) - minReadBufShift
	if c >= readBufClasses {
		return make([]byte, 0, n), -1
	}
	p, _ := readBufs[c].Get().(*[]byte)
	switch {
	case p == nil:
		return make([]byte, 0, n), c
	case cap(*p) < n:
		return make([]byte, 0, 1<<(c+minReadBufShift)), c
	}
	return (*p)[:0], c
}

// putReadBuf hands a buffer of getReadBuf's back for a later read; class -1 is dropped.
func putReadBuf(buf []byte, class int) {
	if class >= 0 {
		b := buf[:0]
		readBufs[class].Put(&b)
	}
}

// rlock read-locks mu, or with noWait only tries to, and reports whether it holds it.
func rlock(mu *sync.RWMutex, noWait bool) bool {
	if noWait {
		return mu.TryRLock()
	}
	mu.RLock()
	return true
}

// pread fills p from f at off; with noWait only from the page cache (preadNoWait).
func pread(f *os.File, p []byte, off int64, noWait bool) error {
	if noWait {
		return preadNoWait(f, p, off)
	}
	_, err := f.ReadAt(p, off)
	return err
}

// cqPageBufs recycles the page buffers eachEntry reads consume-queue pages into.
var cqPageBufs = sync.Pool{New: func() any { b := make([]byte, cqPageBytes); return &b }}

// Read returns a run of one queue's messages from req.Offset, bounded by count and bytes and
// filtered by tag codes, as stored bytes, with the status and the next offset to pull from.
func (s *Store) Read(ctx context.Context, req ReadRequest) (ReadResult, error) {
	if !rlock(&s.truncMu, req.NoWait) {
		return ReadResult{}, ErrWouldBlock
	}
	defer s.truncMu.RUnlock()
	if err := ctx.Err(); err != nil {
		return ReadResult{}, err
	}
	maxMsgs, maxBytes := req.MaxMessages, req.MaxBytes
	if maxMsgs <= 0 {
		maxMsgs = DefaultReadMessages
	}
	if maxBytes <= 0 {
		maxBytes = DefaultReadBytes
	}
	q := s.queue(req.Topic, req.QueueID, false)
	if q == nil {
		return ReadResult{Status: ReadNoMessageInQueue}, nil
	}
	// Without a tag filter every entry is taken, so maxMsgs entries are all a read looks at:
	// the view copies no more page references and open entries than that.
	scan := int64(maxScanEntries)
	if len(req.TagCodes) == 0 {
		scan = int64(maxMsgs)
	}
	q.mu.RLock()
	v := q.viewLocked(req.Offset, req.Offset+scan)
	q.mu.RUnlock()
	v.noWait = req.NoWait
	visLimit := s.readLimit.Load()
	if req.NoWait && visLimit < s.logEnd.Load() {
		return ReadResult{}, ErrWouldBlock // visibleEnd may read index pages
	}
	vis, err := s.visibleEnd(q, v.minOff, v.maxOff, visLimit)
	if errors.Is(err, errPageGone) { // deleted by retention meanwhile
		minOff, _ := q.bounds()
		return ReadResult{Status: ReadOffsetTooSmall, NextOffset: minOff, MinOffset: minOff, MaxOffset: v.maxOff}, nil
	}
	if err != nil {
		return ReadResult{}, fmt.Errorf("read %s/%d: find the end under the read limit: %w", req.Topic, req.QueueID, err)
	}
	if req.Offset > vis && req.Offset <= v.maxOff {
		// Stored but past the read limit (a consumer that read them from the last master):
		// not readable yet, rather than past the queue's end.
		return ReadResult{Status: ReadNoNewMessage, NextOffset: req.Offset, MinOffset: v.minOff, MaxOffset: vis}, nil
	}
	v.maxOff = vis
	res := ReadResult{MinOffset: v.minOff, MaxOffset: v.maxOff}
	switch {
	case v.maxOff == 0:
		res.Status, res.NextOffset = ReadNoMessageInQueue, 0
		return res, nil
	case req.Offset < v.minOff:
		res.Status, res.NextOffset = ReadOffsetTooSmall, v.minOff
		return res, nil
	case req.Offset == v.maxOff:
		res.Status, res.NextOffset = ReadNoNewMessage, req.Offset
		return res, nil
	case req.Offset > v.maxOff:
		res.Status, res.NextOffset = ReadOffsetOverflow, v.maxOff
		return res, nil
	}
	off := req.Offset
	limit := min(v.maxOff, req.Offset+scan)
	picked := make([]ReadEntry, 0, min(int64(maxMsgs), limit-off))
	bytes := 0
	err = s.eachEntry(&v, off, limit, func(o int64, e cqEntry) bool {
		if len(picked) >= maxMsgs {
			return false
		}
		if len(req.TagCodes) > 0 && !containsCode(req.TagCodes, e.tag) {
			off = o + 1
			return true
		}
		if len(picked) > 0 && bytes+int(e.size) > maxBytes {
			return false
		}
		bytes += int(e.size)
		picked = append(picked, ReadEntry{QueueOffset: o, CommitLogOffset: e.pos, Size: e.size, TagCode: e.tag, StoreTimestamp: e.storeTs})
		off = o + 1
		return true
	})
	if errors.Is(err, errPageGone) && len(picked) == 0 { // deleted by retention meanwhile
		minOff, _ := q.bounds()
		return ReadResult{Status: ReadOffsetTooSmall, NextOffset: minOff, MinOffset: minOff, MaxOffset: v.maxOff}, nil
	}
	if errors.Is(err, ErrWouldBlock) {
		return ReadResult{}, err
	}
	if err != nil && !errors.Is(err, errPageGone) {
		return ReadResult{}, fmt.Errorf("read %s/%d offset %d: %w", req.Topic, req.QueueID, off, err)
	}
	res.NextOffset = off
	res.Status = ReadNoMatch
	if len(picked) == 0 {
		return res, nil
	}
	total := 0
	for _, e := range picked {
		total += int(e.Size) + frameTrailerBytes
	}
	if !rlock(&s.segMu, req.NoWait) {
		return ReadResult{}, ErrWouldBlock
	}
	defer s.segMu.RUnlock()
	buf, class := getReadBuf(total)
	buf, n, err := s.readFramesLocked(buf, picked, req.NoWait)
	if errors.Is(err, ErrWouldBlock) {
		putReadBuf(buf, class)
		return ReadResult{}, err
	}
	if err != nil {
		if picked[n].CommitLogOffset < s.minPos.Load() { // deleted by retention meanwhile
			if n == 0 {
				minOff, _ := q.bounds()
				return ReadResult{Status: ReadOffsetTooSmall, NextOffset: minOff, MinOffset: minOff, MaxOffset: res.MaxOffset}, nil
			}
		} else {
			return ReadResult{}, fmt.Errorf("read %s/%d offset %d: %w", req.Topic, req.QueueID, picked[n].QueueOffset, err)
		}
		picked, res.NextOffset = picked[:n], picked[n].QueueOffset
	}
	res.Status, res.Records, res.Entries = ReadFound, buf, picked
	if class >= 0 {
		res.held = &heldReadBuf{buf: buf, class: class}
	}
	return res, nil
}

// eachEntry calls fn for the entries of offsets [from, to) of the view, in order, until fn
// returns false; pages are read through the consume-queue cache.
func (s *Store) eachEntry(v *queueView, from, to int64, fn func(off int64, e cqEntry) bool) error {
	var page []byte
	defer func() {
		if page != nil {
			cqPageBufs.Put(&page)
		}
	}()
	for k, ref := range v.refs {
		first := v.refFirst + int64(k)*cqPageEntries
		if first+cqPageEntries <= from {
			continue
		}
		if first >= to {
			return nil
		}
		if page == nil {
			page = *cqPageBufs.Get().(*[]byte)
		}
		if err := s.readCQPage(ref, v.num, first, page, v.noWait); err != nil {
			return err
		}
		for i := max(from-first, 0); i < cqPageEntries && first+i < to; i++ {
			if !fn(first+i, getCQEntry(page[cqPageHeaderBytes+i*cqEntryBytes:])) {
				return nil
			}
		}
	}
	for i, e := range v.open {
		o := v.openFirst + int64(i)
		if o < from {
			continue
		}
		if o >= to || !fn(o, e) {
			return nil
		}
	}
	return nil
}

// readFramesLocked appends the records of entries to dst, reading each run of records that
// lie back to back in one segment with one read, and checking every CRC32C. On error it
// returns how many records it appended. With noWait it reads only from the page cache
// (preadNoWait). Caller holds segMu.RLock.
func (s *Store) readFramesLocked(dst []byte, entries []ReadEntry, noWait bool) ([]byte, int, error) {
	for i := 0; i < len(entries); {
		e := entries[i]
		g, err := s.segmentForLocked(e.CommitLogOffset)
		if err != nil {
			return dst, i, err
		}
		end := g.base + g.size.Load()
		j, runEnd := i+1, e.CommitLogOffset+int64(e.Size)+frameTrailerBytes
		for j < len(entries) && entries[j].CommitLogOffset == runEnd && runEnd-e.CommitLogOffset < 1<<20 {
			runEnd += int64(entries[j].Size) + frameTrailerBytes
			j++
		}
		if e.CommitLogOffset < g.base+segmentHeaderBytes || runEnd > end {
			if j == i+1 {
				return dst, i, fmt.Errorf("%w: record at %d of %d bytes runs past segment end", ErrOffsetNotFound, e.CommitLogOffset, e.Size)
			}
			j, runEnd = i+1, e.CommitLogOffset+int64(e.Size)+frameTrailerBytes // read it alone
			if runEnd > end {
				return dst, i, fmt.Errorf("%w: record at %d of %d bytes runs past segment end", ErrOffsetNotFound, e.CommitLogOffset, e.Size)
			}
		}
		start := len(dst)
		n := int(runEnd - e.CommitLogOffset)
		if cap(dst)-start >= n {
			dst = dst[:start+n] // the caller sized dst; ReadAt overwrites it all
		} else {
			dst = append(dst, make([]byte, n)...)
		}
		if err := pread(g.f, dst[start:], e.CommitLogOffset-g.base, noWait); err != nil {
			return dst[:start], i, fmt.Errorf("read commit log at %d: %w", e.CommitLogOffset, err)
		}
		w, r := start, start
		for k := i; k < j; k++ {
			size := int(entries[k].Size)
			b := dst[r : r+size+frameTrailerBytes]
			if int(int32(binary.BigEndian.Uint32(b))) != size || crc32c(b[:size]) != binary.BigEndian.Uint32(b[size:]) {
				return dst[:w], k, fmt.Errorf("%w: no intact record of %d bytes at commit-log position %d", ErrCorrupt, size, entries[k].CommitLogOffset)
			}
			copy(dst[w:], b[:size])
			w, r = w+size, r+size+frameTrailerBytes
		}
		dst = dst[:w]
		i = j
	}
	return dst, len(entries), nil
}

func (s *Store) segmentForLocked(pos int64) (*segment, error) {
	i := sort.Search(len(s.segments), func(i int) bool { return s.segments[i].base > pos }) - 1
	if i < 0 {
		return nil, fmt.Errorf("%w: %d is below the oldest local segment", ErrOffsetNotFound, pos)
	}
	return s.segments[i], nil
}

func containsCode(codes []int64, c int64) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}

// readFrameLocked appends the record stored at pos (size bytes; 0 = read it from the record)
// to dst after checking its CRC32C. Caller holds segMu.RLock.
func (s *Store) readFrameLocked(dst []byte, pos int64, size int32) ([]byte, error) {
	g, err := s.segmentForLocked(pos)
	if err != nil {
		return dst, err
	}
	end := g.base + g.size.Load()
	if pos < g.base+segmentHeaderBytes || pos+message.MinRecordBytes+frameTrailerBytes > end {
		return dst, fmt.Errorf("%w: %d is outside segment %d", ErrOffsetNotFound, pos, g.base)
	}
	if size <= 0 {
		var sz [4]byte
		if _, err := g.f.ReadAt(sz[:], pos-g.base); err != nil {
			return dst, fmt.Errorf("read commit log at %d: %w", pos, err)
		}
		size = int32(binary.BigEndian.Uint32(sz[:]))
		if size < message.MinRecordBytes {
			return dst, fmt.Errorf("%w: no record starts at %d", ErrOffsetNotFound, pos)
		}
	}
	n := int(size) + frameTrailerBytes
	if pos+int64(n) > end {
		return dst, fmt.Errorf("%w: record at %d of %d bytes runs past segment end", ErrOffsetNotFound, pos, size)
	}
	start := len(dst)
	dst = append(dst, make([]byte, n)...)
	b := dst[start:]
	if _, err := g.f.ReadAt(b, pos-g.base); err != nil {
		return dst[:start], fmt.Errorf("read commit log at %d: %w", pos, err)
	}
	if int32(binary.BigEndian.Uint32(b)) != size || crc32c(b[:size]) != binary.BigEndian.Uint32(b[size:]) {
		return dst[:start], fmt.Errorf("%w: no intact record of %d bytes at commit-log position %d", ErrCorrupt, size, pos)
	}
	return dst[:start+int(size)], nil
}

// ReadAt returns the stored record at commit-log position pos, checked against its CRC32C.
// size may be 0 when unknown (view by offset message id).
func (s *Store) ReadAt(pos int64, size int32) ([]byte, error) {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	return s.readAtGated(pos, size)
}

// readAtGated is ReadAt for a caller that holds truncMu shared already (a second RLock would
// deadlock behind a waiting TruncateTo).
func (s *Store) readAtGated(pos int64, size int32) ([]byte, error) {
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	b, err := s.readFrameLocked(nil, pos, size)
	if err != nil {
		return nil, fmt.Errorf("read record at %d: %w", pos, err)
	}
	return b, nil
}

// NextRecordPos is the commit-log position of the record stored right after the record of
// size bytes at pos, in the same segment: frames are a record and its 4-byte CRC32C, back to
// back (FORMAT.md). The records of one Append are stored this way, one after another, so a
// caller can find the second record of an append from the first.
func NextRecordPos(pos int64, size int32) int64 { return pos + int64(size) + frameTrailerBytes }

// StoreTimeAt is the store time (ms) of the message at offset in the queue, from the consume
// queue alone (no commit-log read); ok is false when the offset is not held locally.
func (s *Store) StoreTimeAt(topic string, queueID int32, offset int64) (ms int64, ok bool) {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	q := s.queue(topic, queueID, false)
	if q == nil {
		return 0, false
	}
	for {
		q.mu.RLock()
		v := q.viewLocked(offset, offset+1)
		q.mu.RUnlock()
		if offset < v.minOff || offset >= v.maxOff {
			return 0, false
		}
		err := s.eachEntry(&v, offset, offset+1, func(_ int64, e cqEntry) bool { ms, ok = e.storeTs, true; return false })
		if errors.Is(err, errPageGone) {
			continue // retention moved the queue's start meanwhile
		}
		return ms, ok && err == nil
	}
}

// MinOffset is the queue's oldest local offset (0 for an unknown queue).
func (s *Store) MinOffset(topic string, queueID int32) int64 {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	if q := s.queue(topic, queueID, false); q != nil {
		m, _ := q.bounds()
		return m
	}
	return 0
}

// MaxOffset is one past the queue's last offset (0 for an unknown queue); under a read limit
// (SetReadLimit), one past the last offset the limit lets a reader see.
func (s *Store) MaxOffset(topic string, queueID int32) int64 {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	if q := s.queue(topic, queueID, false); q != nil {
		maxOff, limit := q.max.Load(), s.readLimit.Load()
		if limit >= s.logEnd.Load() {
			return maxOff // the common case, a master's: no record is past the limit
		}
		minOff, _ := q.bounds()
		vis, err := s.visibleEnd(q, minOff, maxOff, limit)
		if err != nil {
			return minOff // nothing readable is known past the start
		}
		return vis
	}
	return 0
}

// OffsetForTime returns the first offset whose store time is at or after tsMillis; the max
// offset if every message is older, the min offset if every message is newer; 0 for an unknown
// queue. It binary-searches the in-memory page table by first store time and reads one page.
func (s *Store) OffsetForTime(topic string, queueID int32, tsMillis int64) (int64, error) {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	q := s.queue(topic, queueID, false)
	if q == nil {
		return 0, nil
	}
	for {
		q.mu.RLock()
		j := q.searchPagesLocked(tsMillis)
		var v queueView
		from, to := q.minOff, q.endLocked()
		switch {
		case j == 0 && len(q.pages) > 0: // every page starts at or after ts
			q.mu.RUnlock()
			return from, nil
		case j == 0: // no pages: the unfinished page only
			v = q.viewLocked(from, to)
		default: // in page j-1 or at the start of the one after it
			lo := q.pageBase + int64(j-1)*cqPageEntries
			hi := min(lo+cqPageEntries, q.openBaseLocked())
			if j == len(q.pages) {
				hi = to
			}
			from = max(from, lo)
			v = q.viewLocked(from, hi)
			to = hi
		}
		q.mu.RUnlock()
		ans := to
		err := s.eachEntry(&v, from, to, func(o int64, e cqEntry) bool {
			if e.storeTs >= tsMillis {
				ans = o
				return false
			}
			return true
		})
		if errors.Is(err, errPageGone) {
			continue // retention moved the queue's start meanwhile
		}
		if err != nil {
			return 0, fmt.Errorf("offset for time in %s/%d: %w", topic, queueID, err)
		}
		return max(ans, v.minOff), nil
	}
}

// EarliestStoreTime is the store time of the message at the min offset, -1 if the queue has
// none.
func (s *Store) EarliestStoreTime(topic string, queueID int32) (int64, error) {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	q := s.queue(topic, queueID, false)
	if q == nil {
		return -1, nil
	}
	for {
		q.mu.RLock()
		from := q.minOff
		v := q.viewLocked(from, from+1)
		q.mu.RUnlock()
		if from >= v.maxOff {
			return -1, nil
		}
		ts := int64(-1)
		err := s.eachEntry(&v, from, from+1, func(_ int64, e cqEntry) bool { ts = e.storeTs; return false })
		if errors.Is(err, errPageGone) {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("earliest store time of %s/%d: %w", topic, queueID, err)
		}
		return ts, nil
	}
}

// KeyHit is one message found by key or unique key.
type KeyHit struct {
	Topic           string
	QueueID         int32
	QueueOffset     int64
	CommitLogOffset int64
	Size            int32
	StoreTimestamp  int64
	Record          []byte // the stored record
}

// LookupKey finds messages of topic whose KEYS contain key or whose UNIQ_KEY is key, stored
// within [beginMs, endMs], up to max (newest first kept), returned oldest first. Records past
// the read limit (SetReadLimit) are not found, as queue reads do not serve them.
func (s *Store) LookupKey(topic, key string, beginMs, endMs int64, max int) ([]KeyHit, error) {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	if max <= 0 {
		max = 64
	}
	s.qmu.RLock()
	below, dead := s.deleted[topic]
	s.qmu.RUnlock()
	minPos, limit := s.minPos.Load(), s.readLimit.Load()
	var hits []KeyHit
	lastPos := int64(-1)
	err := s.idx.keys.each(keyHash(topic, key), beginMs, endMs, func(e keyEntry) bool {
		if e.pos < minPos || (dead && e.pos < below) || e.pos == lastPos || NextRecordPos(e.pos, e.size) > limit {
			return true
		}
		lastPos = e.pos // a record naming the key twice is one hit
		rec, err := s.readAtGated(e.pos, e.size)
		if err != nil {
			return true // deleted by retention meanwhile
		}
		h, err := message.ParseRecordHeader(rec)
		if err != nil || h.Topic != topic || !(h.UniqKey == key || containsKey(h.Keys, key)) {
			return true // hash collision
		}
		hits = append(hits, KeyHit{Topic: topic, QueueID: h.QueueID, QueueOffset: h.QueueOffset, CommitLogOffset: e.pos,
			Size: e.size, StoreTimestamp: h.StoreTimestamp, Record: rec})
		return len(hits) < max
	})
	if err != nil {
		return nil, fmt.Errorf("lookup key %q of %s: %w", key, topic, err)
	}
	for i, j := 0, len(hits)-1; i < j; i, j = i+1, j-1 {
		hits[i], hits[j] = hits[j], hits[i]
	}
	return hits, nil
}

func containsKey(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}
