package tier

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
)

func TestTombstoneHidesDeletedTopic(t *testing.T) {
	ctx := waitCtx(t)
	b := fsBucket(t)
	ptrs := NewMemoryPointers()
	g := newLogGen()
	tr := openTier(t, Config{Bucket: b, Pointers: ptrs})
	dead := queueKey{"Topic0", 0}
	live := queueKey{"Topic1", 0}
	tr.Submit(g.segment(t, 200, []queueKey{dead}, 100)) // only the deleted topic
	tr.Submit(g.segment(t, 200, []queueKey{dead, live}, 100))
	if err := tr.WaitOffloaded(ctx, g.pos); err != nil {
		t.Fatal(err)
	}
	oldRecs := g.want[dead]
	g.want[dead] = nil
	liveWant := g.want[live]
	h0, _ := message.ParseRecordHeader(oldRecs[0])
	ts := Tombstone{Topic: dead.topic, Position: g.pos, Next: []TombstoneQueue{{QueueID: 0, Next: g.offsets[dead]}}}
	if err := tr.AddTombstone(ctx, ts); err != nil {
		t.Fatal(err)
	}
	// The next incarnation continues the queue's offsets.
	tr.Submit(g.segment(t, 100, []queueKey{dead, live}, 100))
	if err := tr.WaitOffloaded(ctx, g.pos); err != nil {
		t.Fatal(err)
	}

	check := func(tr *Tier, what string) {
		t.Helper()
		got := readQueue(t, tr, dead, 16)
		if len(got) != len(g.want[dead]) {
			t.Fatalf("%s: read %d records of the recreated topic, want %d (only new ones)", what, len(got), len(g.want[dead]))
		}
		for _, rec := range got {
			if h, _ := message.ParseRecordHeader(rec); h.CommitLogOffset < ts.Position {
				t.Fatalf("%s: served deleted record at %d", what, h.CommitLogOffset)
			}
		}
		if first, _, ok := tr.QueueRange(dead.topic, 0); !ok || first != ts.NextOffset(0) {
			t.Fatalf("%s: range from %d %v, want %d", what, first, ok, ts.NextOffset(0))
		}
		if n := len(readQueue(t, tr, live, 64)); n != len(g.want[live]) || n <= len(liveWant) {
			t.Fatalf("%s: live topic has %d records, want %d", what, n, len(g.want[live]))
		}
		if off, err := tr.OffsetForTime(ctx, dead.topic, 0, 0); err != nil || off != ts.NextOffset(0) {
			t.Fatalf("%s: offset for time 0: %d %v", what, off, err)
		}
		if _, err := tr.ReadAt(ctx, h0.CommitLogOffset); !errors.Is(err, ErrNotInTier) {
			t.Fatalf("%s: ReadAt of a deleted record: %v", what, err)
		}
		recs, err := tr.Lookup(ctx, KeyQuery{Topic: dead.topic, Key: h0.UniqKey, Uniq: true})
		if err != nil || len(recs) != 0 {
			t.Fatalf("%s: lookup of a deleted key: %d records, %v", what, len(recs), err)
		}
		if got, ok := tr.Tombstone(dead.topic); !ok || got.Position != ts.Position {
			t.Fatalf("%s: tombstone %+v %v", what, got, ok)
		}
	}
	check(tr, "after a later commit")
	tr.Close()

	// A lost manifest is rebuilt with the tombstone from its own object.
	ptr, _ := ptrs.Load(context.Background())
	if err := b.Delete(context.Background(), ptr.Manifest); err != nil {
		t.Fatal(err)
	}
	check(openTier(t, Config{Bucket: b, Pointers: ptrs, ReadOnly: true}), "rebuilt")

	// Retention drops the segment holding only deleted records, keeps the others.
	rw := openTier(t, Config{Bucket: b, Pointers: ptrs})
	st, err := rw.EnforceRetention(ctx, func(string) time.Duration { return 0 })
	if err != nil || st.SegmentsDeleted != 1 {
		t.Fatalf("retention: %+v %v; want the deleted topic's segment dropped", st, err)
	}
	check(rw, "after retention")
}

func TestVisibleSpanClampsStraddlingRun(t *testing.T) {
	m := &Manifest{Tombstones: []Tombstone{{Topic: "T", Position: 500, Next: []TombstoneQueue{{QueueID: 1, Next: 40}}}}}
	seg := &ManifestSegment{Base: 100, End: 900}
	q, ok := m.visibleSpan(seg, &ManifestQueue{Topic: "T", QueueID: 1, FirstOffset: 10, LastOffset: 60})
	if !ok || q.FirstOffset != 40 || q.LastOffset != 60 {
		t.Fatalf("straddling run: %+v %v", q, ok)
	}
	if _, ok := m.visibleSpan(seg, &ManifestQueue{Topic: "T", QueueID: 1, FirstOffset: 10, LastOffset: 39}); ok {
		t.Fatal("a run entirely below the next incarnation stays visible")
	}
	if _, ok := m.visibleSpan(&ManifestSegment{Base: 0, End: 500}, &ManifestQueue{Topic: "T"}); ok {
		t.Fatal("a run of a segment below the tombstone stays visible")
	}
	if _, ok := m.visibleSpan(seg, &ManifestQueue{Topic: "U", FirstOffset: 0}); !ok {
		t.Fatal("another topic's run is hidden")
	}
}
