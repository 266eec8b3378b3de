package tier

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratamq/strata/meta"
)

// MetaPointers keeps a broker group's TierPointer in etcd through meta. Its CompareAndSwap
// reads the pointer, compares it with prev and writes next with meta's forward-only
// compare-and-swap: the watermark can never move backwards, and a pointer moved by someone
// else since Load is reported as ErrPointerConflict. Exactly one broker (the group's master)
// offloads a group, so two writers racing with the same watermark do not arise.
type MetaPointers struct {
	Client *meta.Client
	Group  string
}

var _ PointerStore = MetaPointers{}

// Load implements PointerStore.
func (p MetaPointers) Load(ctx context.Context) (TierPointer, error) {
	tp, err := p.Client.GetTierPointer(ctx, p.Group)
	if errors.Is(err, meta.ErrNotFound) {
		return TierPointer{}, nil
	}
	if err != nil {
		return TierPointer{}, err
	}
	return TierPointer{OffloadWatermark: tp.OffloadWatermark, Manifest: tp.ManifestKey}, nil
}

// CompareAndSwap implements PointerStore.
func (p MetaPointers) CompareAndSwap(ctx context.Context, prev, next TierPointer) error {
	cur, err := p.Load(ctx)
	if err != nil {
		return err
	}
	if cur != prev {
		return fmt.Errorf("tier pointer of %s is %+v, expected %+v: %w", p.Group, cur, prev, ErrPointerConflict)
	}
	err = p.Client.PutTierPointer(ctx, p.Group, meta.TierPointer{OffloadWatermark: next.OffloadWatermark, ManifestKey: next.Manifest})
	if errors.Is(err, meta.ErrTierPointerBackwards) {
		return fmt.Errorf("%w: %w", ErrPointerConflict, err)
	}
	return err
}
