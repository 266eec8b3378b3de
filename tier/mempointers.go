package tier

import (
	"context"
	"fmt"
	"sync"

	"github.com/stratamq/strata/meta"
)

// MemoryPointers is a PointerStore held in memory together with a stand-in for the group's
// election, for unit tests of the tier and of packages built on it. It is not shared between
// processes; brokers use MetaPointers. The zero value is ready: no pointer, no writer.
type MemoryPointers struct {
	mu    sync.Mutex
	ptr   TierPointer
	rev   int64
	epoch int64         // the current writer's epoch, 0 when none leads
	lost  chan struct{} // closed when the current writer is deposed
	terms int64
}

var _ PointerStore = (*MemoryPointers)(nil)

// NewMemoryPointers returns an empty in-memory pointer store.
func NewMemoryPointers() *MemoryPointers { return &MemoryPointers{} }

// Elect deposes the current writer (its Leadership.Lost closes) and returns the term of a
// new one, with a higher epoch.
func (p *MemoryPointers) Elect() meta.Leadership {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deposeLocked()
	p.terms++
	p.epoch = p.terms
	p.lost = make(chan struct{})
	return meta.Leadership{Group: "memory", Key: fmt.Sprintf("memory/election/%d", p.epoch), Epoch: p.epoch, Lost: p.lost}
}

// Depose ends the current writer's term without electing another.
func (p *MemoryPointers) Depose() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.deposeLocked()
}

func (p *MemoryPointers) deposeLocked() {
	if p.lost != nil {
		close(p.lost)
		p.lost = nil
	}
	p.epoch = 0
}

// Load implements PointerStore.
func (p *MemoryPointers) Load(context.Context) (TierPointer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ptr, nil
}

// CompareAndSwap implements PointerStore.
func (p *MemoryPointers) CompareAndSwap(_ context.Context, prev, next TierPointer, w meta.Leadership) (TierPointer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.Epoch <= 0 || w.Epoch != p.epoch {
		return TierPointer{}, fmt.Errorf("memory tier pointer: the term of epoch %d has ended (current %d): %w", w.Epoch, p.epoch, ErrFenced)
	}
	if prev.Revision != p.rev {
		return TierPointer{}, fmt.Errorf("memory tier pointer is at revision %d (%+v), expected %d: %w", p.rev, p.ptr, prev.Revision, ErrPointerConflict)
	}
	if next.OffloadWatermark < p.ptr.OffloadWatermark {
		return TierPointer{}, fmt.Errorf("memory tier pointer: watermark %d < stored %d: %w", next.OffloadWatermark, p.ptr.OffloadWatermark, ErrPointerConflict)
	}
	p.rev++
	next.Epoch, next.Revision = w.Epoch, p.rev
	p.ptr = next
	return next, nil
}
