package retro

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/tier"
)

// Where says which tier holds an offset.
type Where int

const (
	// Nowhere: the offset is not held by either tier (below the minimum offset, above the
	// maximum offset, or the queue is unknown).
	Nowhere Where = iota
	// Cold: the offset is only in the cold tier.
	Cold
	// Hot: the offset is in the hot tier, or is the maximum offset (the next message to be
	// stored, which lands in the hot tier).
	Hot
)

// String returns "cold", "hot" or "—".
func (w Where) String() string {
	switch w {
	case Cold:
		return "cold"
	case Hot:
		return "hot"
	}
	return "—"
}

// Log is the queues of one broker group as one log over its hot store and, when set, its
// cold tier. It holds no state of its own: every answer reads the store's consume queues and
// the tier's catalog as they are now. Safe for concurrent use.
type Log struct {
	store *store.Store
	tier  *tier.Tier
}

// New returns the log over st and t; t may be nil (no bucket configured: hot tier only).
func New(st *store.Store, t *tier.Tier) *Log {
	return &Log{store: st, tier: t}
}

// Bounds are a queue's offsets in each tier. HotMin == HotMax means the hot tier holds no
// message of the queue (HotKnown reports whether it has ever seen one since start).
type Bounds struct {
	Min, Max       int64 // the log's: oldest held in either tier, one past the newest
	HotMin, HotMax int64
	HotKnown       bool
	ColdFirst      int64 // valid when InCold
	ColdLast       int64 // inclusive
	InCold         bool
}

// Bounds returns the queue's offsets in both tiers.
func (l *Log) Bounds(topic string, queueID int32) Bounds {
	var b Bounds
	b.HotMax = l.store.MaxOffset(topic, queueID)
	b.HotMin = l.store.MinOffset(topic, queueID)
	b.HotKnown = b.HotMax > 0
	if l.tier != nil {
		b.ColdFirst, b.ColdLast, b.InCold = l.tier.QueueRange(topic, queueID)
	}
	b.Min, b.Max = b.HotMin, b.HotMax
	if b.InCold {
		if !b.HotKnown || b.ColdFirst < b.HotMin {
			b.Min = b.ColdFirst
		}
		if b.ColdLast+1 > b.Max {
			b.Max = b.ColdLast + 1
		}
		if !b.HotKnown {
			// Nothing local (e.g. a restart after local retention removed every
			// segment): the hot tier resumes where the cold tier ends.
			b.HotMin, b.HotMax = b.Max, b.Max
		}
	}
	return b
}

// MinOffset is the oldest offset of the queue held in either tier (0 for an unknown queue).
func (l *Log) MinOffset(topic string, queueID int32) int64 { return l.Bounds(topic, queueID).Min }

// MaxOffset is one past the queue's newest offset in either tier (0 for an unknown queue).
func (l *Log) MaxOffset(topic string, queueID int32) int64 { return l.Bounds(topic, queueID).Max }

// Locate says which tier holds offset. The hot tier is preferred where the tiers overlap
// (segments offloaded but not yet past local retention), and the maximum offset counts as
// hot.
func (l *Log) Locate(topic string, queueID int32, offset int64) Where {
	return l.Bounds(topic, queueID).Locate(offset)
}

// Locate says which tier holds offset, by these bounds.
func (b Bounds) Locate(offset int64) Where {
	switch {
	case b.HotKnown && offset >= b.HotMin && offset <= b.HotMax:
		return Hot
	case b.InCold && offset >= b.ColdFirst && offset <= b.ColdLast:
		return Cold
	case b.InCold && !b.HotKnown && offset == b.Max:
		return Hot
	}
	return Nowhere
}

// Clamp brings offset into [MinOffset, MaxOffset], the range a consumer can be reset to.
func (l *Log) Clamp(topic string, queueID int32, offset int64) int64 {
	b := l.Bounds(topic, queueID)
	return min(max(offset, b.Min), b.Max)
}

// EarliestStoreTime is the store time of the message at the minimum offset, -1 if the queue
// holds none.
func (l *Log) EarliestStoreTime(ctx context.Context, topic string, queueID int32) (int64, error) {
	b := l.Bounds(topic, queueID)
	if b.Min >= b.Max {
		return -1, nil
	}
	if b.Locate(b.Min) != Cold {
		return l.store.EarliestStoreTime(topic, queueID)
	}
	res, err := l.tier.Read(ctx, tier.ReadRequest{Topic: topic, QueueID: queueID, Offset: b.Min, MaxCount: 1})
	if err != nil {
		return 0, fmt.Errorf("earliest store time of %s/%d: %w", topic, queueID, err)
	}
	if len(res.Records) == 0 {
		return -1, nil
	}
	h, err := message.ParseRecordHeader(res.Records[0])
	if err != nil {
		return 0, fmt.Errorf("earliest store time of %s/%d: cold record at %d: %w", topic, queueID, b.Min, err)
	}
	return h.StoreTimestamp, nil
}

// OffsetForTime returns the first offset whose store time is at or after tsMs, across both
// tiers (PROTOCOL.md §8, LOWER): the maximum offset if every message is older, the minimum
// offset if every message is newer, 0 for an unknown queue. Store times are assumed not to
// decrease along a queue, as the single commit-log writer assigns them.
func (l *Log) OffsetForTime(ctx context.Context, topic string, queueID int32, tsMs int64) (int64, error) {
	b := l.Bounds(topic, queueID)
	if b.InCold {
		off, err := l.tier.OffsetForTime(ctx, topic, queueID, tsMs)
		switch {
		case err == nil:
			return off, nil
		case !errors.Is(err, tier.ErrNotInTier):
			return 0, fmt.Errorf("retro: %w", err)
		}
		// Every cold message is older: the answer is in the hot tier, or is the max.
		if !b.HotKnown || b.HotMin >= b.HotMax {
			return b.Max, nil
		}
	}
	off, err := l.store.OffsetForTime(topic, queueID, tsMs)
	if err != nil {
		return 0, fmt.Errorf("retro: offset for time %d of %s/%d: %w", tsMs, topic, queueID, err)
	}
	return off, nil
}
