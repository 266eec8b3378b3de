// Package pointertest is the conformance suite every tier.PointerStore passes: run it from
// the implementation's tests with Run. It checks loads of an absent pointer, swaps from the
// zero pointer and from stale pointers, that the watermark never moves backwards, that
// exactly one of many concurrent swaps from the same pointer wins, and that a writer whose
// term has ended is fenced.
package pointertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/tier"
)

// Harness is one fresh broker group's pointer store and its election.
type Harness struct {
	Store tier.PointerStore
	// Elect makes a new candidate the group's writer and returns its term; the previous
	// writer, if any, is deposed without being told (its session is revoked or it is
	// replaced), as a master cut off from etcd would be.
	Elect func(t *testing.T) meta.Leadership
}

// Concurrency of the concurrent-swap case: writers and rounds.
const (
	writers = 8
	rounds  = 10
)

// Run runs every case, each on a harness newHarness makes for it.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"LoadAbsent", loadAbsent},
		{"SwapFromZero", swapFromZero},
		{"StalePrevConflicts", stalePrevConflicts},
		{"WatermarkNeverBackwards", watermarkNeverBackwards},
		{"ConcurrentSwapsOneWins", concurrentSwapsOneWins},
		{"DeposedWriterFenced", deposedWriterFenced},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newHarness(t)) })
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func load(t *testing.T, h Harness) tier.TierPointer {
	t.Helper()
	p, err := h.Store.Load(testCtx(t))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

func swap(t *testing.T, h Harness, prev, next tier.TierPointer, w meta.Leadership) tier.TierPointer {
	t.Helper()
	got, err := h.Store.CompareAndSwap(testCtx(t), prev, next, w)
	if err != nil {
		t.Fatalf("swap %+v -> %+v: %v", prev, next, err)
	}
	return got
}

func loadAbsent(t *testing.T, h Harness) {
	if p := load(t, h); p != (tier.TierPointer{}) {
		t.Fatalf("absent pointer loads as %+v, want the zero pointer", p)
	}
}

func swapFromZero(t *testing.T, h Harness) {
	w := h.Elect(t)
	got := swap(t, h, tier.TierPointer{}, tier.TierPointer{OffloadWatermark: 64, Manifest: "p/manifest/1"}, w)
	if got.OffloadWatermark != 64 || got.Manifest != "p/manifest/1" || got.Epoch != w.Epoch || got.Revision == 0 {
		t.Fatalf("swap returned %+v; want watermark 64, the manifest, epoch %d and a revision", got, w.Epoch)
	}
	if p := load(t, h); p != got {
		t.Fatalf("load after swap: %+v, want %+v", p, got)
	}
}

func stalePrevConflicts(t *testing.T, h Harness) {
	ctx := testCtx(t)
	w := h.Elect(t)
	p1 := swap(t, h, tier.TierPointer{}, tier.TierPointer{OffloadWatermark: 10, Manifest: "m1"}, w)
	p2 := swap(t, h, p1, tier.TierPointer{OffloadWatermark: 20, Manifest: "m2"}, w)
	for _, stale := range []tier.TierPointer{{}, p1} {
		if _, err := h.Store.CompareAndSwap(ctx, stale, tier.TierPointer{OffloadWatermark: 30, Manifest: "m3"}, w); !errors.Is(err, tier.ErrPointerConflict) {
			t.Fatalf("swap from stale %+v: %v, want ErrPointerConflict", stale, err)
		}
	}
	if p := load(t, h); p != p2 {
		t.Fatalf("pointer %+v after refused swaps, want %+v", p, p2)
	}
}

func watermarkNeverBackwards(t *testing.T, h Harness) {
	ctx := testCtx(t)
	w := h.Elect(t)
	p := swap(t, h, tier.TierPointer{}, tier.TierPointer{OffloadWatermark: 100, Manifest: "m1"}, w)
	if _, err := h.Store.CompareAndSwap(ctx, p, tier.TierPointer{OffloadWatermark: 99, Manifest: "m0"}, w); !errors.Is(err, tier.ErrPointerConflict) {
		t.Fatalf("backwards swap: %v, want ErrPointerConflict", err)
	}
	// Equal is allowed: compaction and retention change the manifest, not the watermark.
	p = swap(t, h, p, tier.TierPointer{OffloadWatermark: 100, Manifest: "m2"}, w)
	if got := load(t, h); got != p || got.OffloadWatermark != 100 {
		t.Fatalf("pointer %+v, want %+v", got, p)
	}
}

func concurrentSwapsOneWins(t *testing.T, h Harness) {
	ctx := testCtx(t)
	w := h.Elect(t)
	for r := range rounds {
		prev := load(t, h)
		var wg sync.WaitGroup
		errs := make([]error, writers)
		got := make([]tier.TierPointer, writers)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := tier.TierPointer{OffloadWatermark: prev.OffloadWatermark + int64(i) + 1, Manifest: fmt.Sprintf("round%d/writer%d", r, i)}
				got[i], errs[i] = h.Store.CompareAndSwap(ctx, prev, next, w)
			}()
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both won", r, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, tier.ErrPointerConflict):
				t.Fatalf("round %d: writer %d: %v, want ErrPointerConflict", r, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", r)
		}
		if p := load(t, h); p != got[winner] {
			t.Fatalf("round %d: stored %+v, winner returned %+v", r, p, got[winner])
		}
	}
}

func deposedWriterFenced(t *testing.T, h Harness) {
	ctx := testCtx(t)
	old := h.Elect(t)
	p := swap(t, h, tier.TierPointer{}, tier.TierPointer{OffloadWatermark: 10, Manifest: "old/1"}, old)
	cur := h.Elect(t)
	if cur.Epoch <= old.Epoch {
		t.Fatalf("new term's epoch %d is not above the deposed one's %d", cur.Epoch, old.Epoch)
	}
	// The deposed writer swaps from the pointer it knows, which is still current: only the
	// fence can refuse it.
	if _, err := h.Store.CompareAndSwap(ctx, p, tier.TierPointer{OffloadWatermark: 20, Manifest: "old/2"}, old); !errors.Is(err, tier.ErrFenced) {
		t.Fatalf("deposed writer's swap: %v, want ErrFenced", err)
	}
	if got := load(t, h); got != p {
		t.Fatalf("pointer %+v after a fenced swap, want %+v", got, p)
	}
	np := swap(t, h, p, tier.TierPointer{OffloadWatermark: 20, Manifest: "new/1"}, cur)
	if np.Epoch != cur.Epoch {
		t.Fatalf("new writer's pointer has epoch %d, want %d", np.Epoch, cur.Epoch)
	}
	if _, err := h.Store.CompareAndSwap(ctx, np, tier.TierPointer{OffloadWatermark: 30, Manifest: "old/3"}, old); !errors.Is(err, tier.ErrFenced) {
		t.Fatalf("deposed writer's swap from the new pointer: %v, want ErrFenced", err)
	}
}
