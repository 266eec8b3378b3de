package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// Coalesced cold reads.
//
// A queue's run inside a segment object is contiguous (FORMAT.md), so consecutive blocks
// of a run can be fetched with one ranged GET. A window is the longest stretch of blocks
// from the asked one that are neither cached nor being fetched, bounded by the run's end,
// Config.ReadAheadBytes compressed bytes and CacheBytes/readAheadCacheShare decoded bytes.
// The window's frames are read from the response body one by one: each is checked
// (CRC32C and decoded length), published to its waiters and put in the block cache as soon
// as it arrives, so the first record of a 32 MiB window is served after its first block,
// not after the whole window. A bad frame fails that block only; its neighbours carry
// their own checksums.
//
// Who asks for a window:
//   - a Read that misses, after a seek too: the window streams, so the first message is
//     served once the first block arrived, and a replay costs one GET per window instead of
//     one per block. Point reads (ReadAt, OffsetForTime, Lookup, Read of MaxCount 1) fetch
//     one block;
//   - prefetch, at the end of a Read, when less than half a window is cached or in flight
//     ahead of the reader, and only if a GET slot is free right now;
//   - prefetchSpan, at the end of a Read whose run has less than half a window left ahead
//     of the reader: the queue's next run is in another object (the next segment's, or a
//     compacted one), so its index and first window are fetched in the background too.
//     Without it a replay stalled at every object boundary on an index GET and then a
//     block GET, one after the other (issue 12). So a replay has at most about one window
//     plus one run's window in flight ahead of it, each capped by the limits below.
//
// Each block of a window has its own single-flight entry, so a concurrent reader of any
// block of the window waits for that block instead of fetching it again.

// readAheadCacheShare: one window decodes to at most CacheBytes/readAheadCacheShare.
const readAheadCacheShare = 4

var errTierClosed = errors.New("tier closed")

type fetchCall struct {
	key  string
	done chan struct{}
	blk  *decodedBlock
	err  error
	// waiters counts the readers waiting for the block (under flightMu); each is handed
	// a reference to it.
	waiters int32
}

func blockKey(object string, off int64) string { return object + "@" + strconv.FormatInt(off, 10) }

// windowLimits returns the compressed and decoded bytes one coalesced GET may cover; zero
// means one block per GET.
func (t *Tier) windowLimits() (comp, raw int64) {
	if t.cfg.DisableReadAhead {
		return 0, 0
	}
	return t.cfg.ReadAheadBytes, t.cfg.CacheBytes / readAheadCacheShare
}

// claimLocked registers fetch calls for blocks[i:j], the longest contiguous stretch from i
// of blocks neither cached nor in flight within the limits (at least block i, which the
// caller has checked). The caller holds flightMu.
func (t *Tier) claimLocked(object string, blocks []BlockRef, i int, maxComp, maxRaw int64) []*fetchCall {
	var calls []*fetchCall
	var comp, raw int64
	for j := i; j < len(blocks); j++ {
		b := blocks[j]
		if j > i {
			prev := blocks[j-1]
			if b.Offset != prev.Offset+prev.Size || comp+b.Size > maxComp || raw+b.RawSize > maxRaw {
				break
			}
		}
		key := blockKey(object, b.Offset)
		if j > i {
			if _, ok := t.flight[key]; ok || t.blocks.contains(key) {
				break
			}
		}
		c := &fetchCall{key: key, done: make(chan struct{})}
		t.flight[key] = c
		calls = append(calls, c)
		comp += b.Size
		raw += b.RawSize
	}
	return calls
}

// publishBlock completes one fetch call: a good block goes to the cache before the call leaves
// the flight table, so a later reader finds it in one or the other. Each waiter's reference
// is taken before the cache holds the block, so an eviction cannot recycle it first.
func (t *Tier) publishBlock(c *fetchCall, blk *decodedBlock, err error) {
	c.blk, c.err = blk, err
	t.flightMu.Lock()
	if err == nil {
		blk.refs.Add(c.waiters)
		if !t.blocks.add(c.key, blk, blk.cost()) {
			blk.release() // the reference the cache would have held
		}
	}
	delete(t.flight, c.key)
	t.flightMu.Unlock()
	close(c.done)
}

// fetchWindow fetches blocks[:len(calls)] of object with one ranged GET and publishes each
// block as its frame arrives. The caller holds a GET slot.
func (t *Tier) fetchWindow(ctx context.Context, object string, blocks []BlockRef, calls []*fetchCall) {
	first, last := blocks[0], blocks[len(calls)-1]
	n := last.Offset + last.Size - first.Offset
	k := 0
	rc, err := t.bucket.GetRange(ctx, object, first.Offset, n)
	if err == nil {
		defer rc.Close()
		// One frame buffer for the window, recycled across windows: DecodeBlock decodes into
		// a slice of its own, so a frame is garbage once decoded and need not be allocated
		// (and zeroed, and faulted in) per block or per window.
		var frame []byte
		defer func() {
			if frame != nil {
				putWindowFrame(frame)
			}
		}()
		for ; k < len(calls); k++ {
			b := blocks[k]
			if int64(cap(frame)) < b.Size {
				if frame != nil {
					putWindowFrame(frame)
				}
				frame = getWindowFrame(int(b.Size))
			}
			frame = frame[:b.Size]
			if _, err = io.ReadFull(rc, frame); err != nil {
				err = fmt.Errorf("read %s [%d+%d]: %w", object, b.Offset, b.Size, err)
				break
			}
			raw, derr := decodeBlockInto(frame, b.RawSize, getBlockBuf)
			var blk *decodedBlock
			if derr != nil {
				derr = fmt.Errorf("block at %d of %s: %w", b.Offset, object, derr)
			} else {
				blk = newDecodedBlock(raw)
				blk.recycle = true
			}
			t.publishBlock(calls[k], blk, derr)
		}
	}
	for ; k < len(calls); k++ {
		t.publishBlock(calls[k], nil, err)
	}
}

// goBackground runs fn in a goroutine the tier owns, unless the tier is closed.
func (t *Tier) goBackground(fn func()) bool {
	t.bgMu.Lock()
	defer t.bgMu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		fn()
	}()
	return true
}

// runBlock returns block i of a run, decompressed and checksum-verified, with a reference
// to it that the caller owns (decodedBlock). On a miss it
// fetches block i and, when wide, the window after it in one GET; a one-block fetch runs
// in the caller, a window in a goroutine of the tier so the caller returns as soon as its
// own block has arrived while the rest streams into the cache.
func (t *Tier) runBlock(ctx context.Context, object string, blocks []BlockRef, i int, wide bool) (*decodedBlock, error) {
	key := blockKey(object, blocks[i].Offset)
	if blk, ok := t.blocks.get(key); ok {
		t.metrics.cacheHits.Inc()
		return blk, nil
	}
	t.flightMu.Lock()
	c, ok := t.flight[key]
	if ok {
		c.waiters++
	}
	var calls []*fetchCall
	if !ok {
		if blk, ok := t.blocks.get(key); ok { // published since the first look
			t.flightMu.Unlock()
			t.metrics.cacheHits.Inc()
			return blk, nil
		}
		var maxComp, maxRaw int64
		if wide {
			maxComp, maxRaw = t.windowLimits()
		}
		calls = t.claimLocked(object, blocks, i, maxComp, maxRaw)
		c = calls[0]
		c.waiters++
	}
	t.flightMu.Unlock()
	if calls != nil {
		t.metrics.cacheMisses.Inc()
		if len(calls) == 1 {
			if err := t.gets.Acquire(ctx, 1); err != nil {
				t.publishBlock(c, nil, fmt.Errorf("wait for a cold read slot: %w", err))
				return nil, c.err
			}
			t.fetchWindow(ctx, object, blocks[i:], calls)
			t.gets.Release(1)
			return c.blk, c.err
		}
		started := t.goBackground(func() {
			if err := t.gets.Acquire(t.ctx, 1); err != nil {
				for _, c := range calls {
					t.publishBlock(c, nil, fmt.Errorf("wait for a cold read slot: %w", err))
				}
				return
			}
			defer t.gets.Release(1)
			t.fetchWindow(t.ctx, object, blocks[i:], calls)
		})
		if !started {
			for _, c := range calls {
				t.publishBlock(c, nil, fmt.Errorf("read %s: %w", object, errTierClosed))
			}
		}
	}
	select {
	case <-c.done:
		return c.blk, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prefetch starts a background window at the first block from i that is neither cached
// nor in flight, unless half a window ahead of the reader is already cached or on its way.
// It only uses a GET slot that is free right now: read-ahead never queues behind, or in
// front of, demand reads. It reports whether half a window from block i on is cached, in
// flight or being fetched by a window bounded by the limits, so the caller knows whether
// the queue's next run should be read ahead as well; with read-ahead off, or no GET slot
// free, it reports true, since nothing more should start.
func (t *Tier) prefetch(object string, blocks []BlockRef, i int) (covered bool) {
	maxComp, maxRaw := t.windowLimits()
	if maxComp == 0 {
		return true
	}
	var comp, raw int64
	t.flightMu.Lock()
	for ; i < len(blocks); i++ {
		key := blockKey(object, blocks[i].Offset)
		if _, ok := t.flight[key]; !ok && !t.blocks.contains(key) {
			break
		}
		comp += blocks[i].Size
		raw += blocks[i].RawSize
		if comp >= maxComp/2 || raw >= maxRaw/2 {
			t.flightMu.Unlock()
			return true
		}
	}
	if i == len(blocks) {
		t.flightMu.Unlock()
		return false
	}
	// A block the cache cannot hold is not worth fetching ahead of time.
	if blocks[i].RawSize > maxRaw || !t.gets.TryAcquire(1) {
		t.flightMu.Unlock()
		return true
	}
	calls := t.claimLocked(object, blocks, i, maxComp, maxRaw)
	t.flightMu.Unlock()
	started := t.goBackground(func() {
		defer t.gets.Release(1)
		t.fetchWindow(t.ctx, object, blocks[i:], calls)
	})
	if !started {
		t.gets.Release(1)
		for _, c := range calls {
			t.publishBlock(c, nil, fmt.Errorf("read %s: %w", object, errTierClosed))
		}
		return true
	}
	// A window that stopped before the run's end was cut by the limits: that is enough.
	for _, b := range blocks[i : i+len(calls)] {
		comp += b.Size
		raw += b.RawSize
	}
	return i+len(calls) < len(blocks) || comp >= maxComp/2 || raw >= maxRaw/2
}

// prefetchSpan reads ahead into a queue's next run (in another object) when the reader is
// within half a window of the end of the current one: it loads the run's index, unless
// cached, and starts a window at the run's first block, all in a goroutine of the tier, so
// a replay does not stall at every object boundary for an index GET and then a block GET.
// Like prefetch it only starts when a GET slot is free right now, and it keeps one fetch
// of an index in flight at most. Errors are dropped here: the demand read of that run
// meets them again and returns them.
func (t *Tier) prefetchSpan(sp span) {
	if maxComp, _ := t.windowLimits(); maxComp == 0 {
		return
	}
	obj := sp.seg.Object
	if v, ok := t.indexes.get("i:" + obj); ok {
		t.prefetchRun(sp, v.(*SegmentIndex))
		return
	}
	t.flightMu.Lock()
	if t.indexing[obj] || !t.gets.TryAcquire(1) {
		t.flightMu.Unlock()
		return
	}
	t.gets.Release(1) // segmentIndex takes its own slot
	// Only marks the fetch as taken; a demand read of the index fetches it itself.
	t.indexing[obj] = true
	t.flightMu.Unlock()
	unmark := func() {
		t.flightMu.Lock()
		delete(t.indexing, obj)
		t.flightMu.Unlock()
	}
	started := t.goBackground(func() {
		defer unmark()
		if idx, err := t.segmentIndex(t.ctx, sp.seg); err == nil {
			t.prefetchRun(sp, idx)
		}
	})
	if !started {
		unmark()
	}
}

// prefetchRun starts a window at the first block of span sp that the catalog serves.
func (t *Tier) prefetchRun(sp span, idx *SegmentIndex) {
	run, err := spanRun(sp, idx)
	if err != nil {
		return
	}
	bi := sort.Search(len(run.Blocks), func(j int) bool {
		b := run.Blocks[j]
		return b.FirstOffset+b.Count > sp.q.FirstOffset
	})
	if bi < len(run.Blocks) {
		t.prefetch(runObject(sp, run), run.Blocks, bi)
	}
}
