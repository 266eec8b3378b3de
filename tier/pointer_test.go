package tier

import (
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
	// The second writer's term is newer, and every object it wrote carries its epoch.
	p2 := tr2.Pointer()
	if p2.Epoch <= tp.Epoch || p2.Epoch != tr2.Epoch() {
		t.Fatalf("pointer epoch %d after the second term (first %d, tier %d)", p2.Epoch, tp.Epoch, tr2.Epoch())
	}
	if s := tr2.Manifest().Segments[1]; ObjectEpoch(s.Object) != p2.Epoch || ObjectEpoch(tr2.Manifest().Segments[0].Object) != tp.Epoch {
		t.Fatalf("segment objects %s, %s: epochs do not name their writers (%d, %d)",
			tr2.Manifest().Segments[0].Object, s.Object, tp.Epoch, p2.Epoch)
	}
}
