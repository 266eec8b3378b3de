package meta

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stratamq/strata/meta/netcut"
)

func TestInSyncSetSwapIsFenced(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	if _, err := c.GetInSyncSet(ctx, "g1"); !isErr(err, ErrNotFound) {
		t.Fatalf("before any set: %v", err)
	}
	if ok, _, err := c.Eligible(ctx, "g1", "anyone"); err != nil || !ok {
		t.Fatalf("a group that never replicated: eligible %v %v, want true", ok, err)
	}
	e1 := newElection(t, c, "g1", 0)
	l1, err := e1.Campaign(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetInSyncSet(ctx, "g1", InSyncSet{}, nil, l1); err == nil {
		t.Fatal("an empty set was stored")
	}
	s1, err := c.SetInSyncSet(ctx, "g1", InSyncSet{}, []string{"b2", "b1", "b2"}, l1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s1.Members, []string{"b1", "b2"}) || s1.Epoch != l1.Epoch || s1.Revision == 0 {
		t.Fatalf("stored %+v", s1)
	}
	got, err := c.GetInSyncSet(ctx, "g1")
	if err != nil || !slices.Equal(got.Members, s1.Members) || got.Revision != s1.Revision || got.Epoch != s1.Epoch {
		t.Fatalf("read back %+v %v, want %+v", got, err, s1)
	}
	if ok, _, _ := c.Eligible(ctx, "g1", "b3"); ok {
		t.Fatal("b3 is eligible outside the set")
	}
	if _, err := c.SetInSyncSet(ctx, "g1", InSyncSet{}, []string{"b1"}, l1); !isErr(err, ErrInSyncSetConflict) {
		t.Fatalf("swap from a stale (absent) set: %v", err)
	}
	if _, err := c.SetInSyncSet(ctx, "g2", InSyncSet{}, []string{"b1"}, l1); !isErr(err, ErrNotLeader) {
		t.Fatalf("another group's set under g1's leadership: %v", err)
	}

	// A deposed master that has not noticed cannot shrink the set.
	e2 := newElection(t, c, "g1", 0)
	if _, err := c.Etcd().Revoke(ctx, e1.Lease()); err != nil {
		t.Fatal(err)
	}
	l2, err := e2.Campaign(ctx, "b2")
	if err != nil {
		t.Fatal(err)
	}
	blind := l1
	blind.Lost = make(chan struct{})
	if _, err := c.SetInSyncSet(ctx, "g1", s1, []string{"b1"}, blind); !isErr(err, ErrNotLeader) {
		t.Fatalf("deposed master's swap: %v", err)
	}
	s2, err := c.SetInSyncSet(ctx, "g1", s1, []string{"b2"}, l2)
	if err != nil || s2.Epoch != l2.Epoch {
		t.Fatalf("new master's swap: %+v %v", s2, err)
	}
}

type campaignResult struct {
	lead Leadership
	err  error
}

func campaignInSync(ctx context.Context, e *Election, member string, unclean bool) <-chan campaignResult {
	out := make(chan campaignResult, 1)
	go func() {
		l, _, err := e.CampaignInSync(ctx, member, unclean)
		out <- campaignResult{l, err}
	}()
	return out
}

func waitResult(t *testing.T, ch <-chan campaignResult, what string) campaignResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(testTimeout):
		t.Fatalf("%s: no result after %v", what, testTimeout)
		return campaignResult{}
	}
}

// notYet fails if ch delivers before the election has settled: leader must be the current
// master as etcd reports it (the check reads etcd, so it orders after every earlier write).
func notYet(t *testing.T, ch <-chan campaignResult, e *Election, leader, what string) {
	t.Helper()
	if l, err := e.Leader(testCtx(t)); err != nil || l != leader {
		t.Fatalf("leader %q %v, want %s", l, err, leader)
	}
	select {
	case r := <-ch:
		t.Fatalf("%s: campaign returned %+v %v", what, r.lead, r.err)
	default:
	}
}

func TestOnlyInSyncMembersWin(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	e1, e2, e3 := newElection(t, c, "g1", 0), newElection(t, c, "g1", 0), newElection(t, c, "g1", 0)
	l1, _, err := e1.CampaignInSync(ctx, "b1", false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.SetInSyncSet(ctx, "g1", InSyncSet{}, []string{"b1", "b2"}, l1)
	if err != nil {
		t.Fatal(err)
	}
	w3 := campaignInSync(ctx, e3, "b3", false) // out of the set: does not even queue
	w2 := campaignInSync(ctx, e2, "b2", false)
	eventually(t, testTimeout, "b2 queued in the election", func() bool {
		resp, err := c.Etcd().Get(ctx, c.key(dirElection, "g1"), clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 2
	})
	notYet(t, w3, e1, "b1", "b3 while b1 leads")

	// The master dies: only b2, in the set, may follow it.
	if _, err := c.Etcd().Revoke(ctx, e1.Lease()); err != nil {
		t.Fatal(err)
	}
	r2 := waitResult(t, w2, "b2's campaign")
	if r2.err != nil || r2.lead.Epoch <= l1.Epoch {
		t.Fatalf("b2: %+v %v", r2.lead, r2.err)
	}
	notYet(t, w3, e2, "b2", "b3 while b2 leads")

	// b2 takes b3 in and resigns: b3 may win now.
	if _, err := c.SetInSyncSet(ctx, "g1", s, []string{"b2", "b3"}, r2.lead); err != nil {
		t.Fatal(err)
	}
	eventually(t, testTimeout, "b3 queued once in the set", func() bool {
		resp, err := c.Etcd().Get(ctx, c.key(dirElection, "g1"), clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 2
	})
	if err := e2.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r3 := waitResult(t, w3, "b3's campaign")
	if r3.err != nil || r3.lead.Epoch <= r2.lead.Epoch {
		t.Fatalf("b3: %+v %v", r3.lead, r3.err)
	}
}

func TestInSyncMemberDroppedWhileQueuedResigns(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	e1, e2 := newElection(t, c, "g1", 0), newElection(t, c, "g1", 0)
	l1, _, err := e1.CampaignInSync(ctx, "b1", false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.SetInSyncSet(ctx, "g1", InSyncSet{}, []string{"b1", "b2"}, l1)
	if err != nil {
		t.Fatal(err)
	}
	w2 := campaignInSync(ctx, e2, "b2", false)
	eventually(t, testTimeout, "b2 queued", func() bool {
		resp, err := c.Etcd().Get(ctx, c.key(dirElection, "g1"), clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 2
	})
	// b2 falls behind and leaves the set while it waits in the queue.
	if _, err := c.SetInSyncSet(ctx, "g1", s, []string{"b1"}, l1); err != nil {
		t.Fatal(err)
	}
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := waitResult(t, w2, "b2's campaign")
	if !errors.Is(r2.err, ErrNotInSync) {
		t.Fatalf("b2 out of the set won: %+v %v", r2.lead, r2.err)
	}
	if _, err := e2.Leader(ctx); !isErr(err, ErrNotFound) {
		t.Fatalf("after b2 resigned: leader %v, want none", err)
	}
	if e2.Epoch() != 0 {
		t.Fatal("b2 still reports a term")
	}

	// The operator's override: b2 wins although it is not in sync.
	l2, set, err := e2.CampaignInSync(ctx, "b2", true)
	if err != nil || l2.Epoch <= l1.Epoch || !slices.Equal(set.Members, []string{"b1"}) {
		t.Fatalf("unclean campaign: %+v %+v %v", l2, set, err)
	}
}

func TestWriteLeaseEndsBeforeTheTermCanExpire(t *testing.T) {
	srv := startEtcd(t)
	u, err := url.Parse(srv.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	px := netcut.New(t, u.Host)
	// The master reaches etcd only through the proxy; the observer directly.
	master := newTestClient(t, []string{"http://" + px.Addr()})
	observer := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	const ttl = 2 * time.Second
	e := newElection(t, master, "g1", ttl)
	lead, err := e.Campaign(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	wl, err := master.NewWriteLease(ctx, lead)
	if err != nil {
		t.Fatal(err)
	}
	defer wl.Close()
	if !wl.Valid() || wl.Duration() != ttl-WriteLeaseMargin(ttl) || wl.Remaining() <= 0 {
		t.Fatalf("fresh lease: valid %v, duration %s, remaining %s", wl.Valid(), wl.Duration(), wl.Remaining())
	}
	// Renewals keep it valid past its own duration while etcd answers.
	renewed := time.Now().Add(wl.Duration() + 500*time.Millisecond)
	eventually(t, testTimeout, "the lease renewed past one duration", func() bool { return time.Now().After(renewed) })
	if !wl.Valid() {
		t.Fatal("the write lease lapsed while etcd answered")
	}

	// Cut the master off. Its write lease must end before the term's key expires on etcd.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deleted := make(chan bool, 1)
	go func() {
		for wr := range observer.Etcd().Watch(wctx, lead.Key) {
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					deleted <- wl.Valid()
					return
				}
			}
		}
	}()
	px.SetCut(true)
	select {
	case stillValid := <-deleted:
		if stillValid {
			t.Fatal("the term's key expired while the cut-off master's write lease was still valid")
		}
	case <-time.After(testTimeout):
		t.Fatal("the cut-off master's key never expired")
	}
	if wl.Valid() {
		t.Fatal("write lease valid after the term expired")
	}
}
