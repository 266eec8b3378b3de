package tier

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratamq/strata/meta"
)

// TierPointer is what etcd holds per broker group: tiny, moved with compare-and-swap only
// after the objects it points at are durable.
type TierPointer struct {
	// OffloadWatermark is the commit-log offset below which every byte is in the bucket.
	OffloadWatermark int64
	// Manifest is the object name of the current manifest, or "" before the first offload.
	Manifest string
	// Epoch is the election epoch of the writer that stored the pointer (0 for a pointer
	// written before writes were fenced, or none at all).
	Epoch int64
	// Revision identifies the stored version for CompareAndSwap (etcd's mod revision); 0
	// means no pointer is stored.
	Revision int64
}

// ErrPointerConflict is returned by PointerStore.CompareAndSwap when the stored pointer is
// not the expected one (it moved since it was loaded), or when the swap would move the
// watermark backwards.
var ErrPointerConflict = errors.New("tier pointer changed concurrently")

// ErrFenced is returned by every write of a tier that is not, or no longer, its broker
// group's elected writer: a pointer update fenced by a term that has ended, and offload,
// compaction, retention or a tombstone asked of a tier that does not lead (Tier.Lead).
var ErrFenced = errors.New("not the broker group's elected tier writer (fenced)")

// PointerStore keeps a broker group's TierPointer (in etcd, via meta: MetaPointers).
// Conformance: package tier/pointertest.
type PointerStore interface {
	// Load returns the current pointer with its Revision, or the zero pointer if none was
	// ever stored.
	Load(ctx context.Context) (TierPointer, error)
	// CompareAndSwap stores next, stamped with the writer's epoch (w.Epoch), in one atomic
	// step that succeeds only if the stored pointer is still prev (same Revision; 0 meaning
	// "none stored") and w's term still holds. It returns the stored pointer with its new
	// Revision. A moved pointer or a watermark below prev's fails with an error wrapping
	// ErrPointerConflict; an ended term fails with one wrapping ErrFenced.
	CompareAndSwap(ctx context.Context, prev, next TierPointer, w meta.Leadership) (TierPointer, error)
}

// MetaPointers keeps a broker group's TierPointer in etcd through meta: CompareAndSwap is one
// etcd transaction comparing the pointer key's mod revision and the writer's election key
// (meta.Client.CompareAndSwapTierPointer), so a manifest published by anyone else since Load,
// and any write by a deposed master, is refused.
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
	return fromMeta(tp), nil
}

// CompareAndSwap implements PointerStore.
func (p MetaPointers) CompareAndSwap(ctx context.Context, prev, next TierPointer, w meta.Leadership) (TierPointer, error) {
	got, err := p.Client.CompareAndSwapTierPointer(ctx, p.Group, toMeta(prev), toMeta(next), w)
	switch {
	case errors.Is(err, meta.ErrNotLeader):
		return TierPointer{}, fmt.Errorf("%w: %w", ErrFenced, err)
	case errors.Is(err, meta.ErrTierPointerConflict), errors.Is(err, meta.ErrTierPointerBackwards):
		return TierPointer{}, fmt.Errorf("%w: %w", ErrPointerConflict, err)
	case err != nil:
		return TierPointer{}, err
	}
	return fromMeta(got), nil
}

func fromMeta(tp meta.TierPointer) TierPointer {
	return TierPointer{OffloadWatermark: tp.OffloadWatermark, Manifest: tp.ManifestKey, Epoch: tp.Epoch, Revision: tp.Revision}
}

func toMeta(tp TierPointer) meta.TierPointer {
	return meta.TierPointer{OffloadWatermark: tp.OffloadWatermark, ManifestKey: tp.Manifest, Epoch: tp.Epoch, Revision: tp.Revision}
}
