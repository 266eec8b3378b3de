package retro

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

const testTopic = "Retro"

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sealed adapts a sealed store segment to tier.Segment.
type sealed struct {
	st  *store.Store
	seg store.SealedSegment
}

func (s sealed) Base() int64 { return s.seg.BaseOffset }
func (s sealed) End() int64  { return s.seg.EndOffset }
func (s sealed) Records(ctx context.Context, fn func([]byte) error) error {
	it, err := s.st.OpenSegment(s.seg.BaseOffset)
	if err != nil {
		return err
	}
	defer it.Close()
	for {
		_, rec, err := it.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// fixture is a hot store with tiny segments over a cold tier in a filesystem bucket, with
// the tier pointer in an embedded etcd. While tiering is on, sealed segments are offloaded
// and deleted locally at once; switching it off freezes the cold part.
type fixture struct {
	st     *store.Store
	tr     *tier.Tier
	log    *Log
	tiered atomic.Bool
	body   []byte
	bucket objstore.Bucket
	mc     *meta.Client
}

// uncachedTier opens a read-only view of the fixture's tier whose block and index caches
// hold nothing, so every cold read goes to the bucket.
func (f *fixture) uncachedTier(t testing.TB) *tier.Tier {
	t.Helper()
	tr, err := tier.Open(testCtx(t), tier.Config{Bucket: f.bucket, Pointers: tier.MetaPointers{Client: f.mc, Group: "g1"},
		Prefix: "retro/g1", ReadOnly: true, CacheBytes: 1, IndexCacheBytes: 1, DisableReadAhead: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := testCtx(t)
	srv, err := etcdembed.Start(ctx, t.TempDir(), etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	mc, err := meta.New(ctx, meta.Config{Endpoints: srv.Endpoints(), Cluster: "retro"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	bucket, err := objstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tier.Open(ctx, tier.Config{Bucket: bucket, Pointers: tier.MetaPointers{Client: mc, Group: "g1"},
		Prefix: "retro/g1", BlockBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	el, err := mc.NewElection(ctx, "g1", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { el.Close() })
	term, err := el.Campaign(ctx, "retro-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Lead(ctx, term); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{Dir: t.TempDir(), SegmentBytes: 32 << 10, MaxMessageBytes: 8 << 10,
		SealAfter: 40 * time.Millisecond, FlushInterval: 20 * time.Millisecond, CheckpointInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, tr: tr, log: New(st, tr), body: make([]byte, 700), bucket: bucket, mc: mc}
	f.tiered.Store(true)
	st.OnSeal(func(s store.SealedSegment) {
		if f.tiered.Load() {
			tr.Submit(sealed{st, s})
		}
	})
	st.SetRetention(func(s store.SealedSegment) bool {
		return f.tiered.Load() && tr.CanDeleteLocal(s.EndOffset, s.LastStoreTime)
	})
	return f
}

// produce appends n messages to queue 0 of testTopic, one Append each.
func (f *fixture) produce(t testing.TB, n int, tag string) {
	t.Helper()
	for i := 0; i < n; i++ {
		m := message.Message{Topic: testTopic, QueueID: 0, BornTimestamp: time.Now().UnixMilli(), Body: f.body,
			Properties: map[string]string{message.PropertyTags: tag, message.PropertyUniqKey: fmt.Sprintf("%s-%d", tag, i)}}
		rec, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.Append(testCtx(t), rec); err != nil {
			t.Fatal(err)
		}
	}
}

// waitColdUpTo waits until offsets below n are in the cold tier only.
func (f *fixture) waitColdUpTo(t testing.TB, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, last, ok := f.tr.QueueRange(testTopic, 0)
		if ok && last == n-1 && f.st.MinOffset(testTopic, 0) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets below %d did not move to the cold tier: cold last %d (%v), hot min %d", n, last, ok, f.st.MinOffset(testTopic, 0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// build stores cold messages (offsets 0..cold-1, in the tier only) and then hot ones, with
// a few milliseconds between batches so that store times differ at the boundaries.
func (f *fixture) build(t testing.TB, coldBatches, hotBatches, perBatch int) (cold int64) {
	t.Helper()
	for b := 0; b < coldBatches; b++ {
		f.produce(t, perBatch, fmt.Sprintf("cold%d", b))
		time.Sleep(3 * time.Millisecond)
	}
	cold = int64(coldBatches * perBatch)
	f.waitColdUpTo(t, cold)
	f.tiered.Store(false)
	time.Sleep(3 * time.Millisecond)
	for b := 0; b < hotBatches; b++ {
		f.produce(t, perBatch, fmt.Sprintf("hot%d", b))
		time.Sleep(3 * time.Millisecond)
	}
	return cold
}

type stored struct {
	offset, ts int64
	from       Where
}

// replay reads the whole queue through a Reader and checks there is no gap, no duplicate
// and that the cold part comes from the cold tier.
func replay(t testing.TB, l *Log, from int64) []stored {
	t.Helper()
	r := l.NewReader(testTopic, 0, from, 7, 0)
	var out []stored
	for {
		res, err := r.Next(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) == 0 {
			return out
		}
		for _, rec := range res.Records {
			h, err := message.ParseRecordHeader(rec)
			if err != nil {
				t.Fatal(err)
			}
			want := from
			if len(out) > 0 {
				want = out[len(out)-1].offset + 1
			}
			if h.QueueOffset != want {
				t.Fatalf("replay: got offset %d after %d messages, want %d (gap or duplicate)", h.QueueOffset, len(out), want)
			}
			out = append(out, stored{h.QueueOffset, h.StoreTimestamp, res.From})
		}
	}
}

func TestLogAcrossTiers(t *testing.T) {
	f := newFixture(t)
	cold := f.build(t, 3, 2, 40)
	total := cold + 80
	l := f.log
	ctx := testCtx(t)

	b := l.Bounds(testTopic, 0)
	if b.Min != 0 || b.Max != total || b.HotMin != cold || !b.InCold || b.ColdLast != cold-1 {
		t.Fatalf("bounds %+v, want min 0, max %d, hot min %d, cold last %d", b, total, cold, cold-1)
	}
	if got := l.MinOffset(testTopic, 0); got != 0 {
		t.Fatalf("MinOffset = %d, want 0 (held in the cold tier)", got)
	}
	if got := l.MaxOffset(testTopic, 0); got != total {
		t.Fatalf("MaxOffset = %d, want %d", got, total)
	}
	for off, want := range map[int64]Where{0: Cold, cold - 1: Cold, cold: Hot, total: Hot, total + 1: Nowhere, -1: Nowhere} {
		if got := l.Locate(testTopic, 0, off); got != want {
			t.Errorf("Locate(%d) = %v, want %v", off, got, want)
		}
	}

	msgs := replay(t, l, 0)
	if int64(len(msgs)) != total {
		t.Fatalf("replay returned %d messages, want %d", len(msgs), total)
	}
	for _, m := range msgs {
		if want := map[bool]Where{true: Cold, false: Hot}[m.offset < cold]; m.from != want {
			t.Fatalf("offset %d came from %v, want %v", m.offset, m.from, want)
		}
	}
	// Replay from the middle of the cold part and from the boundary.
	for _, from := range []int64{cold / 2, cold - 1, cold, total - 1} {
		if got := replay(t, l, from); int64(len(got)) != total-from {
			t.Fatalf("replay from %d returned %d messages, want %d", from, len(got), total-from)
		}
	}

	est, err := l.EarliestStoreTime(ctx, testTopic, 0)
	if err != nil || est != msgs[0].ts {
		t.Fatalf("EarliestStoreTime = %d, %v; want %d (offset 0, cold)", est, err, msgs[0].ts)
	}

	// LOWER semantics, checked against a scan of every stored message.
	lower := func(ts int64) int64 {
		for _, m := range msgs {
			if m.ts >= ts {
				return m.offset
			}
		}
		return total
	}
	lastCold, firstHot := msgs[cold-1].ts, msgs[cold].ts
	if lastCold >= firstHot {
		t.Fatalf("test setup: last cold store time %d not before first hot %d", lastCold, firstHot)
	}
	check := func(name string, ts, want int64) {
		t.Helper()
		got, err := l.OffsetForTime(ctx, testTopic, 0, ts)
		if err != nil {
			t.Fatalf("%s: OffsetForTime(%d): %v", name, ts, err)
		}
		if got != want {
			t.Fatalf("%s: OffsetForTime(%d) = %d, want %d", name, ts, got, want)
		}
	}
	check("before everything", msgs[0].ts-1000, 0)
	check("first message", msgs[0].ts, 0)
	check("cold batch 2", msgs[40].ts, lower(msgs[40].ts))
	check("last cold time", lastCold, lower(lastCold))
	check("just after the last cold time", lastCold+1, cold)
	check("first hot time", firstHot, cold)
	check("hot batch 2", msgs[cold+40].ts, lower(msgs[cold+40].ts))
	check("last message", msgs[total-1].ts, lower(msgs[total-1].ts))
	check("after everything", msgs[total-1].ts+1, total)
	for _, m := range msgs {
		for _, ts := range []int64{m.ts - 1, m.ts, m.ts + 1} {
			check(fmt.Sprintf("offset %d", m.offset), ts, lower(ts))
		}
	}

	if got := l.Clamp(testTopic, 0, -5); got != 0 {
		t.Fatalf("Clamp(-5) = %d, want 0", got)
	}
	if got := l.Clamp(testTopic, 0, total+5); got != total {
		t.Fatalf("Clamp(max+5) = %d, want %d", got, total)
	}
}

func TestLogTagFilterAcrossTiers(t *testing.T) {
	f := newFixture(t)
	cold := f.build(t, 2, 2, 20)
	// Keep only the second hot batch: the reader must skip the whole cold part.
	r := f.log.NewReader(testTopic, 0, 0, 5, 0)
	r.SetTagCodes(message.TagHashCode("hot1"))
	var got []int64
	for {
		res, err := r.Next(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) == 0 {
			break
		}
		for _, rec := range res.Records {
			h, err := message.ParseRecordHeader(rec)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, h.QueueOffset)
		}
	}
	if len(got) != 20 || got[0] != cold+20 || got[19] != cold+39 {
		t.Fatalf("filtered replay got offsets %v, want %d..%d", got, cold+20, cold+39)
	}
}

func TestLogHotOnlyAndUnknown(t *testing.T) {
	f := newFixture(t)
	f.tiered.Store(false)
	l := New(f.st, nil)
	ctx := testCtx(t)
	if off, err := l.OffsetForTime(ctx, "Nope", 0, 1); err != nil || off != 0 {
		t.Fatalf("unknown queue: OffsetForTime = %d, %v; want 0", off, err)
	}
	if ts, err := l.EarliestStoreTime(ctx, "Nope", 0); err != nil || ts != -1 {
		t.Fatalf("unknown queue: EarliestStoreTime = %d, %v; want -1", ts, err)
	}
	if w := l.Locate("Nope", 0, 0); w != Nowhere {
		t.Fatalf("unknown queue: Locate = %v", w)
	}
	f.produce(t, 10, "a")
	if got := l.MaxOffset(testTopic, 0); got != 10 {
		t.Fatalf("MaxOffset = %d, want 10", got)
	}
	if off, err := l.OffsetForTime(ctx, testTopic, 0, time.Now().Add(time.Hour).UnixMilli()); err != nil || off != 10 {
		t.Fatalf("future time: OffsetForTime = %d, %v; want 10", off, err)
	}
	if got := replay(t, l, 0); len(got) != 10 || got[0].from != Hot {
		t.Fatalf("hot-only replay: %d messages", len(got))
	}
}
