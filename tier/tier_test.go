package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier/objstore"
)

func fsBucket(t testing.TB) *objstore.FSBucket {
	b, err := objstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkQueues(t *testing.T, tr *Tier, g *logGen, page int) {
	t.Helper()
	for k, want := range g.want {
		got := readQueue(t, tr, k, page)
		if len(got) != len(want) {
			t.Fatalf("%v: read %d records from the tier, want %d", k, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%v: record %d differs", k, i)
			}
		}
		first, last, ok := tr.QueueRange(k.topic, k.queue)
		if !ok || first != 0 || last != int64(len(want)-1) {
			t.Fatalf("%v: cold range %d..%d (%v), want 0..%d", k, first, last, ok, len(want)-1)
		}
	}
}

func TestOffloadThenColdRead(t *testing.T) {
	reg := prometheus.NewRegistry()
	tr := openTier(t, Config{Bucket: fsBucket(t), Pointers: NewMemoryPointers(), BlockBytes: 8 << 10, Registerer: reg, OffloadConcurrency: 3})
	g := newLogGen()
	var segs []*testSegment
	for range 6 {
		segs = append(segs, g.segment(t, 700, queueKeys(3, 4), 150))
	}
	for i := len(segs) - 1; i >= 0; i-- { // out of order: the watermark still moves in order
		tr.Submit(segs[i])
	}
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	if m := tr.Manifest(); len(m.Segments) != 6 || m.Watermark != g.pos {
		t.Fatalf("manifest has %d segments, watermark %d; want 6, %d", len(m.Segments), m.Watermark, g.pos)
	}
	checkQueues(t, tr, g, 37)

	// Time lookup: the first record of segment 3 of one queue.
	k := queueKey{"Topic1", 2}
	h, _ := message.ParseRecordHeader(g.want[k][100])
	off, err := tr.OffsetForTime(waitCtx(t), k.topic, k.queue, h.StoreTimestamp)
	if err != nil || off != 100 {
		t.Fatalf("offset for time: %d, %v; want 100", off, err)
	}
	if _, err := tr.OffsetForTime(waitCtx(t), k.topic, k.queue, g.nowMs+1); !errors.Is(err, ErrNotInTier) {
		t.Fatalf("time after the tier: %v", err)
	}
	// Key and unique-key lookup.
	recs, err := tr.Lookup(waitCtx(t), KeyQuery{Topic: k.topic, Key: h.UniqKey, Uniq: true})
	if err != nil || len(recs) != 1 || !bytes.Equal(recs[0], g.want[k][100]) {
		t.Fatalf("lookup by uniq key: %d records, %v", len(recs), err)
	}
	recs, err = tr.Lookup(waitCtx(t), KeyQuery{Topic: k.topic, Key: h.Keys[0]})
	if err != nil || len(recs) != 1 || !bytes.Equal(recs[0], g.want[k][100]) {
		t.Fatalf("lookup by key: %d records, %v", len(recs), err)
	}
	// Tag filter: only tag0.
	code := message.TagHashCode("tag0")
	res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: 0, MaxCount: 10,
		TagFilter: func(c int64) bool { return c == code }})
	if err != nil || len(res.Records) != 10 {
		t.Fatalf("filtered read: %d records, %v", len(res.Records), err)
	}
	checkEntries(t, res)
	for _, r := range res.Records {
		if h, _ := message.ParseRecordHeader(r); h.Tags != "tag0" {
			t.Fatalf("filter let through tag %q", h.Tags)
		}
	}
	// Record predicate (the broker's SQL92 filter): only records it accepts come back,
	// across blocks, with NextOffset past the rejected ones.
	keep := func(h *message.RecordHeader) bool { return strings.Contains(h.Properties, "order-3\x02") }
	var wantKept [][]byte
	for _, rec := range g.want[k] {
		if h, _ := message.ParseRecordHeader(rec); keep(&h) {
			wantKept = append(wantKept, rec)
		}
	}
	var kept [][]byte
	for off := int64(0); ; {
		res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: off, MaxCount: 7, Match: keep})
		if errors.Is(err, ErrNotInTier) {
			break
		}
		if err != nil || res.NextOffset <= off {
			t.Fatalf("matched read at %d: next %d, %v", off, res.NextOffset, err)
		}
		checkEntries(t, res)
		kept = append(kept, res.Records...)
		off = res.NextOffset
	}
	if len(wantKept) == 0 || len(kept) != len(wantKept) {
		t.Fatalf("matched read: %d records, want %d", len(kept), len(wantKept))
	}
	for i := range kept {
		if !bytes.Equal(kept[i], wantKept[i]) {
			t.Fatalf("matched read: record %d differs", i)
		}
	}
	// MaxBytes bounds a read but always returns one record.
	res, err = tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: 5, MaxBytes: 1})
	if err != nil || len(res.Records) != 1 || res.NextOffset != 6 {
		t.Fatalf("read with MaxBytes 1: %d records next %d, %v", len(res.Records), res.NextOffset, err)
	}
	if got := testGather(t, reg, "strata_tier_offloaded_segments_total"); got != 6 {
		t.Fatalf("offloaded segments metric %v", got)
	}
	if !tr.CanDeleteLocal(segs[5].end, 0) || tr.CanDeleteLocal(g.pos+1, 0) {
		t.Fatal("CanDeleteLocal disagrees with the watermark")
	}
}

func testGather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestConcurrentColdReads(t *testing.T) {
	tr := openTier(t, Config{Bucket: objstore.NewMemory(), Pointers: NewMemoryPointers(), BlockBytes: 4 << 10,
		CacheBytes: 64 << 10, MaxConcurrentGets: 2})
	g := newLogGen()
	for range 3 {
		tr.Submit(g.segment(t, 500, queueKeys(2, 2), 100))
	}
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			k := queueKeys(2, 2)[i%4]
			got := readQueue(t, tr, k, 13)
			if len(got) != len(g.want[k]) {
				errs <- fmt.Errorf("%v: %d records, want %d", k, len(got), len(g.want[k]))
				return
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCorruptBlockIsNotServed(t *testing.T) {
	b := objstore.NewMemory()
	tr := openTier(t, Config{Bucket: b, Pointers: NewMemoryPointers(), BlockBytes: 4 << 10, DisableReadAhead: true})
	g := newLogGen()
	seg := g.segment(t, 300, queueKeys(1, 1), 100)
	tr.Submit(seg)
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	name := tr.Manifest().Segments[0].Object
	rc, _ := b.Get(context.Background(), name)
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	data := buf.Bytes()
	idx, _, err := DecodeSegmentObject(data)
	if err != nil {
		t.Fatal(err)
	}
	blk := idx.Queues[0].Blocks[1]
	data[blk.Offset+blk.Size/2] ^= 0xff
	if err := b.Put(context.Background(), name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	k := queueKey{"Topic0", 0}
	res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: 0, Offset: blk.FirstOffset, MaxCount: 1})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a corrupt block: err %v, want ErrCorrupt", err)
	}
	if len(res.Records) != 0 {
		t.Fatalf("served %d records from a corrupt block", len(res.Records))
	}
	// The block before it is intact and still served.
	if res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: 0, Offset: 0, MaxCount: int(idx.Queues[0].Blocks[0].Count)}); err != nil || len(res.Records) == 0 {
		t.Fatalf("intact block: %d records, %v", len(res.Records), err)
	}
}

func TestReoffloadIsIdempotent(t *testing.T) {
	b := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	tr := openTier(t, Config{Bucket: b, Pointers: ptrs})
	g := newLogGen()
	seg := g.segment(t, 200, queueKeys(2, 2), 50)
	tr.Submit(seg)
	if err := tr.WaitOffloaded(waitCtx(t), seg.end); err != nil {
		t.Fatal(err)
	}
	name := tr.Manifest().Segments[0].Object
	first, _ := readAll(context.Background(), b, name, 1<<30)
	// A retried upload (as after a crash between PUT and commit) writes the same bytes.
	if _, err := tr.upload(context.Background(), tr.Epoch(), seg); err != nil {
		t.Fatal(err)
	}
	second, _ := readAll(context.Background(), b, name, 1<<30)
	if !bytes.Equal(first, second) {
		t.Fatal("re-upload changed the object")
	}
	puts, _ := tr.BucketRequests()
	tr.Submit(seg) // below the watermark: ignored
	seg2 := g.segment(t, 10, queueKeys(1, 1), 10)
	tr.Submit(seg2)
	if err := tr.WaitOffloaded(waitCtx(t), seg2.end); err != nil {
		t.Fatal(err)
	}
	if p, _ := tr.BucketRequests(); p != puts+2 { // segment object + manifest of seg2 only
		t.Fatalf("%d PUTs after resubmitting an offloaded segment, want %d", p, puts+2)
	}
	if n := len(tr.Manifest().Segments); n != 2 {
		t.Fatalf("manifest lists %d segments, want 2", n)
	}
}

func TestRestartResumesFromWatermark(t *testing.T) {
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	g := newLogGen()
	var segs []*testSegment
	for range 5 {
		segs = append(segs, g.segment(t, 300, queueKeys(2, 3), 80))
	}
	tr := openTier(t, Config{Bucket: b, Pointers: ptrs})
	for _, s := range segs[:3] {
		tr.Submit(s)
	}
	if err := tr.WaitOffloaded(waitCtx(t), segs[2].end); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	tr.Close() // idempotent

	tr2 := openTier(t, Config{Bucket: b, Pointers: ptrs})
	if tr2.OffloadWatermark() != segs[2].end {
		t.Fatalf("reopened at watermark %d, want %d", tr2.OffloadWatermark(), segs[2].end)
	}
	for _, s := range segs { // the broker resubmits every sealed segment still on disk
		tr2.Submit(s)
	}
	if err := tr2.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	// 2 segment objects, and 1 or 2 manifests (two uploads may commit together).
	if puts, _ := tr2.BucketRequests(); puts < 3 || puts > 4 {
		t.Fatalf("restart made %d PUTs, want 3 or 4 (no re-upload below the watermark)", puts)
	}
	m := tr2.Manifest()
	if len(m.Segments) != 5 {
		t.Fatalf("manifest lists %d segments, want 5", len(m.Segments))
	}
	for i, s := range m.Segments {
		if s.Base != segs[i].base || s.End != segs[i].end {
			t.Fatalf("manifest segment %d is [%d,%d), want [%d,%d)", i, s.Base, s.End, segs[i].base, segs[i].end)
		}
	}
	checkQueues(t, tr2, g, 50)
}

func TestRebuildFromBucketAlone(t *testing.T) {
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	g := newLogGen()
	tr := openTier(t, Config{Bucket: b, Pointers: ptrs, OwnObjectBytes: 20 << 10})
	queues := append(queueKeys(2, 2), queueKeys(1, 1)[0], queueKeys(1, 1)[0], queueKeys(1, 1)[0])
	for range 3 {
		tr.Submit(g.segment(t, 400, queues, 100))
	}
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	tr.Close()

	m, err := RebuildManifest(context.Background(), b, "test-cluster/group-a", TierPointer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Segments) != 3 || m.Watermark != g.pos {
		t.Fatalf("rebuilt manifest: %d segments, watermark %d; want 3, %d", len(m.Segments), m.Watermark, g.pos)
	}
	// Lose the manifest: a broker with an empty disk still finds every queue's cold data.
	ptr, _ := ptrs.Load(context.Background())
	if err := b.Delete(context.Background(), ptr.Manifest); err != nil {
		t.Fatal(err)
	}
	ro := openTier(t, Config{Bucket: b, Pointers: ptrs, ReadOnly: true})
	checkQueues(t, ro, g, 64)
}

func TestRetentionDeletesExpiredObjects(t *testing.T) {
	b := objstore.NewMemory()
	now := time.UnixMilli(1_700_000_000_000)
	tr := openTier(t, Config{Bucket: b, Pointers: NewMemoryPointers(), OwnObjectBytes: 8 << 10, Now: func() time.Time { return now }})
	g := newLogGen()
	short := []queueKey{{"Short", 0}}
	mixed := []queueKey{{"Short", 0}, {"Short", 0}, {"Short", 0}, {"Long", 0}}
	s1 := g.segment(t, 100, short, 50)
	s2 := g.segment(t, 200, mixed, 50) // Short's run here is big enough for an own object
	g.nowMs += 10 * time.Hour.Milliseconds()
	s3 := g.segment(t, 100, short, 50)
	for _, s := range []*testSegment{s1, s2, s3} {
		tr.Submit(s)
	}
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	if q := tr.Manifest().Segments[1].Queues; q[1].Object == "" || q[1].Topic != "Short" {
		t.Fatalf("expected Short's run of segment 2 in its own object: %+v", q)
	}
	now = time.UnixMilli(g.nowMs) // s1 and s2 are 10 h old, s3 is fresh
	retention := func(topic string) time.Duration {
		if topic == "Short" {
			return time.Hour
		}
		return 0 // Long: keep forever
	}
	st, err := tr.EnforceRetention(waitCtx(t), retention)
	if err != nil {
		t.Fatal(err)
	}
	if st.SegmentsDeleted != 1 || st.RunsDeleted != 1 {
		t.Fatalf("retention: %+v, want 1 segment and 1 run", st)
	}
	if _, err := b.Attributes(context.Background(), SegmentObjectName("test-cluster/group-a", s1.base, tr.Epoch())); !objstore.IsNotFound(err) {
		t.Fatalf("expired segment object still there: %v", err)
	}
	m := tr.Manifest()
	if len(m.Segments) != 2 || m.Segments[0].Base != s2.base || m.Watermark != g.pos {
		t.Fatalf("manifest after retention: %d segments from %d, watermark %d", len(m.Segments), m.Segments[0].Base, m.Watermark)
	}
	first, _, _ := tr.QueueRange("Short", 0)
	if want := int64(len(g.want[queueKey{"Short", 0}]) - 100); first != want {
		t.Fatalf("Short's first cold offset %d, want %d", first, want)
	}
	if got := readQueue(t, tr, queueKey{"Long", 0}, 100); len(got) != len(g.want[queueKey{"Long", 0}]) {
		t.Fatalf("Long lost records: %d of %d", len(got), len(g.want[queueKey{"Long", 0}]))
	}
	// A rebuild from the bucket agrees (the gap left by retention is below the watermark).
	rm, err := RebuildManifest(context.Background(), b, "test-cluster/group-a", tr.Pointer())
	if err != nil || len(rm.Segments) != 2 || rm.Watermark != m.Watermark || !rm.Segments[0].Queues[1].Dropped {
		t.Fatalf("rebuild after retention: %+v, %v", rm, err)
	}
}

func TestBucketOutageThenRecovery(t *testing.T) {
	fb := &flakyBucket{Bucket: objstore.NewMemory()}
	fb.down.Store(true)
	tr := openTier(t, Config{Bucket: fb, Pointers: NewMemoryPointers()})
	g := newLogGen()
	segs := []*testSegment{g.segment(t, 100, queueKeys(1, 2), 50), g.segment(t, 100, queueKeys(1, 2), 50)}
	for _, s := range segs {
		tr.Submit(s)
	}
	deadline := time.Now().Add(30 * time.Second)
	for fb.failures.Load() < 5 { // several retries happen while the bucket is down
		if time.Now().After(deadline) {
			t.Fatal("offloader did not retry while the bucket was down")
		}
		time.Sleep(time.Millisecond)
	}
	if wm := tr.OffloadWatermark(); wm != 0 {
		t.Fatalf("watermark moved to %d while the bucket was down", wm)
	}
	if tr.CanDeleteLocal(segs[0].end, 0) {
		t.Fatal("local deletion allowed for a segment not in the tier")
	}
	fb.down.Store(false)
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	checkQueues(t, tr, g, 20)
}
