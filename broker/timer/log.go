package timer

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/tier"
)

// Log is the broker's commit log as scheduled delivery uses it. StoreLog implements it over
// the hot store and the cold tier.
type Log interface {
	// Append stores encoded records as one unit and returns what the store assigned, once
	// the flush policy is met.
	Append(ctx context.Context, recs ...[]byte) ([]store.AppendResult, error)
	// ReadAt returns the stored record at a commit-log position (size 0: unknown), from
	// local disk or else from the cold tier.
	ReadAt(ctx context.Context, pos int64, size int32) ([]byte, error)
	// ReadQueue returns up to max stored records of (topic, queueID) from offset on, from
	// local disk or else from the cold tier, and the offset to read next. No records and
	// next == offset means the queue has nothing at offset yet.
	ReadQueue(ctx context.Context, topic string, queueID int32, offset int64, max int) (recs [][]byte, next int64, err error)
	// WaitForAppend blocks until the queue's max offset passes offset or ctx ends.
	WaitForAppend(ctx context.Context, topic string, queueID int32, offset int64) (int64, error)
	// MaxOffset is one past the queue's last offset.
	MaxOffset(topic string, queueID int32) int64
}

// StoreLog is the Log of a broker: its hot store and, when it has one, its cold tier.
type StoreLog struct {
	Store *store.Store
	Tier  *tier.Tier // nil without a cold tier
}

// Append implements Log.
func (l StoreLog) Append(ctx context.Context, recs ...[]byte) ([]store.AppendResult, error) {
	return l.Store.Append(ctx, recs...)
}

// ReadAt implements Log: a position below the local min offset (its segment was offloaded
// and deleted) is read from the bucket.
func (l StoreLog) ReadAt(ctx context.Context, pos int64, size int32) ([]byte, error) {
	if pos >= l.Store.MinCommitLogOffset() {
		rec, err := l.Store.ReadAt(pos, size)
		if err == nil || !errors.Is(err, store.ErrOffsetNotFound) || l.Tier == nil {
			return rec, err
		}
	}
	if l.Tier == nil {
		return nil, fmt.Errorf("read record at %d: below the oldest local record %d and no cold tier: %w",
			pos, l.Store.MinCommitLogOffset(), store.ErrOffsetNotFound)
	}
	rec, err := l.Tier.ReadAt(ctx, pos)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), rec...), nil
}

// ReadQueue implements Log.
func (l StoreLog) ReadQueue(ctx context.Context, topic string, queueID int32, offset int64, maxRecs int) ([][]byte, int64, error) {
	res, err := l.Store.Read(ctx, store.ReadRequest{Topic: topic, QueueID: queueID, Offset: offset, MaxMessages: maxRecs, MaxBytes: 4 << 20})
	if err != nil {
		return nil, offset, err
	}
	switch res.Status {
	case store.ReadFound:
		recs := make([][]byte, len(res.Entries))
		at := 0
		for i, e := range res.Entries {
			recs[i] = res.Records[at : at+int(e.Size)]
			at += int(e.Size)
		}
		return recs, res.NextOffset, nil
	case store.ReadOffsetTooSmall, store.ReadNoMessageInQueue:
		if l.Tier != nil {
			if first, last, ok := l.Tier.QueueRange(topic, queueID); ok && offset <= last {
				cr, err := l.Tier.Read(ctx, tier.ReadRequest{Topic: topic, QueueID: queueID, Offset: max(offset, first), MaxCount: maxRecs})
				if err != nil && !errors.Is(err, tier.ErrNotInTier) {
					return nil, offset, fmt.Errorf("cold read of %s/%d at %d: %w", topic, queueID, offset, err)
				}
				if len(cr.Records) > 0 {
					return cr.Records, cr.NextOffset, nil
				}
			}
		}
		if res.Status == store.ReadOffsetTooSmall {
			return nil, res.NextOffset, nil // gone from both tiers: skip to what is left
		}
		return nil, offset, nil
	case store.ReadOffsetOverflow:
		return nil, offset, fmt.Errorf("read %s/%d at %d: past the queue's end %d", topic, queueID, offset, res.MaxOffset)
	}
	return nil, res.NextOffset, nil
}

// WaitForAppend implements Log.
func (l StoreLog) WaitForAppend(ctx context.Context, topic string, queueID int32, offset int64) (int64, error) {
	return l.Store.WaitForAppend(ctx, topic, queueID, offset)
}

// MaxOffset implements Log.
func (l StoreLog) MaxOffset(topic string, queueID int32) int64 {
	return l.Store.MaxOffset(topic, queueID)
}
