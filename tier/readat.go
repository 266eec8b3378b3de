package tier

import (
	"context"
	"fmt"
	"sort"

	"github.com/stratamq/strata/broker/message"
)

// ReadAt returns the stored record at commit-log position pos (an offset message id's
// offset) from the tier, or an error wrapping ErrNotInTier when no offloaded segment holds a
// record there. Blocks record queue offsets, not commit-log positions, so it binary-searches
// each queue run of the segment by the position of the blocks' first records: a few ranged
// GETs per queue, fine for an operator's lookup, not for bulk reads.
func (t *Tier) ReadAt(ctx context.Context, pos int64) (rec []byte, err error) {
	err = t.retryStale(ctx, func() error {
		rec, err = t.readAt(ctx, pos)
		return err
	})
	return rec, err
}

func (t *Tier) readAt(ctx context.Context, pos int64) ([]byte, error) {
	cat := t.cat.Load()
	// Candidates: the runs of the segment holding pos still served from it, then the
	// compacted objects whose merged segments cover pos.
	var cands []span
	segs := cat.m.Segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].End > pos })
	if i < len(segs) && segs[i].Base <= pos && !segs[i].ObjectDeleted {
		seg := &segs[i]
		for qi := range seg.Queues {
			if q := &seg.Queues[qi]; !q.Dropped && q.Compacted == "" {
				cands = append(cands, span{seg: seg, q: q, qi: qi})
			}
		}
	}
	for ci := range cat.m.Compacted {
		if c := &cat.m.Compacted[ci]; c.Base <= pos && pos < c.End {
			cands = append(cands, span{seg: c, q: &c.Queues[0], qi: 0})
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("read commit-log position %d: %w", pos, ErrNotInTier)
	}
	for _, sp := range cands {
		run, err := t.queueRun(ctx, sp)
		if err != nil {
			return nil, fmt.Errorf("read commit-log position %d: %w", pos, err)
		}
		obj := runObject(sp, run)
		// The first block whose first record lies after pos; the record, if in this run,
		// is in the block before it.
		var searchErr error
		bi := sort.Search(len(run.Blocks), func(j int) bool {
			if searchErr != nil {
				return true
			}
			first, err := t.blockFirstPos(ctx, blockLoc{obj, run.Blocks[j]})
			if err != nil {
				searchErr = err
				return true
			}
			return first > pos
		})
		if searchErr != nil {
			return nil, fmt.Errorf("read commit-log position %d: %w", pos, searchErr)
		}
		if bi == 0 {
			continue
		}
		loc := blockLoc{obj, run.Blocks[bi-1]}
		raw, err := t.block(ctx, loc)
		if err != nil {
			return nil, fmt.Errorf("read commit-log position %d: %w", pos, err)
		}
		var found []byte
		err = SplitRecords(raw, func(rec []byte, h *message.RecordHeader) (bool, error) {
			if h.CommitLogOffset == pos {
				found = rec
				return false, nil
			}
			return h.CommitLogOffset < pos, nil
		})
		if err != nil {
			return nil, fmt.Errorf("read commit-log position %d: block %d of %s: %w", pos, loc.ref.Offset, obj, err)
		}
		if found != nil && cat.hidden(sp.q.Topic, pos) {
			return nil, fmt.Errorf("read commit-log position %d: topic %s was deleted: %w", pos, sp.q.Topic, ErrNotInTier)
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("read commit-log position %d: no record starts there in the tier: %w", pos, ErrNotInTier)
}

// blockFirstPos is the commit-log position of a block's first record.
func (t *Tier) blockFirstPos(ctx context.Context, loc blockLoc) (int64, error) {
	raw, err := t.block(ctx, loc)
	if err != nil {
		return 0, err
	}
	h, err := message.ParseRecordHeader(raw)
	if err != nil {
		return 0, fmt.Errorf("%w: block %d of %s: %v", ErrCorrupt, loc.ref.Offset, loc.object, err)
	}
	return h.CommitLogOffset, nil
}
