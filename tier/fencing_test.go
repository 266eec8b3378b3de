package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/tier/objstore"
)

// blind is a copy of a term whose holder will not notice its end: a master cut off from
// etcd whose session has not expired locally yet.
func blind(l meta.Leadership) meta.Leadership {
	l.Lost = make(chan struct{})
	return l
}

func waitStopped(t *testing.T, stopped <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-stopped:
	case <-waitCtx(t).Done():
		t.Fatalf("%s: writer work did not stop", what)
	}
}

func listAll(t *testing.T, b objstore.Bucket, prefix string) []string {
	t.Helper()
	var out []string
	if err := b.List(context.Background(), prefix+"/", func(name string) error {
		out = append(out, name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A deposed writer that has not noticed keeps uploading, but its objects never replace the
// new writer's, its first publish is fenced, and it then stops every kind of writer work.
func TestDeposedWriterIsFencedAndStops(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	cfg := compactCfg(b, ptrs)
	g := newLogGen()
	queues := queueKeys(1, 2)
	s1 := g.segment(t, 200, queues, 60)
	s2 := g.segment(t, 200, queues, 60)

	old := openFollower(t, cfg)
	oldTerm := ptrs.Elect()
	oldStopped, err := old.Lead(ctx, blind(oldTerm))
	if err != nil {
		t.Fatal(err)
	}
	old.Submit(s1)
	if err := old.WaitOffloaded(ctx, s1.end); err != nil {
		t.Fatal(err)
	}

	// A new writer wins; the old one is not told.
	cur := openFollower(t, cfg)
	if _, err := cur.Lead(ctx, ptrs.Elect()); err != nil {
		t.Fatal(err)
	}
	if cur.Epoch() <= oldTerm.Epoch {
		t.Fatalf("new writer's epoch %d is not above %d", cur.Epoch(), oldTerm.Epoch)
	}
	cur.Submit(s1)
	cur.Submit(s2)
	if err := cur.WaitOffloaded(ctx, s2.end); err != nil {
		t.Fatal(err)
	}
	old.Submit(s2) // the same segment, as a replica would hold it
	waitStopped(t, oldStopped, "deposed writer")
	if old.Epoch() != 0 {
		t.Fatalf("deposed writer still reports epoch %d", old.Epoch())
	}
	if st := old.OffloadStall(); st.Cause != StallNotWriter || !errors.Is(st.Err, ErrFenced) {
		t.Fatalf("deposed writer's stall: %+v, want StallNotWriter with ErrFenced", st)
	}
	if ptr, _ := ptrs.Load(ctx); ptr.Epoch != cur.Epoch() || ptr.OffloadWatermark != s2.end {
		t.Fatalf("pointer %+v, want the new writer's epoch %d at %d", ptr, cur.Epoch(), s2.end)
	}
	// Both wrote an object for s2 under their own names; the manifest names the new one.
	var s2Objects []string
	for _, name := range listAll(t, b, compactPrefix+"/segments") {
		if sn, ok := parseSegmentName(name); ok && !sn.companion && sn.base == s2.base {
			s2Objects = append(s2Objects, name)
		}
	}
	if len(s2Objects) != 2 {
		t.Fatalf("objects for segment %d: %v, want one per writer", s2.base, s2Objects)
	}
	if got := cur.Manifest().Segments[1].Object; got != SegmentObjectName(compactPrefix, s2.base, cur.Epoch()) {
		t.Fatalf("manifest names %s for segment %d", got, s2.base)
	}
	for name, err := range map[string]error{
		"compaction": func() error { _, err := old.Compact(ctx); return err }(),
		"retention": func() error {
			_, err := old.EnforceRetention(ctx, func(string) time.Duration { return time.Nanosecond })
			return err
		}(),
		"tombstone": old.AddTombstone(ctx, Tombstone{Topic: queues[0].topic, Position: s2.end}),
	} {
		if !errors.Is(err, ErrFenced) {
			t.Errorf("deposed writer's %s: %v, want ErrFenced", name, err)
		}
	}

	// The new writer's sweep removes the deposed writer's orphan and nothing it names.
	st, err := cur.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Swept < 1 {
		t.Fatalf("sweep deleted %d orphans, want the deposed writer's object for segment %d", st.Swept, s2.base)
	}
	for _, name := range s2Objects {
		_, err := b.Attributes(ctx, name)
		if ObjectEpoch(name) == oldTerm.Epoch && !objstore.IsNotFound(err) {
			t.Fatalf("orphan %s survived the sweep: %v", name, err)
		}
	}
	checkNamedObjectsExist(t, b, cur.Manifest())
	checkQueues(t, openTier(t, Config{Bucket: b, Pointers: ptrs, Prefix: compactPrefix, ReadOnly: true}), g, 50)

	// Elected again, the old tier reloads first and carries on from the new writer's state.
	if _, err := old.Lead(ctx, ptrs.Elect()); err != nil {
		t.Fatal(err)
	}
	if old.OffloadWatermark() != s2.end || len(old.Manifest().Segments) != 2 {
		t.Fatalf("re-elected writer loaded watermark %d and %d segments", old.OffloadWatermark(), len(old.Manifest().Segments))
	}
	s3 := g.segment(t, 100, queues, 60)
	old.Submit(s3)
	if err := old.WaitOffloaded(ctx, s3.end); err != nil {
		t.Fatal(err)
	}
}

// checkNamedObjectsExist fails unless every object m names is in the bucket.
func checkNamedObjectsExist(t *testing.T, b objstore.Bucket, m *Manifest) {
	t.Helper()
	for _, name := range namedObjects(m) {
		if _, err := b.Attributes(context.Background(), name); err != nil {
			t.Fatalf("manifest %d names %s: %v", m.Seq, name, err)
		}
	}
}

func namedObjects(m *Manifest) []string {
	var out []string
	for _, s := range m.Segments {
		if !s.ObjectDeleted {
			out = append(out, s.Object)
		}
		for _, q := range s.Queues {
			if q.Object != "" && !q.Dropped {
				out = append(out, q.Object)
			}
		}
	}
	for _, c := range m.Compacted {
		out = append(out, c.Object)
	}
	return out
}

// A tier that does not lead writes nothing; segments submitted meanwhile are offloaded once
// it is elected, and stop being offloaded when its term ends.
func TestFollowerWritesNothingUntilElected(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	tr := openFollower(t, Config{Bucket: b, Pointers: ptrs})
	g := newLogGen()
	s1 := g.segment(t, 100, queueKeys(1, 1), 40)
	tr.Submit(s1)
	if _, err := tr.Compact(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("follower's compaction: %v, want ErrFenced", err)
	}
	if st := tr.OffloadStall(); st.Cause != StallNotWriter {
		t.Fatalf("follower's stall %+v, want StallNotWriter", st)
	}
	if puts, _ := tr.BucketRequests(); puts != 0 || len(listAll(t, b, "test-cluster")) != 0 {
		t.Fatalf("follower wrote %d objects", puts)
	}
	l := ptrs.Elect()
	stopped, err := tr.Lead(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.WaitOffloaded(ctx, s1.end); err != nil {
		t.Fatal(err)
	}
	ptrs.Depose()
	waitStopped(t, stopped, "deposed by the election")
	puts, _ := tr.BucketRequests()
	tr.Submit(g.segment(t, 100, queueKeys(1, 1), 40))
	if err := tr.Refresh(ctx); err != nil { // a round trip through the tier's locks
		t.Fatal(err)
	}
	if p, _ := tr.BucketRequests(); p != puts || tr.OffloadWatermark() != s1.end {
		t.Fatalf("after its term ended the tier made %d PUTs and moved the watermark to %d", p-puts, tr.OffloadWatermark())
	}
	if _, err := tr.Lead(ctx, l); !errors.Is(err, ErrFenced) {
		t.Fatalf("lead with an ended term: %v, want ErrFenced", err)
	}
}

// failingPointers fails every swap while failing is set, like etcd out of reach.
type failingPointers struct {
	*MemoryPointers
	failing atomic.Bool
}

var errEtcdDown = errors.New("context deadline exceeded (test outage)")

func (p *failingPointers) CompareAndSwap(ctx context.Context, prev, next TierPointer, w meta.Leadership) (TierPointer, error) {
	if p.failing.Load() {
		return TierPointer{}, errEtcdDown
	}
	return p.MemoryPointers.CompareAndSwap(ctx, prev, next, w)
}

// OffloadStall names what keeps offload from committing: the bucket or the pointer store.
func TestOffloadStallNamesTheFailingDependency(t *testing.T) {
	ctx := waitCtx(t)
	fb := &flakyBucket{Bucket: objstore.NewMemory()}
	ptrs := &failingPointers{MemoryPointers: NewMemoryPointers()}
	tr := openFollower(t, Config{Bucket: fb, Pointers: ptrs})
	if _, err := tr.Lead(ctx, ptrs.Elect()); err != nil {
		t.Fatal(err)
	}
	g := newLogGen()
	waitStall := func(cause StallCause, want error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for st := tr.OffloadStall(); st.Cause != cause || !errors.Is(st.Err, want); st = tr.OffloadStall() {
			if time.Now().After(deadline) {
				t.Fatalf("stall %+v, want %v with %v", st, cause, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	fb.down.Store(true)
	s1 := g.segment(t, 50, queueKeys(1, 1), 40)
	tr.Submit(s1)
	waitStall(StallBucket, errBucketDown)
	fb.down.Store(false)
	ptrs.failing.Store(true)
	waitStall(StallPointer, errEtcdDown)
	if !strings.Contains(tr.OffloadStall().Err.Error(), "move tier pointer") {
		t.Fatalf("pointer stall does not say what failed: %v", tr.OffloadStall().Err)
	}
	ptrs.failing.Store(false)
	if err := tr.WaitOffloaded(ctx, s1.end); err != nil {
		t.Fatal(err)
	}
	if st := tr.OffloadStall(); st.Cause != StallNone {
		t.Fatalf("stall %+v after a successful commit", st)
	}
}

// RebuildManifest, with several objects per segment from different terms, takes what the
// pointer's watermark and epoch allow.
func TestRebuildChoosesByEpochAndWatermark(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	tr := openFollower(t, Config{Bucket: b, Pointers: ptrs})
	g := newLogGen()
	q := queueKeys(1, 2)
	s1, s2, s3 := g.segment(t, 80, q, 40), g.segment(t, 80, q, 40), g.segment(t, 80, q, 40)
	put := func(epoch int64, s *testSegment) string {
		ms, err := tr.upload(ctx, epoch, s)
		if err != nil {
			t.Fatal(err)
		}
		return ms.Object
	}
	// Epoch 2 committed s1 and s2; epoch 1 (deposed) had uploaded s1 too; epoch 3 has
	// uploaded s2 and s3 but committed nothing; epoch 2 had also uploaded s3 uncommitted.
	put(1, s1)
	s1e2, s2e2 := put(2, s1), put(2, s2)
	put(2, s3)
	put(3, s2)
	put(3, s3)
	ptr := TierPointer{OffloadWatermark: s2.end, Manifest: ManifestObjectName("test-cluster/group-a", 5, 2), Epoch: 2, Revision: 9}
	m, err := RebuildManifest(ctx, b, "test-cluster/group-a", ptr)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Segments) != 2 || m.Segments[0].Object != s1e2 || m.Segments[1].Object != s2e2 || m.Watermark != s2.end {
		t.Fatalf("rebuilt %d segments %v, watermark %d; want %s and %s up to %d", len(m.Segments), objectsOf(m), m.Watermark, s1e2, s2e2, s2.end)
	}
	// Without an epoch in the pointer (unknown, or written before fencing), every object
	// counts: the newest per base, contiguous past the watermark.
	m, err = RebuildManifest(ctx, b, "test-cluster/group-a", TierPointer{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{s1e2, SegmentObjectName("test-cluster/group-a", s2.base, 3), SegmentObjectName("test-cluster/group-a", s3.base, 3)}
	if fmt.Sprint(objectsOf(m)) != fmt.Sprint(want) || m.Watermark != s3.end {
		t.Fatalf("rebuilt without a pointer: %v up to %d; want %v up to %d", objectsOf(m), m.Watermark, want, s3.end)
	}
	// A legacy name (no epoch) counts as epoch 0 and loses to any epoch.
	legacy := strings.Replace(s1e2, "-0000000000000002.seg", ".seg", 1)
	data, err := readAll(ctx, b, s1e2, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, legacy, strings.NewReader(string(data)), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if m, err = RebuildManifest(ctx, b, "test-cluster/group-a", ptr); err != nil || m.Segments[0].Object != s1e2 {
		t.Fatalf("with a legacy object: %v %v", objectsOf(m), err)
	}
	if err := b.Delete(ctx, s1e2); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, SegmentObjectName("test-cluster/group-a", s1.base, 1)); err != nil {
		t.Fatal(err)
	}
	if m, err = RebuildManifest(ctx, b, "test-cluster/group-a", ptr); err != nil || m.Segments[0].Object != legacy {
		t.Fatalf("with only the legacy object for segment %d: %v %v", s1.base, objectsOf(m), err)
	}
}

func objectsOf(m *Manifest) []string {
	var out []string
	for _, s := range m.Segments {
		out = append(out, s.Object)
	}
	return out
}

// The orphan sweep deletes only unnamed objects of older epochs.
func TestOrphanSweepSparesNamedAndNewerObjects(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	g := newLogGen()
	q := queueKeys(1, 1)
	s1, s2 := g.segment(t, 80, q, 40), g.segment(t, 80, q, 40)
	first := openTier(t, Config{Bucket: b, Pointers: ptrs, DisableCompaction: true})
	first.Submit(s1)
	if err := first.WaitOffloaded(ctx, s1.end); err != nil {
		t.Fatal(err)
	}
	named := first.Manifest().Segments[0].Object
	leftover, err := first.upload(ctx, first.Epoch(), s2) // uploaded, never committed
	if err != nil {
		t.Fatal(err)
	}
	first.Close()

	tr := openTier(t, Config{Bucket: b, Pointers: ptrs, DisableCompaction: true})
	mine, err := tr.upload(ctx, tr.Epoch(), s2) // in flight in this term
	if err != nil {
		t.Fatal(err)
	}
	newer, err := tr.upload(ctx, tr.Epoch()+1, s2) // a successor's
	if err != nil {
		t.Fatal(err)
	}
	legacyManifest := "test-cluster/group-a/manifest/00000000000000000001.json"
	if err := b.Put(ctx, legacyManifest, strings.NewReader("{}"), 2); err != nil {
		t.Fatal(err)
	}
	st, err := tr.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Swept != 2 {
		t.Fatalf("swept %d objects, want the leftover segment object and the old manifest", st.Swept)
	}
	for name, wantGone := range map[string]bool{named: false, leftover.Object: true, mine.Object: false, newer.Object: false,
		legacyManifest: true, tr.Pointer().Manifest: false} {
		_, err := b.Attributes(ctx, name)
		if gone := objstore.IsNotFound(err); gone != wantGone {
			t.Errorf("%s: gone=%v (%v), want gone=%v", name, gone, err, wantGone)
		}
	}
}

func FuzzObjectNames(f *testing.F) {
	f.Add("c/g/segments/00000000000000000064-000000000000002a.seg")
	f.Add("c/g/segments/00000000000000000064-000000000000002a.q3.seg")
	f.Add("c/g/segments/00000000000000000064.seg")
	f.Add("c/g/compacted/54/0/00000000000000000000-00000000000000000009-0000000000000001.seg")
	f.Add("c/g/manifest/00000000000000000007-0000000000000001.json")
	f.Fuzz(func(t *testing.T, name string) {
		e := ObjectEpoch(name)
		if e < 0 {
			t.Fatalf("negative epoch %d", e)
		}
		manifestSeq(name)
		sn, ok := parseSegmentName(name)
		if !ok {
			return
		}
		if sn.base < 0 || sn.epoch < 0 || sn.epoch != e {
			t.Fatalf("%q parsed as %+v, epoch %d", name, sn, e)
		}
		// A parsed name with an epoch is the name the writer makes for it.
		last := name[strings.LastIndexByte(name, '/')+1:]
		if want := SegmentObjectName("p", sn.base, sn.epoch)[len("p/segments/"):]; sn.epoch > 0 && !sn.companion && last != want {
			t.Fatalf("%q parsed as %+v, which is named %s", name, sn, want)
		}
	})
}

// lostAnswerPointers stores one swap but reports it failed, as when etcd commits a
// transaction whose answer never arrives.
type lostAnswerPointers struct {
	*MemoryPointers
	bucket objstore.Bucket
	lose   atomic.Bool
	lost   chan struct{} // closed after the lost swap

	published string // the manifest the lost swap stored
	data      []byte // its bytes right after the swap
}

func (p *lostAnswerPointers) CompareAndSwap(ctx context.Context, prev, next TierPointer, w meta.Leadership) (TierPointer, error) {
	got, err := p.MemoryPointers.CompareAndSwap(ctx, prev, next, w)
	if err == nil && p.lose.CompareAndSwap(true, false) {
		p.published = got.Manifest
		p.data, _ = readAll(ctx, p.bucket, got.Manifest, 1<<30)
		close(p.lost)
		return TierPointer{}, errors.New("compare-and-swap tier pointer: context deadline exceeded (the answer was lost)")
	}
	return got, err
}

// A swap whose answer was lost is found on the retry, and the manifest it published is
// never overwritten, although the retry publishes more than the lost swap did.
func TestLostSwapAnswerKeepsThePublishedManifest(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := &lostAnswerPointers{MemoryPointers: NewMemoryPointers(), bucket: b, lost: make(chan struct{})}
	tr := openFollower(t, Config{Bucket: b, Pointers: ptrs, RetryMin: 300 * time.Millisecond, RetryMax: time.Second})
	if _, err := tr.Lead(ctx, ptrs.Elect()); err != nil {
		t.Fatal(err)
	}
	g := newLogGen()
	s1, s2, s3 := g.segment(t, 50, queueKeys(1, 2), 40), g.segment(t, 50, queueKeys(1, 2), 40), g.segment(t, 50, queueKeys(1, 2), 40)
	tr.Submit(s1)
	if err := tr.WaitOffloaded(ctx, s1.end); err != nil {
		t.Fatal(err)
	}
	ptrs.lose.Store(true)
	tr.Submit(s2)
	<-ptrs.lost
	tr.Submit(s3) // uploaded while the commit waits to retry
	if err := tr.WaitOffloaded(ctx, s3.end); err != nil {
		t.Fatal(err)
	}
	if now, err := readAll(ctx, b, ptrs.published, 1<<30); err == nil && string(now) != string(ptrs.data) {
		t.Fatalf("manifest %s was overwritten after the pointer named it", ptrs.published)
	}
	checkQueues(t, openTier(t, Config{Bucket: b, Pointers: ptrs.MemoryPointers, ReadOnly: true}), g, 20)
}
