package tier

import (
	"context"
	"testing"

	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
)

// TestOffloadWithEtcdPointer runs offload, restart and cold reads against an embedded etcd.
func TestOffloadWithEtcdPointer(t *testing.T) {
	ctx := waitCtx(t)
	srv, err := etcdembed.Start(ctx, t.TempDir(), etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	mc, err := meta.New(ctx, meta.Config{Endpoints: srv.Endpoints(), Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	ptrs := MetaPointers{Client: mc, Group: "group-a"}
	b := fsBucket(t)
	g := newLogGen()
	tr := openTier(t, Config{Bucket: b, Pointers: ptrs})
	s1 := g.segment(t, 300, queueKeys(2, 2), 60)
	tr.Submit(s1)
	if err := tr.WaitOffloaded(ctx, s1.end); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	tp, err := mc.GetTierPointer(ctx, "group-a")
	if err != nil || tp.OffloadWatermark != s1.end {
		t.Fatalf("etcd pointer %+v, %v; want watermark %d", tp, err, s1.end)
	}
	tr2 := openTier(t, Config{Bucket: b, Pointers: ptrs})
	s2 := g.segment(t, 300, queueKeys(2, 2), 60)
	tr2.Submit(s1)
	tr2.Submit(s2)
	if err := tr2.WaitOffloaded(ctx, s2.end); err != nil {
		t.Fatal(err)
	}
	checkQueues(t, tr2, g, 40)
	// A stale writer's compare-and-swap is refused.
	if err := ptrs.CompareAndSwap(context.Background(), TierPointer{}, TierPointer{OffloadWatermark: 1}); err == nil {
		t.Fatal("stale compare-and-swap succeeded")
	}
}
