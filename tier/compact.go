package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier/objstore"
)

// Compaction.
//
// A segment object keeps each queue's records in one contiguous run, so replaying a queue
// costs about one GET per segment it appears in. When many queues share a segment, runs
// are small and a long replay becomes many small GETs. Compaction merges a queue's
// consecutive small pieces (segment runs below CompactMinRunBytes, and compacted objects
// below half of CompactTargetBytes) into one per-queue compacted object of up to
// CompactTargetBytes, in the segment-object format with a single queue run (FORMAT.md):
//
//  1. plan from the current catalog (no lock held);
//  2. write each compacted object, one at a time: the pieces' block frames are fetched
//     with one ranged GET per piece, checked (CRC32C, decoded length) and copied verbatim;
//     keys are rebuilt from the records, exactly as offload wrote them. The name is
//     deterministic within the writer's term (CompactedObjectName carries its epoch) and so
//     are the bytes, so a retried pass is harmless;
//  3. publish one manifest version for the pass (under commitMu, re-checking every piece
//     against the manifest current then, so offload, retention or a tombstone that moved in
//     between is respected), fenced by the term like every publish: runs point at their
//     compacted object, merged compacted objects leave the list, segment objects whose every
//     run is compacted, dropped or hidden are marked ObjectDeleted;
//  4. only then delete the objects nothing references any more.
//
// Only the group's elected writer compacts (Compact fails with ErrFenced otherwise). A crash
// between 2 and 3, or a writer deposed in between, leaves compacted objects no manifest
// names; they are orphans, and so are segment objects of a term that ended before
// committing them and manifests whose pointer update failed. Each pass first deletes orphans
// (sweepOrphans, the rule is in doc.go): objects the current manifest does not name whose
// epoch is older than the sweeper's own.
//
// Readers that loaded the previous manifest may find an object gone: Read, OffsetForTime,
// Lookup and ReadAt retry on the newer catalog when a GET reports ErrNotFound (retryStale;
// a read-only tier reloads the pointer first), so no grace period is needed.

// compactPublishEvery bounds the compacted objects one manifest version publishes, so a
// long pass makes progress durable regularly.
const compactPublishEvery = 1024

// CompactStats reports what one compaction pass did.
type CompactStats struct {
	Objects int   // compacted objects published
	Pieces  int   // segment runs and smaller compacted objects merged into them
	Bytes   int64 // bytes of compacted objects written
	Deleted int   // objects deleted once the pass's manifest no longer referenced them
	Swept   int   // orphans of older terms deleted (sweepOrphans)
}

func (t *Tier) isCompactedObject(name string) bool {
	return strings.HasPrefix(name, t.cfg.Prefix+"/compacted/")
}

// piece is one input of a compacted object.
type piece struct {
	sp        span
	compacted bool // sp.seg is an entry of Manifest.Compacted
}

type compactJob struct {
	pieces []piece
}

type compactResult struct {
	job   compactJob
	entry ManifestSegment
}

// Compact runs one compaction pass now, orphan sweep first (the background compactor runs
// one every CompactInterval while the tier leads). A tier that does not lead gets ErrFenced.
func (t *Tier) Compact(ctx context.Context) (CompactStats, error) {
	var st CompactStats
	tm, err := t.writer("compaction")
	if err != nil {
		return st, err
	}
	ctx, cancel := withTerm(ctx, tm)
	defer cancel()
	t.compactMu.Lock()
	defer t.compactMu.Unlock()
	n, err := t.sweepOrphans(ctx, tm)
	st.Swept += n
	if err != nil {
		return st, err
	}
	jobs, err := t.planCompaction(ctx, t.cat.Load())
	if err != nil {
		return st, fmt.Errorf("tier compaction on %s: plan: %w", t.cfg.Prefix, err)
	}
	var done []compactResult
	flush := func() error {
		if len(done) == 0 {
			return nil
		}
		pst, err := t.publishCompacted(ctx, tm, done)
		st.Objects += pst.Objects
		st.Pieces += pst.Pieces
		st.Deleted += pst.Deleted
		done = done[:0]
		return err
	}
	for _, j := range jobs {
		r, size, err := t.writeCompacted(ctx, tm.epoch(), j)
		if err != nil {
			return st, errors.Join(fmt.Errorf("tier compaction on %s: %w", t.cfg.Prefix, err), flush())
		}
		st.Bytes += size
		done = append(done, r)
		if len(done) >= compactPublishEvery {
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	if st.Objects > 0 || st.Swept > 0 {
		t.cfg.Logger.Info("tier compaction", "prefix", t.cfg.Prefix, "objects", st.Objects,
			"pieces", st.Pieces, "bytes", st.Bytes, "deleted", st.Deleted, "orphans", st.Swept)
	}
	return st, nil
}

// orphanDirs are the folders under the prefix whose objects the orphan sweep considers;
// tombstone objects are never deleted.
var orphanDirs = []string{"/segments/", "/compacted/", "/manifest/"}

// sweepOrphans deletes the objects no manifest will name again: those under orphanDirs that
// the current manifest does not name (nor its predecessor, kept one round for readers) and
// whose epoch is older than tm's. It stops, with ErrFenced, as soon as the term ends.
// Objects of tm's own epoch are never swept, so the sweep needs no lock against this
// tier's own offload and compaction (doc.go explains why older ones are safe).
func (t *Tier) sweepOrphans(ctx context.Context, tm *term) (int, error) {
	var orphans []string
	for _, dir := range orphanDirs {
		err := t.bucket.List(ctx, t.cfg.Prefix+dir, func(name string) error {
			if ObjectEpoch(name) < tm.epoch() {
				orphans = append(orphans, name)
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("tier orphan sweep on %s: list %s: %w", t.cfg.Prefix, dir, err)
		}
	}
	// The catalog is read after listing: a manifest published meanwhile by this term names
	// nothing older that its predecessor did not (publishes only add objects of tm's epoch).
	cat := t.cat.Load()
	live := cat.liveObjects()
	orphans = slices.DeleteFunc(orphans, func(name string) bool { return live[name] })
	if len(orphans) == 0 {
		return 0, nil
	}
	// Whoever published since our manifest (a successor we have not heard of yet) may name
	// what we would delete: then leave the sweep to a later pass.
	ptr, err := t.cfg.Pointers.Load(ctx)
	if err != nil {
		return 0, fmt.Errorf("tier orphan sweep on %s: load tier pointer: %w", t.cfg.Prefix, err)
	}
	if ptr.Epoch > tm.epoch() {
		err := fmt.Errorf("tier orphan sweep on %s: the pointer was written by epoch %d: %w", t.cfg.Prefix, ptr.Epoch, ErrFenced)
		t.noteStall(StallNotWriter, err)
		tm.end(err)
		return 0, err
	}
	if ptr.Revision != cat.ptr.Revision {
		return 0, nil
	}
	n := 0
	for _, name := range orphans {
		if tm.ctx.Err() != nil {
			return n, fmt.Errorf("tier orphan sweep on %s: the term of epoch %d ended: %w", t.cfg.Prefix, tm.epoch(), ErrFenced)
		}
		if err := t.bucket.Delete(ctx, name); err != nil && !objstore.IsNotFound(err) {
			return n, fmt.Errorf("tier orphan sweep on %s: delete unreferenced %s: %w", t.cfg.Prefix, name, err)
		}
		n++
		t.metrics.orphansDeleted.Inc()
	}
	return n, nil
}

// liveObjects names every object the catalog's manifest references, the manifest itself and
// its predecessor included.
func (c *catalog) liveObjects() map[string]bool {
	live := map[string]bool{c.ptr.Manifest: true, c.prev: true}
	for _, s := range c.m.Segments {
		if !s.ObjectDeleted {
			live[s.Object] = true
		}
		for _, q := range s.Queues {
			if q.Object != "" && !q.Dropped {
				live[q.Object] = true
			}
		}
	}
	for _, cs := range c.m.Compacted {
		live[cs.Object] = true
	}
	delete(live, "")
	return live
}

// planCompaction picks, per queue, maximal stretches of consecutive small pieces and cuts
// them into jobs of at most CompactTargetBytes.
func (t *Tier) planCompaction(ctx context.Context, cat *catalog) ([]compactJob, error) {
	keys := make([]queueKey, 0, len(cat.queues))
	for k := range cat.queues {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].topic != keys[j].topic {
			return keys[i].topic < keys[j].topic
		}
		return keys[i].queue < keys[j].queue
	})
	target := t.cfg.CompactTargetBytes
	var jobs []compactJob
	for _, k := range keys {
		var cur []piece
		var curBytes int64
		emit := func(closed bool) {
			if len(cur) >= 2 && (closed || len(cur) >= t.cfg.CompactMinRuns || 2*curBytes >= target) {
				jobs = append(jobs, compactJob{pieces: cur})
			}
			cur, curBytes = nil, 0
		}
		for _, sp := range cat.queues[k] {
			p, n, ok, err := t.candidate(ctx, sp)
			if err != nil {
				return nil, err
			}
			if !ok {
				emit(false)
				continue
			}
			if len(cur) > 0 && curBytes+n > target {
				emit(true)
			}
			cur = append(cur, p)
			curBytes += n
		}
		emit(false)
	}
	return jobs, nil
}

// candidate reports whether a span can be merged, and its uncompressed size.
func (t *Tier) candidate(ctx context.Context, sp span) (piece, int64, bool, error) {
	p := piece{sp: sp, compacted: t.isCompactedObject(sp.seg.Object)}
	if sp.q != &sp.seg.Queues[sp.qi] || sp.q.Object != "" {
		// Clipped by a tombstone (left to retention) or in an object of its own (large).
		return p, 0, false, nil
	}
	n := sp.q.RawBytes
	if n == 0 { // a manifest written before compaction: the index knows
		run, err := t.queueRun(ctx, sp)
		if err != nil {
			return p, 0, false, err
		}
		n = run.RawBytes
	}
	if p.compacted {
		return p, n, 2*n < t.cfg.CompactTargetBytes, nil
	}
	return p, n, n < t.cfg.CompactMinRunBytes, nil
}

// writeCompacted builds one compacted object from a job's pieces and puts it, named for epoch.
func (t *Tier) writeCompacted(ctx context.Context, epoch int64, j compactJob) (compactResult, int64, error) {
	first := j.pieces[0].sp
	last := j.pieces[len(j.pieces)-1].sp
	run := QueueRun{Topic: first.q.Topic, QueueID: first.q.QueueID, FirstOffset: first.q.FirstOffset,
		LastOffset: last.q.LastOffset, FirstTime: first.q.FirstTime, LastTime: first.q.LastTime}
	idx := SegmentIndex{Base: first.seg.Base, End: last.seg.End}
	var data []byte
	var keys QueueKeys
	for _, p := range j.pieces {
		r, err := t.queueRun(ctx, p.sp)
		if err != nil {
			return compactResult{}, 0, err
		}
		if r.FirstOffset != p.sp.q.FirstOffset || r.LastOffset != p.sp.q.LastOffset || len(r.Blocks) == 0 {
			return compactResult{}, 0, fmt.Errorf("%w: %s run %s/%d is [%d,%d], manifest says [%d,%d]", ErrCorrupt,
				p.sp.seg.Object, r.Topic, r.QueueID, r.FirstOffset, r.LastOffset, p.sp.q.FirstOffset, p.sp.q.LastOffset)
		}
		obj := runObject(p.sp, r)
		b0, bn := r.Blocks[0], r.Blocks[len(r.Blocks)-1]
		buf, err := t.rangeGet(ctx, obj, b0.Offset, bn.Offset+bn.Size-b0.Offset)
		if err != nil {
			return compactResult{}, 0, fmt.Errorf("read run %s/%d of %s: %w", r.Topic, r.QueueID, obj, err)
		}
		for _, b := range r.Blocks {
			lo := b.Offset - b0.Offset
			if lo < 0 || lo+b.Size > int64(len(buf)) {
				return compactResult{}, 0, fmt.Errorf("%w: block at %d of %s lies outside its run", ErrCorrupt, b.Offset, obj)
			}
			frame := buf[lo : lo+b.Size]
			raw, err := DecodeBlock(frame, b.RawSize)
			if err != nil {
				return compactResult{}, 0, fmt.Errorf("block at %d of %s: %w", b.Offset, obj, err)
			}
			err = SplitRecords(raw, func(_ []byte, h *message.RecordHeader) (bool, error) {
				for _, key := range h.Keys {
					keys.Keys = append(keys.Keys, KeyEntry{key, h.QueueOffset})
				}
				if h.UniqKey != "" {
					keys.UniqKeys = append(keys.UniqKeys, KeyEntry{h.UniqKey, h.QueueOffset})
				}
				return true, nil
			})
			if err != nil {
				return compactResult{}, 0, fmt.Errorf("block at %d of %s: %w", b.Offset, obj, err)
			}
			nb := b
			nb.Offset = int64(len(data))
			data = append(data, frame...)
			run.Blocks = append(run.Blocks, nb)
		}
		run.Count += r.Count
		run.RawBytes += r.RawBytes
		run.FirstTime = min(run.FirstTime, r.FirstTime)
		run.LastTime = max(run.LastTime, r.LastTime)
	}
	idx.Queues = []QueueRun{run}
	obj, f := layoutObject(data, idx, []QueueKeys{keys})
	name := CompactedObjectName(t.cfg.Prefix, run.Topic, run.QueueID, run.FirstOffset, run.LastOffset, epoch)
	if err := t.bucket.Put(ctx, name, bytes.NewReader(obj), int64(len(obj))); err != nil {
		return compactResult{}, 0, fmt.Errorf("write %s: %w", name, err)
	}
	t.metrics.compactedBytes.Add(float64(len(obj)))
	return compactResult{job: j, entry: manifestSegment(name, int64(len(obj)), f, &idx)}, int64(len(obj)), nil
}

// publishCompacted publishes compacted objects in one manifest version and then deletes
// the objects it no longer references. A result whose pieces changed since planning (a run
// dropped by retention, a segment deleted) is left out and its object deleted.
func (t *Tier) publishCompacted(ctx context.Context, tm *term, results []compactResult) (CompactStats, error) {
	var st CompactStats
	t.commitMu.Lock()
	var doomed []string
	for attempt := 0; ; attempt++ {
		st = CompactStats{}
		doomed = doomed[:0]
		cur := t.cat.Load()
		next := &Manifest{Seq: cur.m.Seq + 1, Watermark: cur.m.Watermark, Tombstones: cur.m.Tombstones}
		next.Segments = make([]ManifestSegment, len(cur.m.Segments))
		segAt := map[int64]int{}
		for i, s := range cur.m.Segments {
			s.Queues = append([]ManifestQueue(nil), s.Queues...)
			next.Segments[i] = s
			segAt[s.Base] = i
		}
		comp := map[string]*ManifestSegment{}
		for _, c := range cur.m.Compacted {
			c := c
			comp[c.Object] = &c
		}
		// renamed maps a merged compacted object to the one replacing it, so the segment
		// runs it held point at the new one.
		renamed := map[string]string{}
		for _, r := range results {
			if !t.piecesCurrent(r, next, segAt, comp) {
				doomed = append(doomed, r.entry.Object)
				continue
			}
			for _, p := range r.job.pieces {
				if p.compacted {
					delete(comp, p.sp.seg.Object)
					renamed[p.sp.seg.Object] = r.entry.Object
					doomed = append(doomed, p.sp.seg.Object)
				} else {
					next.Segments[segAt[p.sp.seg.Base]].Queues[p.sp.qi].Compacted = r.entry.Object
				}
			}
			e := r.entry
			comp[e.Object] = &e
			st.Objects++
			st.Pieces += len(r.job.pieces)
		}
		if st.Objects == 0 && len(doomed) == 0 {
			t.commitMu.Unlock()
			return st, nil
		}
		for _, c := range comp {
			next.Compacted = append(next.Compacted, *c)
		}
		sort.Slice(next.Compacted, func(i, j int) bool {
			a, b := &next.Compacted[i], &next.Compacted[j]
			if a.Base != b.Base {
				return a.Base < b.Base
			}
			return a.Object < b.Object
		})
		for i := range next.Segments {
			s := &next.Segments[i]
			for qi := range s.Queues {
				q := &s.Queues[qi]
				for q.Compacted != "" && renamed[q.Compacted] != "" {
					q.Compacted = renamed[q.Compacted]
				}
			}
			if !s.ObjectDeleted && segmentUnneeded(next, s) {
				s.ObjectDeleted = true
				doomed = append(doomed, s.Object)
			}
		}
		err := t.publish(ctx, tm, cur, next)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrPointerConflict) || attempt >= 3 || ctx.Err() != nil {
			t.commitMu.Unlock()
			return CompactStats{}, fmt.Errorf("tier compaction on %s: publish: %w", t.cfg.Prefix, err)
		}
	}
	t.commitMu.Unlock()
	t.metrics.compactedObjects.Add(float64(st.Objects))
	for _, name := range doomed {
		if err := t.bucket.Delete(ctx, name); err != nil && !objstore.IsNotFound(err) {
			return st, fmt.Errorf("tier compaction on %s: delete %s (no longer referenced): %w", t.cfg.Prefix, name, err)
		}
		st.Deleted++
		t.metrics.compactDeleted.Inc()
	}
	return st, nil
}

// piecesCurrent reports whether every piece of r is still in next as it was planned.
func (t *Tier) piecesCurrent(r compactResult, next *Manifest, segAt map[int64]int, comp map[string]*ManifestSegment) bool {
	for _, p := range r.job.pieces {
		if p.compacted {
			if comp[p.sp.seg.Object] == nil {
				return false
			}
			continue
		}
		i, ok := segAt[p.sp.seg.Base]
		if !ok {
			return false
		}
		s := &next.Segments[i]
		if s.Object != p.sp.seg.Object || s.ObjectDeleted || p.sp.qi >= len(s.Queues) {
			return false
		}
		q := &s.Queues[p.sp.qi]
		if q.Topic != p.sp.q.Topic || q.QueueID != p.sp.q.QueueID || q.Dropped || q.Compacted != "" {
			return false
		}
	}
	return true
}

// segmentUnneeded reports whether no reader needs a segment's object any more: every run
// is compacted, dropped or hidden by a tombstone (a run of its own object still needs the
// segment's index).
func segmentUnneeded(m *Manifest, s *ManifestSegment) bool {
	compacted := false
	for qi := range s.Queues {
		q := &s.Queues[qi]
		if q.Compacted != "" {
			compacted = true
			continue
		}
		if q.Dropped {
			continue
		}
		if _, visible := m.visibleSpan(s, q); visible || q.Object != "" {
			return false
		}
	}
	return compacted
}
