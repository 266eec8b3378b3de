package tier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier/objstore"
)

// ErrNotInTier reports that the tier holds no data for the asked queue or offset.
var ErrNotInTier = errors.New("not in the cold tier")

// maxScanBlocks bounds the blocks one Read decodes when a filter rejects everything, so a
// selective filter cannot turn one pull into a full replay.
const maxScanBlocks = 64

// ReadRequest asks for a queue's stored records from Offset on.
type ReadRequest struct {
	Topic    string
	QueueID  int32
	Offset   int64
	MaxCount int // 0: 32
	MaxBytes int // 0: 4 MiB; at least one record is returned when one matches
	// TagFilter, when set, keeps only records whose tag hash code (message.TagHashCode of
	// the TAGS property) it accepts.
	TagFilter func(tagsCode int64) bool
	// Match, when set, keeps only records it accepts, after TagFilter. It sees the parsed
	// header, whose Properties field holds the encoded properties (the broker passes its
	// subscription's filter.Filter.MatchRecord), so records a consumer does not want never
	// leave the tier. It must not keep h.
	Match func(h *message.RecordHeader) bool
}

// ReadResult holds stored records (broker/message layout, ready to send) in queue order.
type ReadResult struct {
	Records [][]byte
	// Entries holds each record's entry, read from the header the tier checked, so callers
	// need not parse the records again.
	Entries []message.RecordEntry
	// NextOffset is the queue offset to read next: one past the last record examined,
	// filtered-out records included.
	NextOffset int64
	// held are the blocks Records are in, whose references Release drops.
	held *heldBlocks
}

type heldBlocks struct {
	once   sync.Once
	blocks []*decodedBlock
}

// Release lets the tier reuse the memory of Records (and of every copy of the result)
// for blocks it decodes later. A caller that sends the records calls it once they are
// sent, and must not touch them afterwards; a caller that never calls it keeps the records
// valid for as long as it holds them, at the cost of an allocation for a later block.
// Calls after the first do nothing.
func (r ReadResult) Release() {
	if r.held == nil {
		return
	}
	r.held.once.Do(func() {
		for _, b := range r.held.blocks {
			b.release()
		}
	})
}

// QueueRange returns the first and last queue offsets of a queue held in the tier.
func (t *Tier) QueueRange(topic string, queueID int32) (first, last int64, ok bool) {
	spans := t.cat.Load().queues[queueKey{topic, queueID}]
	if len(spans) == 0 {
		return 0, 0, false
	}
	return spans[0].q.FirstOffset, spans[len(spans)-1].q.LastOffset, true
}

// Read returns records of one queue from the tier, starting at the first cold offset at or
// after req.Offset. It returns ErrNotInTier when the tier has nothing at or after req.Offset.
//
// A miss fetches a window of the queue's run in one GET (readahead.go), decoded as it
// streams in, so the first record after a seek is served once the first block arrived; the
// read then prefetches the next window in the background, and, near the end of a run, the
// queue's next run in the next object. A read of MaxCount 1 starts
// with one block (point reads), and widens only if it has to scan on.
func (t *Tier) Read(ctx context.Context, req ReadRequest) (res ReadResult, err error) {
	err = t.retryStale(ctx, func() error {
		res, err = t.read(ctx, req, true)
		return err
	})
	return res, err
}

// read is Read; stream false (point lookups) fetches single blocks and never reads ahead.
func (t *Tier) read(ctx context.Context, req ReadRequest, stream bool) (ReadResult, error) {
	start := time.Now()
	res := ReadResult{NextOffset: req.Offset}
	if req.MaxCount <= 0 {
		req.MaxCount = 32
	}
	if req.MaxBytes <= 0 {
		req.MaxBytes = 4 << 20
	}
	spans := t.cat.Load().queues[queueKey{req.Topic, req.QueueID}]
	i := sort.Search(len(spans), func(i int) bool { return spans[i].q.LastOffset >= req.Offset })
	if i == len(spans) {
		return res, fmt.Errorf("read %s/%d at %d: %w", req.Topic, req.QueueID, req.Offset, ErrNotInTier)
	}
	wide := stream && req.MaxCount > 1
	parse := req.TagFilter != nil || req.Match != nil // else the records' entries suffice
	if n := min(req.MaxCount, 1024); n > 1 {
		res.Records, res.Entries = make([][]byte, 0, n), make([]message.RecordEntry, 0, n)
	}
	bytesOut, scanned := 0, 0
	full := func() bool { return len(res.Records) >= req.MaxCount || bytesOut >= req.MaxBytes }
	var (
		lastSpan   = -1
		lastObj    string
		lastBlocks []BlockRef
		lastNext   int
	)
	for ; i < len(spans) && !full() && scanned < maxScanBlocks; i++ {
		sp := spans[i]
		run, err := t.queueRun(ctx, sp)
		if err != nil {
			return res, fmt.Errorf("read %s/%d at %d: %w", req.Topic, req.QueueID, req.Offset, err)
		}
		if res.NextOffset < run.FirstOffset {
			res.NextOffset = run.FirstOffset
		}
		// The catalog's span may start later than the object's run: a topic tombstone hides
		// the deleted incarnation's records in a segment that crosses the deletion.
		if res.NextOffset < sp.q.FirstOffset {
			res.NextOffset = sp.q.FirstOffset
		}
		bi := sort.Search(len(run.Blocks), func(j int) bool {
			b := run.Blocks[j]
			return b.FirstOffset+b.Count > res.NextOffset
		})
		obj := runObject(sp, run)
		for ; bi < len(run.Blocks) && !full() && scanned < maxScanBlocks; bi++ {
			blk, err := t.runBlock(ctx, obj, run.Blocks, bi, wide)
			if err != nil {
				return res, fmt.Errorf("read %s/%d at %d: %w", req.Topic, req.QueueID, res.NextOffset, err)
			}
			scanned++
			wide = stream // a read that goes on past its first block is sequential
			visit := func(rec []byte, e message.RecordEntry, h *message.RecordHeader) bool {
				if e.QueueOffset < res.NextOffset {
					return true
				}
				if len(res.Records) > 0 && bytesOut+len(rec) > req.MaxBytes {
					return false
				}
				res.NextOffset = e.QueueOffset + 1
				if req.TagFilter != nil && !req.TagFilter(message.TagHashCode(h.Tags)) {
					return true
				}
				if req.Match != nil && !req.Match(h) {
					return true
				}
				res.Records = append(res.Records, rec)
				res.Entries = append(res.Entries, e)
				bytesOut += len(rec)
				return !full()
			}
			taken := len(res.Records)
			if !parse && blk.split() {
				// The entries the block was split into hold all that is needed: its bytes
				// are not walked again.
				for k, e := range blk.entries {
					if e.QueueOffset >= res.NextOffset && !visit(blk.record(k), e, nil) {
						break
					}
				}
			} else {
				err = splitRecordsFrom(blk.raw, res.NextOffset, parse, func(rec []byte, e message.RecordEntry, h *message.RecordHeader) (bool, error) {
					return visit(rec, e, h), nil
				})
			}
			if len(res.Records) == taken {
				blk.release() // no record of it was taken
			} else {
				if res.held == nil {
					res.held = &heldBlocks{}
				}
				res.held.blocks = append(res.held.blocks, blk)
			}
			if err != nil {
				return res, fmt.Errorf("read %s/%d: block %d of %s: %w", req.Topic, req.QueueID, run.Blocks[bi].Offset, obj, err)
			}
		}
		lastSpan, lastObj, lastBlocks, lastNext = i, obj, run.Blocks, bi
	}
	if stream && lastSpan >= 0 && !t.prefetch(lastObj, lastBlocks, lastNext) && lastSpan+1 < len(spans) {
		t.prefetchSpan(spans[lastSpan+1])
	}
	t.metrics.coldReadBytes.Add(float64(bytesOut))
	t.metrics.coldReadSeconds.Observe(time.Since(start).Seconds())
	return res, nil
}

func runObject(sp span, run *QueueRun) string {
	if run.Object != "" {
		return run.Object
	}
	return sp.seg.Object
}

// OffsetForTime returns the first cold queue offset whose store time is at or after tsMs.
// It returns ErrNotInTier when every cold record of the queue is older.
func (t *Tier) OffsetForTime(ctx context.Context, topic string, queueID int32, tsMs int64) (off int64, err error) {
	err = t.retryStale(ctx, func() error {
		off, err = t.offsetForTime(ctx, topic, queueID, tsMs)
		return err
	})
	return off, err
}

func (t *Tier) offsetForTime(ctx context.Context, topic string, queueID int32, tsMs int64) (int64, error) {
	spans := t.cat.Load().queues[queueKey{topic, queueID}]
	for _, sp := range spans {
		if sp.q.LastTime < tsMs {
			continue
		}
		run, err := t.queueRun(ctx, sp)
		if err != nil {
			return 0, fmt.Errorf("offset for time %d of %s/%d: %w", tsMs, topic, queueID, err)
		}
		for _, b := range run.Blocks {
			if b.MaxTime < tsMs {
				continue
			}
			raw, err := t.block(ctx, blockLoc{runObject(sp, run), b})
			if err != nil {
				return 0, fmt.Errorf("offset for time %d of %s/%d: %w", tsMs, topic, queueID, err)
			}
			found := int64(-1)
			err = SplitRecords(raw, func(_ []byte, h *message.RecordHeader) (bool, error) {
				if h.StoreTimestamp >= tsMs {
					found = h.QueueOffset
					return false, nil
				}
				return true, nil
			})
			if err != nil {
				return 0, fmt.Errorf("offset for time %d of %s/%d: %w", tsMs, topic, queueID, err)
			}
			if found >= 0 {
				return found, nil
			}
		}
	}
	return 0, fmt.Errorf("offset for time %d of %s/%d: %w", tsMs, topic, queueID, ErrNotInTier)
}

// KeyQuery asks for messages of a topic by key or unique key within a store-time window.
type KeyQuery struct {
	Topic string
	Key   string
	// Uniq looks Key up among unique keys (client message ids) instead of KEYS.
	Uniq           bool
	BeginMs, EndMs int64 // inclusive window on store time; EndMs 0 means no upper bound
	MaxResults     int   // 0: 64
}

// Lookup returns the stored records of a topic whose key (or unique key) matches, oldest
// first.
func (t *Tier) Lookup(ctx context.Context, q KeyQuery) (out [][]byte, err error) {
	err = t.retryStale(ctx, func() error {
		out, err = t.lookup(ctx, q)
		return err
	})
	return out, err
}

func (t *Tier) lookup(ctx context.Context, q KeyQuery) ([][]byte, error) {
	if q.MaxResults <= 0 {
		q.MaxResults = 64
	}
	cat := t.cat.Load()
	var out [][]byte
	for _, seg := range cat.topics[q.Topic] {
		keys, err := t.segmentKeys(ctx, seg)
		if err != nil {
			return out, fmt.Errorf("lookup key %q in %s: %w", q.Key, q.Topic, err)
		}
		for qi := range seg.Queues {
			mq := &seg.Queues[qi]
			if mq.Topic != q.Topic || mq.Dropped || mq.Compacted != "" || mq.LastTime < q.BeginMs || (q.EndMs > 0 && mq.FirstTime > q.EndMs) {
				continue
			}
			list := keys[qi].Keys
			if q.Uniq {
				list = keys[qi].UniqKeys
			}
			for _, k := range list {
				if k.Key != q.Key {
					continue
				}
				r, err := t.read(ctx, ReadRequest{Topic: mq.Topic, QueueID: mq.QueueID, Offset: k.QueueOffset, MaxCount: 1}, false)
				if err != nil {
					return out, fmt.Errorf("lookup key %q: %w", q.Key, err)
				}
				if len(r.Records) == 1 {
					h, err := message.ParseRecordHeader(r.Records[0])
					if err == nil && h.QueueOffset == k.QueueOffset && h.StoreTimestamp >= q.BeginMs && (q.EndMs == 0 || h.StoreTimestamp <= q.EndMs) {
						out = append(out, r.Records[0])
					}
				}
				if len(out) >= q.MaxResults {
					return out, nil
				}
			}
		}
	}
	return out, nil
}

// retryStale runs fn and, when it failed because an object it read is gone (compaction or
// retention deleted it after fn loaded its catalog), runs it again on the newer catalog; a
// tier that is not the group's writer (read-only, or not leading) first reloads the pointer
// and manifest, since another process writes them.
// Writers publish a manifest before deleting what it no longer references, so a fresh
// catalog never names a deleted object.
func (t *Tier) retryStale(ctx context.Context, fn func() error) error {
	for attempt := 0; ; attempt++ {
		c0 := t.cat.Load()
		err := fn()
		if err == nil || !objstore.IsNotFound(err) || attempt >= 3 || ctx.Err() != nil {
			return err
		}
		if t.Epoch() == 0 && t.cat.Load() == c0 {
			if rerr := t.Refresh(ctx); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		if t.cat.Load() == c0 {
			return err
		}
		t.metrics.staleRetries.Inc()
	}
}

// queueRun returns the index entry of one span, from the index cache or the bucket.
func (t *Tier) queueRun(ctx context.Context, sp span) (*QueueRun, error) {
	idx, err := t.segmentIndex(ctx, sp.seg)
	if err != nil {
		return nil, err
	}
	return spanRun(sp, idx)
}

// spanRun returns the index entry of one span from its object's index.
func spanRun(sp span, idx *SegmentIndex) (*QueueRun, error) {
	if sp.qi >= len(idx.Queues) {
		return nil, fmt.Errorf("%w: %s index has %d queues, manifest %d", ErrCorrupt, sp.seg.Object, len(idx.Queues), len(sp.seg.Queues))
	}
	run := &idx.Queues[sp.qi]
	if run.Topic != sp.q.Topic || run.QueueID != sp.q.QueueID {
		return nil, fmt.Errorf("%w: %s index queue %d is %s/%d, manifest says %s/%d", ErrCorrupt,
			sp.seg.Object, sp.qi, run.Topic, run.QueueID, sp.q.Topic, sp.q.QueueID)
	}
	return run, nil
}

func (t *Tier) segmentIndex(ctx context.Context, seg *ManifestSegment) (*SegmentIndex, error) {
	key := "i:" + seg.Object
	if v, ok := t.indexes.get(key); ok {
		return v.(*SegmentIndex), nil
	}
	b, err := t.rangeGet(ctx, seg.Object, seg.IndexOffset, seg.IndexLength)
	if err != nil {
		return nil, err
	}
	if err := checkSection(b, seg.IndexCRC, "index of "+seg.Object); err != nil {
		return nil, err
	}
	idx, err := DecodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("index of %s: %w", seg.Object, err)
	}
	t.indexes.add(key, idx, int64(len(b))*4)
	return idx, nil
}

func (t *Tier) segmentKeys(ctx context.Context, seg *ManifestSegment) ([]QueueKeys, error) {
	key := "k:" + seg.Object
	if v, ok := t.indexes.get(key); ok {
		return v.([]QueueKeys), nil
	}
	b, err := t.rangeGet(ctx, seg.Object, seg.KeysOffset, seg.KeysLength)
	if err != nil {
		return nil, err
	}
	if err := checkSection(b, seg.KeysCRC, "keys of "+seg.Object); err != nil {
		return nil, err
	}
	keys, err := DecodeKeys(b)
	if err != nil {
		return nil, fmt.Errorf("keys of %s: %w", seg.Object, err)
	}
	if len(keys) != len(seg.Queues) {
		return nil, fmt.Errorf("%w: keys of %s hold %d queues, manifest %d", ErrCorrupt, seg.Object, len(keys), len(seg.Queues))
	}
	t.indexes.add(key, keys, int64(len(b))*4)
	return keys, nil
}

// rangeGet reads [off, off+n) of an object under the GET concurrency limit.
func (t *Tier) rangeGet(ctx context.Context, object string, off, n int64) ([]byte, error) {
	if err := t.gets.Acquire(ctx, 1); err != nil {
		return nil, fmt.Errorf("wait for a cold read slot: %w", err)
	}
	defer t.gets.Release(1)
	return readRange(ctx, t.bucket, object, off, n)
}

type blockLoc struct {
	object string
	ref    BlockRef
}

// block returns one decompressed, checksum-verified block, sharing one GET among
// concurrent callers of the same block. It never reads ahead (point reads).
func (t *Tier) block(ctx context.Context, loc blockLoc) ([]byte, error) {
	blk, err := t.runBlock(ctx, loc.object, []BlockRef{loc.ref}, 0, false)
	if err != nil {
		return nil, err
	}
	return blk.raw, nil
}
