package meta

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

func newElection(t *testing.T, c *Client, group string, ttl time.Duration) *Election {
	t.Helper()
	e, err := c.NewElection(testCtx(t), group, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatalf("%s: not closed after %v", what, testTimeout)
	}
}

func TestElectionTermsHaveIncreasingEpochs(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	e1 := newElection(t, c, "g1", 0)
	e2 := newElection(t, c, "g1", 0)
	if _, err := e1.Leader(ctx); !isErr(err, ErrNotFound) {
		t.Fatalf("leader before campaign: %v", err)
	}
	if e1.Epoch() != 0 {
		t.Fatalf("epoch %d before campaigning", e1.Epoch())
	}
	l1, err := e1.Campaign(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if !l1.Held() || l1.Epoch <= 0 || e1.Epoch() != l1.Epoch || l1.Group != "g1" {
		t.Fatalf("first term %+v, election epoch %d", l1, e1.Epoch())
	}
	if again, err := e1.Campaign(ctx, "b1"); err != nil || again.Epoch != l1.Epoch {
		t.Fatalf("campaign while leading: %+v %v, want the same term", again, err)
	}
	won := make(chan Leadership, 1)
	go func() {
		l, err := e2.Campaign(ctx, "b2")
		if err != nil {
			t.Error(err)
		}
		won <- l
	}()
	if l, err := e2.Leader(ctx); err != nil || l != "b1" {
		t.Fatalf("leader %q %v, want b1", l, err)
	}

	// Resigning ends the term at once and hands over.
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, l1.Lost, "resigned term's Lost")
	if l1.Held() || e1.Epoch() != 0 {
		t.Fatal("resigned term still held")
	}
	l2 := <-won
	if l2.Epoch <= l1.Epoch {
		t.Fatalf("second term's epoch %d is not above the first's %d", l2.Epoch, l1.Epoch)
	}
	if l, err := e1.Leader(ctx); err != nil || l != "b2" {
		t.Fatalf("leader %q %v, want b2", l, err)
	}

	// A revoked lease (a lost session) ends the term; the other member wins, and the loser
	// can campaign again on a fresh session.
	go func() {
		l, err := e1.Campaign(ctx, "b1")
		if err != nil {
			t.Error(err)
		}
		won <- l
	}()
	if _, err := c.Etcd().Revoke(ctx, e2.Lease()); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, l2.Lost, "term of a revoked session")
	l3 := <-won
	if l3.Epoch <= l2.Epoch {
		t.Fatalf("third term's epoch %d is not above the second's %d", l3.Epoch, l2.Epoch)
	}
	l4, err := e2.Campaign(testCtxShort(t), "b2")
	if err == nil {
		t.Fatalf("e2 won %+v while e1 leads", l4)
	}
	if e2.Epoch() != 0 {
		t.Fatal("e2 reports an epoch while not leading")
	}
}

func testCtxShort(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestTierPointerSwapIsFencedAndForwardOnly(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	if _, err := c.GetTierPointer(ctx, "g1"); !isErr(err, ErrNotFound) {
		t.Fatalf("empty: %v", err)
	}
	e1 := newElection(t, c, "g1", 0)
	l1, err := e1.Campaign(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	p1, err := c.CompareAndSwapTierPointer(ctx, "g1", TierPointer{}, TierPointer{OffloadWatermark: 100, ManifestKey: "m/1"}, l1)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Epoch != l1.Epoch || p1.Revision == 0 {
		t.Fatalf("stored %+v, want epoch %d and a revision", p1, l1.Epoch)
	}
	got, err := c.GetTierPointer(ctx, "g1")
	if err != nil || got != p1 {
		t.Fatalf("read back %+v %v, want %+v", got, err, p1)
	}
	// From the absent pointer again: it exists now.
	if _, err := c.CompareAndSwapTierPointer(ctx, "g1", TierPointer{}, TierPointer{OffloadWatermark: 200}, l1); !isErr(err, ErrTierPointerConflict) {
		t.Fatalf("swap from a stale (absent) pointer: %v", err)
	}
	p2, err := c.CompareAndSwapTierPointer(ctx, "g1", p1, TierPointer{OffloadWatermark: 100, ManifestKey: "m/2"}, l1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompareAndSwapTierPointer(ctx, "g1", p1, TierPointer{OffloadWatermark: 300, ManifestKey: "m/3"}, l1); !isErr(err, ErrTierPointerConflict) {
		t.Fatalf("swap from a stale revision: %v", err)
	}
	if _, err := c.CompareAndSwapTierPointer(ctx, "g1", p2, TierPointer{OffloadWatermark: 99, ManifestKey: "m/0"}, l1); !isErr(err, ErrTierPointerBackwards) {
		t.Fatalf("backwards: %v", err)
	}
	if _, err := c.CompareAndSwapTierPointer(ctx, "g2", TierPointer{}, TierPointer{OffloadWatermark: 1}, l1); !isErr(err, ErrNotLeader) {
		t.Fatalf("another group's pointer under g1's leadership: %v", err)
	}

	// A new master deposes the first: its swaps fail even though it never noticed.
	e2 := newElection(t, c, "g1", 0)
	if _, err := c.Etcd().Revoke(ctx, e1.Lease()); err != nil {
		t.Fatal(err)
	}
	l2, err := e2.Campaign(ctx, "b2")
	if err != nil {
		t.Fatal(err)
	}
	blind := l1
	blind.Lost = make(chan struct{}) // a deposed master that has not noticed yet
	if _, err := c.CompareAndSwapTierPointer(ctx, "g1", p2, TierPointer{OffloadWatermark: 400, ManifestKey: "m/x"}, blind); !isErr(err, ErrNotLeader) {
		t.Fatalf("deposed master's swap: %v", err)
	}
	if got, _ := c.GetTierPointer(ctx, "g1"); got != p2 {
		t.Fatalf("pointer %+v after a fenced swap, want %+v", got, p2)
	}
	p3, err := c.CompareAndSwapTierPointer(ctx, "g1", p2, TierPointer{OffloadWatermark: 400, ManifestKey: "m/4"}, l2)
	if err != nil || p3.Epoch != l2.Epoch {
		t.Fatalf("new master's swap: %+v %v", p3, err)
	}
}

func TestTierPointerReadsVersion1(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	if _, err := c.Etcd().Put(ctx, c.key(dirTier, "g1"), `{"v":1,"watermark":64,"manifest":"c/g1/manifest/00000000000000000003.json"}`); err != nil {
		t.Fatal(err)
	}
	p, err := c.GetTierPointer(ctx, "g1")
	if err != nil || p.OffloadWatermark != 64 || p.Epoch != 0 || p.ManifestKey == "" {
		t.Fatalf("v1 pointer read as %+v %v", p, err)
	}
	e := newElection(t, c, "g1", 0)
	l, err := e.Campaign(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompareAndSwapTierPointer(ctx, "g1", p, TierPointer{OffloadWatermark: 128, ManifestKey: "m"}, l); err != nil {
		t.Fatalf("swap over a v1 pointer: %v", err)
	}
}

func FuzzDecodeTierPointer(f *testing.F) {
	f.Add([]byte(`{"v":2,"watermark":10,"manifest":"c/g/manifest/1.json","epoch":7}`))
	f.Add([]byte(`{"v":1,"watermark":10,"manifest":"m"}`))
	f.Add([]byte(`{"v":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeTierPointer(b)
		if err != nil {
			return
		}
		if p.OffloadWatermark < 0 || p.Epoch < 0 || p.Revision != 0 {
			t.Fatalf("accepted %+v", p)
		}
		// What decodes encodes to a value that decodes the same.
		again, err := DecodeTierPointer([]byte(encodeTierPointer(p)))
		if err != nil || again != p {
			t.Fatalf("round trip %+v -> %+v %v", p, again, err)
		}
		var probe map[string]any
		if json.Unmarshal([]byte(encodeTierPointer(p)), &probe) != nil {
			t.Fatal("encoded value is not JSON")
		}
	})
}
