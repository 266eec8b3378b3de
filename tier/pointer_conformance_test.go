package tier_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/pointertest"
)

func TestMemoryPointersConformance(t *testing.T) {
	pointertest.Run(t, func(t *testing.T) pointertest.Harness {
		p := tier.NewMemoryPointers()
		return pointertest.Harness{Store: p, Elect: func(*testing.T) meta.Leadership { return p.Elect() }}
	})
}

// TestMetaPointersConformance runs the suite on etcd (embedded), one broker group per case.
// A new writer is elected by revoking the previous writer's session lease, as when a master
// is cut off from etcd, without closing its Election: the deposed writer is not told.
func TestMetaPointersConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	srv, err := etcdembed.Start(ctx, t.TempDir(), etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	mc, err := meta.New(ctx, meta.Config{Endpoints: srv.Endpoints(), Cluster: "conformance"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	var groups atomic.Int64
	pointertest.Run(t, func(t *testing.T) pointertest.Harness {
		group := fmt.Sprintf("g%d", groups.Add(1))
		var prev *meta.Election
		elect := func(t *testing.T) meta.Leadership {
			if prev != nil {
				if _, err := mc.Etcd().Revoke(ctx, prev.Lease()); err != nil {
					t.Fatal(err)
				}
			}
			el, err := mc.NewElection(ctx, group, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { el.Close() })
			l, err := el.Campaign(ctx, fmt.Sprintf("writer-%d", el.Lease()))
			if err != nil {
				t.Fatal(err)
			}
			prev = el
			return l
		}
		return pointertest.Harness{Store: tier.MetaPointers{Client: mc, Group: group}, Elect: elect}
	})
}
