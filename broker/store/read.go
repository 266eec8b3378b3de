package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"

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
}

// Read returns a run of one queue's messages from req.Offset, bounded by count and bytes and
// filtered by tag codes, as stored bytes, with the status and the next offset to pull from.
func (s *Store) Read(ctx context.Context, req ReadRequest) (ReadResult, error) {
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
	var picked []ReadEntry
	q.mu.RLock()
	minOff, maxOff := q.base, q.base+int64(len(q.entries))
	res := ReadResult{MinOffset: minOff, MaxOffset: maxOff}
	switch {
	case maxOff == 0:
		res.Status, res.NextOffset = ReadNoMessageInQueue, 0
	case req.Offset < minOff:
		res.Status, res.NextOffset = ReadOffsetTooSmall, minOff
	case req.Offset == maxOff:
		res.Status, res.NextOffset = ReadNoNewMessage, req.Offset
	case req.Offset > maxOff:
		res.Status, res.NextOffset = ReadOffsetOverflow, maxOff
	default:
		bytes := 0
		off := req.Offset
		for scanned := 0; off < maxOff && scanned < maxScanEntries && len(picked) < maxMsgs; scanned++ {
			e := q.entries[off-minOff]
			if len(req.TagCodes) > 0 && !containsCode(req.TagCodes, e.tag) {
				off++
				continue
			}
			if len(picked) > 0 && bytes+int(e.size) > maxBytes {
				break
			}
			bytes += int(e.size)
			picked = append(picked, ReadEntry{QueueOffset: off, CommitLogOffset: e.pos, Size: e.size, TagCode: e.tag, StoreTimestamp: e.storeTs})
			off++
		}
		res.NextOffset = off
		res.Status = ReadNoMatch
	}
	q.mu.RUnlock()
	if len(picked) == 0 {
		return res, nil
	}
	total := 0
	for _, e := range picked {
		total += int(e.Size) + frameTrailerBytes
	}
	buf := make([]byte, 0, total)
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	for i, e := range picked {
		var err error
		buf, err = s.readFrameLocked(buf, e.CommitLogOffset, e.Size)
		if err != nil {
			if e.CommitLogOffset < s.minPos.Load() { // deleted by retention meanwhile
				if i == 0 {
					minOff, _ := q.bounds()
					return ReadResult{Status: ReadOffsetTooSmall, NextOffset: minOff, MinOffset: minOff, MaxOffset: res.MaxOffset}, nil
				}
				picked, res.NextOffset = picked[:i], e.QueueOffset
				break
			}
			return ReadResult{}, fmt.Errorf("read %s/%d offset %d: %w", req.Topic, req.QueueID, e.QueueOffset, err)
		}
	}
	res.Status, res.Records, res.Entries = ReadFound, buf, picked
	return res, nil
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
	i := sort.Search(len(s.segments), func(i int) bool { return s.segments[i].base > pos }) - 1
	if i < 0 {
		return dst, fmt.Errorf("%w: %d is below the oldest local segment", ErrOffsetNotFound, pos)
	}
	g := s.segments[i]
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

// MinOffset is the queue's oldest local offset (0 for an unknown queue).
func (s *Store) MinOffset(topic string, queueID int32) int64 {
	if q := s.queue(topic, queueID, false); q != nil {
		m, _ := q.bounds()
		return m
	}
	return 0
}

// MaxOffset is one past the queue's last offset (0 for an unknown queue).
func (s *Store) MaxOffset(topic string, queueID int32) int64 {
	if q := s.queue(topic, queueID, false); q != nil {
		return q.max.Load()
	}
	return 0
}

// OffsetForTime returns the first offset whose store time is at or after tsMillis; the max
// offset if every message is older, the min offset if every message is newer; 0 for an unknown
// queue.
func (s *Store) OffsetForTime(topic string, queueID int32, tsMillis int64) (int64, error) {
	if q := s.queue(topic, queueID, false); q != nil {
		return q.offsetForTime(tsMillis), nil
	}
	return 0, nil
}

// EarliestStoreTime is the store time of the message at the min offset, -1 if the queue has
// none.
func (s *Store) EarliestStoreTime(topic string, queueID int32) (int64, error) {
	q := s.queue(topic, queueID, false)
	if q == nil {
		return -1, nil
	}
	q.mu.RLock()
	defer q.mu.RUnlock()
	if len(q.entries) == 0 {
		return -1, nil
	}
	return q.entries[0].storeTs, nil
}

// StoreTimeAt is the store time (ms) of the message at offset in the queue, from the consume
// queue alone (no commit-log read); ok is false when the offset is not held locally.
func (s *Store) StoreTimeAt(topic string, queueID int32, offset int64) (ms int64, ok bool) {
	q := s.queue(topic, queueID, false)
	if q == nil {
		return 0, false
	}
	q.mu.RLock()
	defer q.mu.RUnlock()
	i := offset - q.base
	if i < 0 || i >= int64(len(q.entries)) {
		return 0, false
	}
	return q.entries[i].storeTs, true
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
// within [beginMs, endMs], up to max (newest first kept), returned oldest first.
func (s *Store) LookupKey(topic, key string, beginMs, endMs int64, max int) ([]KeyHit, error) {
	if max <= 0 {
		max = 64
	}
	s.keyMu.RLock()
	refs := s.keys.lookup(keyHash(topic, key))
	s.keyMu.RUnlock()
	s.qmu.RLock()
	below, dead := s.deleted[topic]
	s.qmu.RUnlock()
	var hits []KeyHit
	for i := len(refs) - 1; i >= 0 && len(hits) < max; i-- {
		r := refs[i]
		if r.storeTs < beginMs || r.storeTs > endMs || (dead && r.pos < below) {
			continue
		}
		rec, err := s.ReadAt(r.pos, r.size)
		if err != nil {
			continue // deleted by retention meanwhile
		}
		h, err := message.ParseRecordHeader(rec)
		if err != nil || h.Topic != topic || !(h.UniqKey == key || containsKey(h.Keys, key)) {
			continue // hash collision
		}
		hits = append(hits, KeyHit{Topic: topic, QueueID: r.queueID, QueueOffset: r.qoff, CommitLogOffset: r.pos,
			Size: r.size, StoreTimestamp: r.storeTs, Record: rec})
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
