package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/stratamq/strata/broker/message"
)

// Segment is what the offloader needs from a sealed commit-log segment; the broker adapts
// the hot tier's sealed segments to it, so tier does not depend on broker/store.
type Segment interface {
	// Base is the commit-log offset of the segment's first byte; End is exclusive. The End
	// of one segment is the Base of the next.
	Base() int64
	End() int64
	// Records calls fn with every stored record in commit-log order; rec is valid only
	// during the call.
	Records(ctx context.Context, fn func(rec []byte) error) error
}

// Submit hands a sealed segment to the offloader. It never blocks: a segment already below
// the watermark is ignored, the others are uploaded in the background while the tier leads
// its group (Lead), lowest base first, and the watermark moves over them in commit-log order.
// Segments submitted while the tier does not lead wait for its next term. After a restart,
// submit every sealed segment still on disk again; offload resumes at the watermark.
func (t *Tier) Submit(seg Segment) {
	if t.cfg.ReadOnly {
		return
	}
	for {
		h := t.highEnd.Load()
		if seg.End() <= h || t.highEnd.CompareAndSwap(h, seg.End()) {
			break
		}
	}
	t.metrics.lag.Set(float64(max(0, t.highEnd.Load()-t.OffloadWatermark())))
	t.submitMu.Lock()
	t.submitted = append(t.submitted, seg)
	t.submitMu.Unlock()
	select {
	case t.submitCh <- struct{}{}:
	default:
	}
}

type uploadResult struct {
	seg ManifestSegment
	err error
}

// runOffload owns the offload queue during one term: it starts uploads up to
// OffloadConcurrency and commits finished ones to the manifest and the pointer in commit-log
// order. Segments it has not committed when the term ends go back to the submitted list for
// the next term.
func (t *Tier) runOffload(tm *term) {
	defer tm.wg.Done()
	ctx := tm.ctx
	var queue []Segment
	queued := map[int64]Segment{} // accepted this term and not committed yet
	done := map[int64]ManifestSegment{}
	results := make(chan uploadResult)
	inflight := 0
	defer func() {
		wm := t.cat.Load().m.Watermark
		var left []Segment
		for _, s := range queued {
			if s.End() > wm {
				left = append(left, s)
			}
		}
		t.submitMu.Lock()
		t.submitted = append(left, t.submitted...)
		t.submitMu.Unlock()
	}()
	var commitRetry <-chan time.Time
	commitBackoff := t.cfg.RetryMin
	for {
		t.submitMu.Lock()
		newSegs := t.submitted
		t.submitted = nil
		t.submitMu.Unlock()
		wm := t.cat.Load().m.Watermark
		for _, s := range newSegs {
			if _, dup := queued[s.Base()]; s.End() <= wm || dup {
				continue
			}
			if s.Base() < wm {
				t.cfg.Logger.Error("tier: sealed segment straddles the offload watermark; skipped",
					"base", s.Base(), "end", s.End(), "watermark", wm)
				continue
			}
			queued[s.Base()] = s
			queue = append(queue, s)
		}
		sort.Slice(queue, func(i, j int) bool { return queue[i].Base() < queue[j].Base() })
		for inflight < t.cfg.OffloadConcurrency && len(queue) > 0 {
			s := queue[0]
			queue = queue[1:]
			inflight++
			tm.wg.Add(1)
			go func() {
				defer tm.wg.Done()
				ms, err := t.uploadWithRetry(ctx, tm, s)
				select {
				case results <- uploadResult{ms, err}:
				case <-ctx.Done():
				}
			}()
		}
		if commitRetry == nil {
			if err := t.commitReady(ctx, tm, done); err != nil {
				if ctx.Err() != nil {
					return
				}
				t.cfg.Logger.Warn("tier: commit of offloaded segments failed; retrying", "err", err, "backoff", commitBackoff)
				commitRetry = time.After(commitBackoff)
				commitBackoff = min(2*commitBackoff, t.cfg.RetryMax)
			} else {
				commitBackoff = t.cfg.RetryMin
			}
			wm := t.cat.Load().m.Watermark
			for base, ms := range done {
				if ms.End <= wm {
					delete(done, base)
					delete(queued, base)
				}
			}
			for base, s := range queued {
				if s.End() <= wm { // committed by an earlier term, found on reload
					delete(queued, base)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.submitCh:
		case r := <-results:
			inflight--
			if r.err == nil {
				done[r.seg.Base] = r.seg
			}
		case <-commitRetry:
			commitRetry = nil
		}
	}
}

// uploadWithRetry uploads a segment's objects, retrying with backoff until it succeeds or
// ctx ends. Within a term, names and bytes are deterministic, so a retried upload is harmless.
func (t *Tier) uploadWithRetry(ctx context.Context, tm *term, s Segment) (ManifestSegment, error) {
	backoff := t.cfg.RetryMin
	for {
		ms, err := t.upload(ctx, tm.epoch(), s)
		if err == nil {
			t.clearStall(StallBucket)
			return ms, nil
		}
		if ctx.Err() != nil {
			return ms, err
		}
		if errors.As(err, new(bucketWriteError)) { // not a local read of the segment
			t.noteStall(StallBucket, err)
		}
		t.cfg.Logger.Warn("tier: offload failed; retrying", "base", s.Base(), "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ms, ctx.Err()
		}
		backoff = min(2*backoff, t.cfg.RetryMax)
	}
}

// upload encodes a segment and puts its objects, named for epoch, companions first so that
// the segment object, once present, only refers to objects already durable. The encoding
// lives off the Go heap (offHeap) until the puts end.
func (t *Tier) upload(ctx context.Context, epoch int64, s Segment) (ManifestSegment, error) {
	mem := offHeap{pool: &t.chunks}
	defer mem.free()
	enc, err := encodeSegment(ctx, t.cfg.Prefix, epoch, s, t.cfg.BlockBytes, t.cfg.OwnObjectBytes, &t.sizeHints, &mem)
	if err != nil {
		return ManifestSegment{}, err
	}
	for _, o := range append(enc.Companions, enc.Main) {
		r := &guardedReader{data: o.Data}
		err := t.bucket.Put(ctx, o.Name, r, int64(len(o.Data)))
		r.revoke()
		if err != nil {
			return ManifestSegment{}, bucketWriteError{fmt.Errorf("offload segment %d: put %s: %w", s.Base(), o.Name, err)}
		}
		t.metrics.offloadedBytes.Add(float64(len(o.Data)))
	}
	return manifestSegment(enc.Main.Name, int64(len(enc.Main.Data)), enc.Footer, &enc.Index), nil
}

// bucketWriteError marks a failed PUT, so OffloadStall blames the bucket only for those.
type bucketWriteError struct{ err error }

func (e bucketWriteError) Error() string { return e.err.Error() }
func (e bucketWriteError) Unwrap() error { return e.err }

// EncodeSegmentFrom reads a segment's records and encodes its objects, named for the writer
// of epoch.
func EncodeSegmentFrom(ctx context.Context, prefix string, epoch int64, s Segment, blockBytes int, ownObjectBytes int64) (*EncodedSegment, error) {
	return encodeSegment(ctx, prefix, epoch, s, blockBytes, ownObjectBytes, nil, nil)
}

// encodeSegment is EncodeSegmentFrom sizing the queues from sizes, when not nil, and
// encoding into mem, when not nil: the objects are then valid until mem is freed.
func encodeSegment(ctx context.Context, prefix string, epoch int64, s Segment, blockBytes int, ownObjectBytes int64, sizes *sizeHints, mem *offHeap) (*EncodedSegment, error) {
	e := NewSegmentEncoder(prefix, epoch, s.Base(), s.End(), blockBytes, ownObjectBytes)
	if mem != nil {
		e.mem, e.blocks = mem, &offHeap{pool: mem.pool}
		defer e.blocks.free()
	}
	if sizes != nil {
		e.sizeFrom(sizes)
	}
	if e.prev == nil {
		// No segment before this one to size the queues from: read this one once more for
		// them (queueRawBytes).
		prev, err := queueRawBytes(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("offload segment %d: size its queues: %w", s.Base(), err)
		}
		e.prev = prev
	}
	if err := s.Records(ctx, e.Add); err != nil {
		return nil, fmt.Errorf("offload segment %d: read records: %w", s.Base(), err)
	}
	return e.Finish()
}

// queueRawBytes reads s for the bytes each queue has in it, so that Add allocates a queue's
// open block once, at its size. Grown from empty instead, by doublings into fresh memory,
// the blocks of a segment spread over 40,000 queues cost a sixth of the broker's CPU while
// it offloaded (strata bench --topics 10000). Only the first segment an encoder sees pays
// this extra read: later ones size from the segment before (sizeHints).
func queueRawBytes(ctx context.Context, s Segment) (map[queueKey]queueSize, error) {
	byTopic := make(map[string][]int64)
	err := s.Records(ctx, func(rec []byte) error {
		topic, qid, size, ok := message.PeekRecordQueue(rec)
		if !ok || qid < 0 || qid >= maxSizedQueueID {
			return nil // Add reports a record it cannot take; an odd one is just not sized
		}
		q := byTopic[string(topic)]
		if int(qid) >= len(q) {
			q = append(q, make([]int64, int(qid)+1-len(q))...)
			byTopic[string(topic)] = q
		}
		q[qid] += int64(size)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[queueKey]queueSize)
	for topic, qs := range byTopic {
		for qid, n := range qs {
			if n > 0 {
				out[queueKey{topic, int32(qid)}] = queueSize{raw: int32(min(n, math.MaxInt32))}
			}
		}
	}
	return out, nil
}

// maxSizedQueueID bounds the queue ids queueRawBytes counts, so that a corrupt record
// cannot make it allocate for billions of queues.
const maxSizedQueueID = 1 << 16

// commitReady publishes the uploaded segments contiguous with the watermark: a new manifest
// version first, then the pointer, so the pointer never names anything not durable.
func (t *Tier) commitReady(ctx context.Context, tm *term, done map[int64]ManifestSegment) error {
	t.commitMu.Lock()
	defer t.commitMu.Unlock()
	cur := t.cat.Load()
	wm := cur.m.Watermark
	var add []ManifestSegment
	for {
		s, ok := done[wm]
		if !ok {
			break
		}
		add = append(add, s)
		wm = s.End
	}
	if len(add) == 0 {
		return nil
	}
	next := &Manifest{Version: ManifestVersion, Seq: cur.m.Seq + 1, Watermark: wm,
		Segments: append(append([]ManifestSegment(nil), cur.m.Segments...), add...), Compacted: cur.m.Compacted}
	if err := t.publish(ctx, tm, cur, next); err != nil {
		return fmt.Errorf("commit segments [%d,%d): %w", add[0].Base, wm, err)
	}
	t.metrics.offloadedSegments.Add(float64(len(add)))
	return nil
}

// publish writes next as a new manifest object named for tm's epoch, moves the pointer to it
// in one fenced compare-and-swap, and then deletes the manifest version before the current
// one (kept one round for readers in flight). Callers hold commitMu.
//
// A swap refused because the pointer moved (our own earlier swap whose answer was lost)
// reloads the pointer and manifest and lets the caller retry; one refused by the fence ends
// the term: a newer writer leads, and this tier does no writer work until it leads again.
func (t *Tier) publish(ctx context.Context, tm *term, cur *catalog, next *Manifest) error {
	if err := tm.ctx.Err(); err != nil {
		return fmt.Errorf("publish manifest %d: the term of epoch %d has ended: %w", next.Seq, tm.epoch(), ErrFenced)
	}
	if next.Tombstones == nil {
		next.Tombstones = cur.m.Tombstones
	}
	// Never write a manifest name twice: after a swap whose answer was lost, the pointer
	// may name the manifest of the previous attempt, which must stay as it was published.
	next.Seq = max(next.Seq, t.lastManifestSeq+1)
	t.lastManifestSeq = next.Seq
	data, err := EncodeManifest(next)
	if err != nil {
		return err
	}
	name := ManifestObjectName(t.cfg.Prefix, next.Seq, tm.epoch())
	if err := t.bucket.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
		err = fmt.Errorf("write manifest %s: %w", name, err)
		t.noteStall(StallBucket, err)
		return err
	}
	ptr, err := t.cfg.Pointers.CompareAndSwap(ctx, cur.ptr, TierPointer{OffloadWatermark: next.Watermark, Manifest: name}, tm.lead)
	switch {
	case errors.Is(err, ErrFenced):
		t.noteStall(StallNotWriter, err)
		tm.end(err)
		t.cfg.Logger.Debug("tier: pointer update fenced; stopping writer work", "prefix", t.cfg.Prefix, "epoch", tm.epoch(), "err", err)
		return fmt.Errorf("move tier pointer to %s: %w", name, err)
	case errors.Is(err, ErrPointerConflict):
		// The pointer moved under us. Only our own term can have moved it (the fence held),
		// so adopt what is stored and let the caller retry on it.
		if lerr := t.load(ctx); lerr != nil {
			return errors.Join(fmt.Errorf("move tier pointer to %s: %w", name, err), lerr)
		}
		if e := t.cat.Load().ptr.Epoch; e > tm.epoch() {
			ferr := fmt.Errorf("move tier pointer to %s: the pointer was written by epoch %d: %w", name, e, ErrFenced)
			t.noteStall(StallNotWriter, ferr)
			tm.end(ferr)
			return ferr
		}
		return fmt.Errorf("move tier pointer to %s: %w", name, err)
	case err != nil:
		err = fmt.Errorf("move tier pointer to %s: %w", name, err)
		t.noteStall(StallPointer, err)
		return err
	}
	// A publish went through: bucket and pointer store both work. Cleared before the new
	// catalog is visible, so whoever sees the watermark move sees no stale stall.
	t.clearStall(StallNone)
	c := newCatalog(ptr, next)
	c.prev = cur.ptr.Manifest
	t.setCatalog(c)
	if cur.prev != "" {
		// Best effort: a leftover old manifest costs a few bytes; the orphan sweep
		// (compact.go) removes it later.
		_ = t.bucket.Delete(ctx, cur.prev)
	}
	return nil
}
