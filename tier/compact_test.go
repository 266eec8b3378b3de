package tier

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier/objstore"
)

const compactPrefix = "test-cluster/group-a"

// compactCfg makes every run of the small test segments a compaction candidate.
func compactCfg(b objstore.Bucket, ptrs PointerStore) Config {
	return Config{Bucket: b, Pointers: ptrs, BlockBytes: 4 << 10, DisableCompaction: true,
		CompactMinRunBytes: 256 << 10, CompactTargetBytes: 4 << 20, CompactMinRuns: 2}
}

// offloadSegments offloads n segments of records spread over queues and waits for them.
func offloadSegments(t *testing.T, tr *Tier, g *logGen, n, recs int, queues []queueKey) {
	t.Helper()
	for range n {
		tr.Submit(g.segment(t, recs, queues, 100))
	}
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
}

// replayGets replays one queue with a fresh read-only tier (cold caches) and returns the
// GETs it took.
func replayGets(t *testing.T, b objstore.Bucket, ptrs PointerStore, g *logGen, k queueKey) int64 {
	t.Helper()
	r := openTier(t, Config{Bucket: b, Pointers: ptrs, ReadOnly: true})
	defer r.Close()
	_, g0 := r.BucketRequests()
	if got := readQueue(t, r, k, 1024); len(got) != len(g.want[k]) {
		t.Fatalf("%v: replayed %d records, want %d", k, len(got), len(g.want[k]))
	}
	_, g1 := r.BucketRequests()
	return g1 - g0
}

func objectsUnder(t *testing.T, b objstore.Bucket, dir string) []string {
	t.Helper()
	var out []string
	if err := b.List(context.Background(), compactPrefix+"/"+dir+"/", func(name string) error {
		out = append(out, name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCompactionPreservesRecordsAndCutsGets(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	tr := openTier(t, compactCfg(b, ptrs))
	g := newLogGen()
	queues := queueKeys(4, 8) // 32 queues: each segment holds a small run of each
	const segs = 12
	offloadSegments(t, tr, g, segs, 800, queues)
	k := queues[5]
	before := replayGets(t, b, ptrs, g, k)
	if before < segs {
		t.Fatalf("replay before compaction took %d GETs; expected at least one per segment (%d)", before, segs)
	}

	st, err := tr.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects != len(queues) || st.Pieces != len(queues)*segs || st.Deleted != segs {
		t.Fatalf("compaction: %+v; want %d objects of %d pieces and the %d segment objects deleted", st, len(queues), len(queues)*segs, segs)
	}
	if left := objectsUnder(t, b, "segments"); len(left) != 0 {
		t.Fatalf("segment objects left after every run was compacted: %v", left)
	}
	m := tr.Manifest()
	if m.Version != ManifestVersionCompacted || len(m.Compacted) != len(queues) || len(m.Segments) != segs {
		t.Fatalf("manifest v%d: %d compacted, %d segments", m.Version, len(m.Compacted), len(m.Segments))
	}
	for i := 1; i < len(m.Segments); i++ {
		if m.Segments[i].Base != m.Segments[i-1].End || !m.Segments[i].ObjectDeleted {
			t.Fatalf("segment %d: [%d,%d) deleted=%v after [%d,%d)", i, m.Segments[i].Base, m.Segments[i].End,
				m.Segments[i].ObjectDeleted, m.Segments[i-1].Base, m.Segments[i-1].End)
		}
	}
	checkQueues(t, tr, g, 100)
	after := replayGets(t, b, ptrs, g, k)
	if after > 3 || after >= before {
		t.Fatalf("replay after compaction took %d GETs (before: %d); want at most 3 (index and data of one object)", after, before)
	}

	// Point reads: by time, by key, by unique key, by commit-log position.
	want := g.want[k][37]
	h, _ := message.ParseRecordHeader(want)
	ro := openTier(t, Config{Bucket: b, Pointers: ptrs, ReadOnly: true})
	for _, tier := range []*Tier{tr, ro} {
		if off, err := tier.OffsetForTime(ctx, k.topic, k.queue, h.StoreTimestamp); err != nil || off != h.QueueOffset {
			t.Fatalf("offset for time: %d %v, want %d", off, err, h.QueueOffset)
		}
		for _, q := range []KeyQuery{{Topic: k.topic, Key: h.Keys[0]}, {Topic: k.topic, Key: h.UniqKey, Uniq: true}} {
			recs, err := tier.Lookup(ctx, q)
			if err != nil || len(recs) != 1 || string(recs[0]) != string(want) {
				t.Fatalf("lookup %+v: %d records, %v", q, len(recs), err)
			}
		}
		rec, err := tier.ReadAt(ctx, h.CommitLogOffset)
		if err != nil || string(rec) != string(want) {
			t.Fatalf("read at %d: %v", h.CommitLogOffset, err)
		}
	}

	// Nothing more to do: a second pass is a no-op. More segments, then a pass merges the
	// compacted objects with the new runs.
	if st, err := tr.Compact(ctx); err != nil || st.Objects != 0 {
		t.Fatalf("second pass: %+v %v", st, err)
	}
	offloadSegments(t, tr, g, 3, 800, queues)
	if st, err := tr.Compact(ctx); err != nil || st.Objects != len(queues) || st.Pieces != 4*len(queues) {
		t.Fatalf("third pass: %+v %v; want %d objects of 4 pieces", st, err, len(queues))
	}
	if n := len(objectsUnder(t, b, "compacted")); n != len(queues) {
		t.Fatalf("%d compacted objects in the bucket, want %d (merged ones deleted)", n, len(queues))
	}
	checkQueues(t, tr, g, 64)

	// A lost manifest is rebuilt from the compacted objects and what is left of the segments.
	ptr, _ := ptrs.Load(ctx)
	if err := b.Delete(ctx, ptr.Manifest); err != nil {
		t.Fatal(err)
	}
	rm, err := RebuildManifest(ctx, b, compactPrefix, TierPointer{})
	if err != nil || rm.Watermark != g.pos || len(rm.Compacted) != len(queues) {
		t.Fatalf("rebuilt manifest: %v; watermark %d want %d, %d compacted", err, rm.Watermark, g.pos, len(rm.Compacted))
	}
	checkQueues(t, openTier(t, Config{Bucket: b, Pointers: ptrs, ReadOnly: true}), g, 64)
}

func TestCompactionLeavesLargeRunsAlone(t *testing.T) {
	b := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	cfg := compactCfg(b, ptrs)
	cfg.CompactMinRunBytes = 48 << 10
	tr := openTier(t, cfg)
	g := newLogGen()
	big := queueKey{"Big", 0}
	small := queueKeys(1, 3)
	qs := append([]queueKey{big, big, big, big, big, big}, small...) // Big's runs are ~2/3 of each segment
	offloadSegments(t, tr, g, 4, 600, qs)
	st, err := tr.Compact(waitCtx(t))
	if err != nil || st.Objects != len(small) {
		t.Fatalf("compaction: %+v %v; want one object per small queue", st, err)
	}
	for _, s := range tr.Manifest().Segments {
		if s.ObjectDeleted {
			t.Fatal("a segment object still holding Big's run was deleted")
		}
		for _, q := range s.Queues {
			if (q.Topic == big.topic) != (q.Compacted == "") {
				t.Fatalf("run %s/%d compacted=%q", q.Topic, q.QueueID, q.Compacted)
			}
		}
	}
	checkQueues(t, tr, g, 100)
}

// A pass that wrote its compacted objects but crashed before publishing leaves the tier as
// it was; the next pass (after a restart) cleans up and completes the work.
func TestCompactionCrashBeforePublish(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	tr := openTier(t, compactCfg(b, ptrs))
	g := newLogGen()
	queues := queueKeys(2, 3)
	offloadSegments(t, tr, g, 5, 300, queues)
	jobs, err := tr.planCompaction(ctx, tr.cat.Load())
	if err != nil || len(jobs) != len(queues) {
		t.Fatalf("plan: %d jobs, %v", len(jobs), err)
	}
	for _, j := range jobs[:4] { // the "crash" comes before publishing
		if _, _, err := tr.writeCompacted(ctx, tr.Epoch(), j); err != nil {
			t.Fatal(err)
		}
	}
	// A stale leftover of a different cut of the same queue must not survive either.
	stale := CompactedObjectName(compactPrefix, queues[0].topic, queues[0].queue, 0, 1, tr.Epoch())
	if err := b.Put(ctx, stale, strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if n := len(objectsUnder(t, b, "compacted")); n != 5 {
		t.Fatalf("%d compacted objects written before the crash, want 5", n)
	}
	tr2 := openTier(t, compactCfg(b, ptrs))
	if len(tr2.Manifest().Compacted) != 0 {
		t.Fatal("unpublished compacted objects appear in the manifest")
	}
	checkQueues(t, tr2, g, 50)
	st, err := tr2.Compact(ctx)
	if err != nil || st.Objects != len(queues) {
		t.Fatalf("compaction after restart: %+v %v", st, err)
	}
	names := objectsUnder(t, b, "compacted")
	if len(names) != len(queues) {
		t.Fatalf("compacted objects after the re-run: %v", names)
	}
	for _, n := range names {
		if n == stale {
			t.Fatal("the stale leftover was not deleted")
		}
	}
	checkQueues(t, tr2, g, 50)
	checkQueues(t, openTier(t, Config{Bucket: b, Pointers: ptrs, ReadOnly: true}), g, 50)
}

func TestCompactionWithTombstonesAndRetention(t *testing.T) {
	ctx := waitCtx(t)
	b := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	now := time.UnixMilli(1_700_000_000_000)
	cfg := compactCfg(b, ptrs)
	cfg.Now = func() time.Time { return now }
	tr := openTier(t, cfg)
	g := newLogGen()
	dead, live, short := queueKey{"Dead", 0}, queueKey{"Live", 0}, queueKey{"Short", 0}
	offloadSegments(t, tr, g, 3, 300, []queueKey{dead, live, short})
	ts := Tombstone{Topic: dead.topic, Position: g.pos, Next: []TombstoneQueue{{QueueID: 0, Next: g.offsets[dead]}}}
	if err := tr.AddTombstone(ctx, ts); err != nil {
		t.Fatal(err)
	}
	g.want[dead] = nil
	g.nowMs += 10 * time.Hour.Milliseconds()
	offloadSegments(t, tr, g, 3, 300, []queueKey{live, dead})

	st, err := tr.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Live (6 runs), Short (3 runs) and Dead's new incarnation (3 runs); the deleted
	// incarnation's runs are hidden and never merged.
	if st.Objects != 3 || st.Pieces != 12 {
		t.Fatalf("compaction: %+v, want 3 objects of 12 pieces", st)
	}
	for _, c := range tr.Manifest().Compacted {
		if q := c.Queues[0]; q.Topic == dead.topic && q.FirstOffset < ts.NextOffset(0) {
			t.Fatalf("deleted records of %s compacted: %+v", dead.topic, q)
		}
	}
	checkQueuesFrom(t, tr, g, dead, ts.NextOffset(0))

	now = time.UnixMilli(g.nowMs)
	rst, err := tr.EnforceRetention(ctx, func(topic string) time.Duration {
		if topic == short.topic {
			return time.Hour
		}
		return 0
	})
	if err != nil || rst.CompactedDeleted != 1 || rst.SegmentsDeleted != 0 {
		t.Fatalf("retention: %+v %v; want Short's compacted object only (Live keeps the segments)", rst, err)
	}
	for _, n := range objectsUnder(t, b, "compacted") {
		if strings.Contains(n, "/"+hexTopic(short.topic)+"/") {
			t.Fatalf("expired compacted object %s still in the bucket", n)
		}
	}
	if _, _, ok := tr.QueueRange(short.topic, 0); ok {
		t.Fatal("Short still has cold data after retention")
	}
	checkQueuesFrom(t, tr, g, live, 0)
	checkQueuesFrom(t, tr, g, dead, ts.NextOffset(0))
}

func hexTopic(s string) string {
	name := CompactedObjectName("p", s, 0, 0, 0, 1)
	return strings.Split(name, "/")[2]
}

// checkQueuesFrom replays one queue from offset from and compares with g.want[k].
func checkQueuesFrom(t *testing.T, tr *Tier, g *logGen, k queueKey, from int64) {
	t.Helper()
	var got [][]byte
	off := from
	for {
		res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: off, MaxCount: 64})
		if errors.Is(err, ErrNotInTier) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.Records...)
		off = res.NextOffset
	}
	if len(got) != len(g.want[k]) {
		t.Fatalf("%v: %d records from %d, want %d", k, len(got), from, len(g.want[k]))
	}
	for i := range got {
		if string(got[i]) != string(g.want[k][i]) {
			t.Fatalf("%v: record %d differs", k, i)
		}
	}
}

// Readers replaying while compaction publishes and deletes objects never see a gap or an
// error, in the writer's process and in a read-only tier that loaded the older manifest.
func TestReadersDuringCompaction(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	cfg := compactCfg(b, ptrs)
	cfg.CacheBytes = 64 << 10 // force reads to the bucket
	tr := openTier(t, cfg)
	g := newLogGen()
	queues := queueKeys(2, 4)
	offloadSegments(t, tr, g, 8, 400, queues)
	ro := openTier(t, Config{Bucket: b, Pointers: ptrs, ReadOnly: true, CacheBytes: 64 << 10})
	wantLen := map[queueKey]int64{} // offload goes on during the test; replays see at least this
	for k, w := range g.want {
		wantLen[k] = int64(len(w))
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	var replays atomic.Int64
	for i, r := range []*Tier{tr, ro, tr, ro} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load() || n < 2; n++ {
				k := queues[(i+n)%len(queues)]
				off := int64(0)
				for {
					res, err := r.Read(ctx, ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: off, MaxCount: 37})
					if errors.Is(err, ErrNotInTier) {
						break
					}
					if err != nil {
						errs <- err
						return
					}
					for _, rec := range res.Records {
						if h, _ := message.ParseRecordHeader(rec); h.QueueOffset != off {
							errs <- errors.New("gap or reorder in replay")
							return
						}
						off++
					}
				}
				if off < wantLen[k] {
					errs <- errors.New("replay ended early")
					return
				}
				replays.Add(1)
			}
		}()
	}
	for range 3 { // several passes: merge segments, then new segments with compacted objects
		if _, err := tr.Compact(ctx); err != nil {
			t.Fatal(err)
		}
		offloadSegments(t, tr, g, 2, 400, queues)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if replays.Load() < 8 {
		t.Fatalf("only %d replays ran", replays.Load())
	}
}
