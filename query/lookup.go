package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/tier"
)

// ErrNotFound reports that neither tier holds the asked message.
var ErrNotFound = errors.New("message not found in either tier")

// DefaultMaxResults bounds a key lookup when the request asks for no limit (RocketMQ's
// default query limit is 32; Strata answers a little more).
const DefaultMaxResults = 64

// Finder looks messages up in a broker group's two tiers: the hot store and, when set, the
// cold tier.
type Finder struct {
	Store *store.Store
	// Tier is nil when the broker has no cold tier.
	Tier *tier.Tier
}

// ByCommitLogOffset returns the stored record at a commit-log position (the offset of an
// offset message id): from local disk when it is still there, else from the bucket.
func (f *Finder) ByCommitLogOffset(ctx context.Context, pos int64) ([]byte, error) {
	if pos < 0 {
		return nil, fmt.Errorf("commit-log offset %d is negative: %w", pos, ErrNotFound)
	}
	var hotErr error
	if pos >= f.Store.MinCommitLogOffset() {
		rec, err := f.Store.ReadAt(pos, 0)
		if err == nil {
			// A follower's records past its read limit may yet be truncated by a failover;
			// its queue reads and key lookups hide them, and so does this.
			if limit := f.Store.ReadLimit(); store.NextRecordPos(pos, int32(len(rec))) > limit {
				return nil, fmt.Errorf("%w: the record at commit-log offset %d is not yet confirmed by the group's in-sync set (this member serves up to %d)", ErrNotFound, pos, limit)
			}
			return rec, nil
		}
		hotErr = err
		if !errors.Is(err, store.ErrOffsetNotFound) {
			return nil, err
		}
	}
	if f.Tier == nil {
		if hotErr == nil {
			hotErr = fmt.Errorf("commit-log offset %d is below the oldest local record %d and there is no cold tier", pos, f.Store.MinCommitLogOffset())
		}
		return nil, fmt.Errorf("%w: %w", ErrNotFound, hotErr)
	}
	rec, err := f.Tier.ReadAt(ctx, pos)
	if errors.Is(err, tier.ErrNotInTier) {
		return nil, fmt.Errorf("%w: commit-log offset %d: %w", ErrNotFound, pos, err)
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), rec...), nil
}

// KeyQuery asks for a topic's messages by key, stored within a time window.
type KeyQuery struct {
	Topic string
	Key   string
	// Uniq restricts the match to the unique key (UNIQ_KEY, the client's message id);
	// otherwise a message matches when its KEYS hold Key or its UNIQ_KEY is Key, as in
	// RocketMQ's index.
	Uniq bool
	// BeginMs and EndMs bound the store time, inclusive; EndMs 0 means no upper bound.
	BeginMs, EndMs int64
	// MaxResults bounds the answer (0: DefaultMaxResults).
	MaxResults int
}

// ByKey returns the stored records matching q from both tiers, without duplicates (a
// segment can be on disk and in the bucket at once), oldest first; when more match than
// q.MaxResults, the newest are kept.
func (f *Finder) ByKey(ctx context.Context, q KeyQuery) ([][]byte, error) {
	if q.MaxResults <= 0 {
		q.MaxResults = DefaultMaxResults
	}
	end := q.EndMs
	if end <= 0 {
		end = math.MaxInt64
	}
	type hit struct {
		pos int64
		rec []byte
	}
	seen := map[int64]bool{}
	var hits []hit
	hot, err := f.Store.LookupKey(q.Topic, q.Key, q.BeginMs, end, q.MaxResults)
	if err != nil {
		return nil, fmt.Errorf("look up key %q in %s: %w", q.Key, q.Topic, err)
	}
	for _, h := range hot {
		if q.Uniq {
			rh, err := message.ParseRecordHeader(h.Record)
			if err != nil || rh.UniqKey != q.Key {
				continue
			}
		}
		seen[h.CommitLogOffset] = true
		hits = append(hits, hit{h.CommitLogOffset, h.Record})
	}
	if f.Tier != nil {
		kinds := []bool{true}
		if !q.Uniq {
			kinds = []bool{false, true}
		}
		for _, uniq := range kinds {
			recs, err := f.Tier.Lookup(ctx, tier.KeyQuery{Topic: q.Topic, Key: q.Key, Uniq: uniq,
				BeginMs: q.BeginMs, EndMs: q.EndMs, MaxResults: q.MaxResults})
			if err != nil {
				return nil, fmt.Errorf("look up key %q in the cold tier: %w", q.Key, err)
			}
			for _, rec := range recs {
				h, err := message.ParseRecordHeader(rec)
				if err != nil || seen[h.CommitLogOffset] {
					continue
				}
				seen[h.CommitLogOffset] = true
				hits = append(hits, hit{h.CommitLogOffset, append([]byte(nil), rec...)})
			}
		}
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].pos < hits[j].pos })
	if len(hits) > q.MaxResults {
		hits = hits[len(hits)-q.MaxResults:]
	}
	out := make([][]byte, len(hits))
	for i, h := range hits {
		out[i] = h.rec
	}
	return out, nil
}
