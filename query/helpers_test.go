package query

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

const (
	testTopic  = "Orders"
	testGroup  = "group-a"
	testPrefix = "test-cluster/group-a"
)

var testTags = []string{"TagA", "TagB", "TagC", ""}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// sealedSegment adapts a store's sealed segment to tier.Segment, as the broker does.
type sealedSegment struct {
	st  *store.Store
	seg store.SealedSegment
}

func (s sealedSegment) Base() int64 { return s.seg.BaseOffset }
func (s sealedSegment) End() int64  { return s.seg.EndOffset }
func (s sealedSegment) Records(ctx context.Context, fn func([]byte) error) error {
	it, err := s.st.OpenSegment(s.seg.BaseOffset)
	if err != nil {
		return err
	}
	defer it.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
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

// storeHot reads the hot tier directly: the HotReader a broker's pull path amounts to.
type storeHot struct{ st *store.Store }

func (h storeHot) Read(ctx context.Context, topic string, q int32, off int64, n int, f *filter.Filter) (HotBatch, error) {
	r, err := h.st.Read(ctx, store.ReadRequest{Topic: topic, QueueID: q, Offset: off, MaxMessages: n, TagCodes: f.TagCodes()})
	if err != nil {
		return HotBatch{}, err
	}
	msgs, err := message.DecodeAll(r.Records)
	if err != nil {
		return HotBatch{}, err
	}
	out := msgs[:0]
	for _, m := range msgs {
		if f.Match(filter.MapProperties(m.Properties)) {
			out = append(out, m)
		}
	}
	return HotBatch{Messages: out, NextOffset: r.NextOffset, MinOffset: r.MinOffset}, nil
}

func (h storeHot) MinOffset(_ context.Context, topic string, q int32) (int64, error) {
	return h.st.MinOffset(topic, q), nil
}
func (h storeHot) MaxOffset(_ context.Context, topic string, q int32) (int64, error) {
	return h.st.MaxOffset(topic, q), nil
}
func (h storeHot) OffsetForTime(_ context.Context, topic string, q int32, ts int64) (int64, error) {
	return h.st.OffsetForTime(topic, q, ts)
}

// fixture is a broker group's two tiers: a store with tiny segments whose sealed segments are
// offloaded to a filesystem bucket (pointer in an embedded etcd) and then deleted locally.
type fixture struct {
	st     *store.Store
	writer *tier.Tier // the broker's tier
	reader *tier.Tier // a read-only tier over the same bucket and pointer, as the CLI opens
	mc     *meta.Client
	bucket objstore.Bucket
	// want holds each queue's messages as a consumer reads them, in offset order.
	want map[int32][]*message.Message
}

func newFixture(t *testing.T, perQueue int) *fixture {
	t.Helper()
	ctx := testCtx(t)
	srv, err := etcdembed.Start(ctx, t.TempDir(), etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	mc, err := meta.New(ctx, meta.Config{Endpoints: srv.Endpoints(), Cluster: "test-cluster"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	bucket, err := objstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Config{Dir: t.TempDir(), SegmentBytes: 64 << 10, MaxMessageBytes: 16 << 10, CheckpointInterval: 20 * time.Millisecond, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ptrs := tier.MetaPointers{Client: mc, Group: testGroup}
	wt, err := tier.Open(ctx, tier.Config{Bucket: bucket, Pointers: ptrs, Prefix: testPrefix, BlockBytes: 8 << 10,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wt.Close() })
	el, err := mc.NewElection(ctx, testGroup, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { el.Close() })
	term, err := el.Campaign(ctx, "query-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Lead(ctx, term); err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, writer: wt, mc: mc, bucket: bucket, want: map[int32][]*message.Message{}}
	f.append(t, perQueue)
	f.offload(t)
	f.reader = f.openReader(t)
	for q := range f.want {
		if _, last, ok := f.reader.QueueRange(testTopic, q); !ok || last+1 >= int64(len(f.want[q])) {
			t.Fatalf("queue %d: want a cold part and a hot part; cold ends at %d of %d (%v)", q, last, len(f.want[q]), ok)
		}
		if min := st.MinOffset(testTopic, q); min == 0 {
			t.Fatalf("queue %d: local retention deleted nothing", q)
		}
	}
	return f
}

func (f *fixture) openReader(t *testing.T) *tier.Tier {
	t.Helper()
	rt, err := tier.Open(testCtx(t), tier.Config{Bucket: f.bucket, Pointers: tier.MetaPointers{Client: f.mc, Group: testGroup},
		Prefix: testPrefix, ReadOnly: true, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// append stores perQueue messages in each of queues 0 and 1 with varied fields.
func (f *fixture) append(t *testing.T, perQueue int) {
	t.Helper()
	ctx := testCtx(t)
	storeHost := netip.MustParseAddrPort("10.1.2.3:10911")
	for i := range perQueue {
		for q := int32(0); q < 2; q++ {
			props := map[string]string{
				message.PropertyUniqKey: fmt.Sprintf("UNIQ-%d-%05d", q, i),
				"order":                 fmt.Sprint(i),
			}
			if tag := testTags[i%len(testTags)]; tag != "" {
				props[message.PropertyTags] = tag
			}
			if i%5 != 0 {
				props[message.PropertyKeys] = fmt.Sprintf("k%d-%d shared%d", q, i, i%10)
			}
			m := &message.Message{Topic: testTopic, QueueID: q, Flag: 0, BornTimestamp: 1_700_000_000_000 + int64(i),
				BornHost: netip.MustParseAddrPort(fmt.Sprintf("192.168.0.%d:4000", 1+i%200)), StoreHost: storeHost,
				ReconsumeTimes: int32(i % 3), Body: []byte(fmt.Sprintf("body %d of queue %d %s", i, q, string(make([]byte, i%300)))),
				Properties: props}
			rec, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.st.Append(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	for q := int32(0); q < 2; q++ {
		r, err := f.st.Read(ctx, store.ReadRequest{Topic: testTopic, QueueID: q, Offset: 0, MaxMessages: perQueue + 1, MaxBytes: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := message.DecodeAll(r.Records)
		if err != nil || len(msgs) != perQueue {
			t.Fatalf("queue %d: read back %d messages, %v", q, len(msgs), err)
		}
		f.want[q] = msgs
	}
}

// offload sends every sealed segment to the tier, waits for it, and lets local retention
// delete them.
func (f *fixture) offload(t *testing.T) {
	t.Helper()
	ctx := testCtx(t)
	segs := f.st.SealedSegments()
	if len(segs) < 2 {
		t.Fatalf("only %d sealed segments; append more", len(segs))
	}
	for _, s := range segs {
		f.writer.Submit(sealedSegment{f.st, s})
	}
	end := segs[len(segs)-1].EndOffset
	if err := f.writer.WaitOffloaded(ctx, end); err != nil {
		t.Fatal(err)
	}
	f.st.SetRetention(func(s store.SealedSegment) bool { return s.EndOffset <= f.writer.OffloadWatermark() })
	for f.st.MinCommitLogOffset() < end {
		select {
		case <-ctx.Done():
			t.Fatalf("local retention did not delete offloaded segments: min %d, want %d", f.st.MinCommitLogOffset(), end)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// queues lists the fixture's queues with both readers.
func (f *fixture) queues(brokerless bool) []Queue {
	var hot HotReader = storeHot{f.st}
	if brokerless {
		hot = nil
	}
	return []Queue{
		{Group: testGroup, Topic: testTopic, QueueID: 0, Cold: f.reader, Hot: hot},
		{Group: testGroup, Topic: testTopic, QueueID: 1, Cold: f.reader, Hot: hot},
	}
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	if s == "" {
		return netip.AddrPort{}
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatalf("host %q: %v", s, err)
	}
	return ap
}
