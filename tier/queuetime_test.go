package tier

import (
	"testing"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier/objstore"
)

func TestStoreTimeEstimate(t *testing.T) {
	tr := openTier(t, Config{Bucket: objstore.NewMemory(), Pointers: NewMemoryPointers(), BlockBytes: 4 << 10})
	g := newLogGen()
	one := []queueKey{{"Solo", 0}}
	for range 3 {
		tr.Submit(g.segment(t, 50, one, 10))
	}
	mixed := queueKeys(1, 3)
	tr.Submit(g.segment(t, 200, mixed, 10))
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	// One queue stored one record per millisecond: interpolation is exact.
	for i, rec := range g.want[one[0]] {
		h, err := message.ParseRecordHeader(rec)
		if err != nil {
			t.Fatal(err)
		}
		if ms, ok := tr.StoreTimeEstimate("Solo", 0, int64(i)); !ok || ms != h.StoreTimestamp {
			t.Fatalf("Solo/0 offset %d: estimate %d, %v; stored at %d", i, ms, ok, h.StoreTimestamp)
		}
	}
	// Interleaved queues: the estimate stays within the run's time range, exact at its ends.
	k := mixed[1]
	recs := g.want[k]
	first, _ := message.ParseRecordHeader(recs[0])
	last, _ := message.ParseRecordHeader(recs[len(recs)-1])
	for i := range recs {
		ms, ok := tr.StoreTimeEstimate(k.topic, k.queue, int64(i))
		if !ok || ms < first.StoreTimestamp || ms > last.StoreTimestamp {
			t.Fatalf("%v offset %d: estimate %d, %v; outside the run [%d, %d]", k, i, ms, ok, first.StoreTimestamp, last.StoreTimestamp)
		}
	}
	if ms, _ := tr.StoreTimeEstimate(k.topic, k.queue, 0); ms != first.StoreTimestamp {
		t.Errorf("%v first offset: estimate %d, stored at %d", k, ms, first.StoreTimestamp)
	}
	if ms, _ := tr.StoreTimeEstimate(k.topic, k.queue, int64(len(recs)-1)); ms != last.StoreTimestamp {
		t.Errorf("%v last offset: estimate %d, stored at %d", k, ms, last.StoreTimestamp)
	}
	for _, c := range []struct {
		topic string
		q     int32
		off   int64
	}{{"Solo", 0, 150}, {"Solo", 0, -1}, {"Solo", 1, 0}, {"Nope", 0, 0}} {
		if ms, ok := tr.StoreTimeEstimate(c.topic, c.q, c.off); ok {
			t.Errorf("%s/%d offset %d: estimate %d, true; the tier holds no such offset", c.topic, c.q, c.off, ms)
		}
	}
}
