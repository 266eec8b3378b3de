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
func (t *Tier) ReadAt(ctx context.Context, pos int64) ([]byte, error) {
	cat := t.cat.Load()
	segs := cat.m.Segments
	i := sort.Search(len(segs), func(i int) bool { return segs[i].End > pos })
	if i == len(segs) || segs[i].Base > pos {
		return nil, fmt.Errorf("read commit-log position %d: %w", pos, ErrNotInTier)
	}
	seg := &segs[i]
	idx, err := t.segmentIndex(ctx, seg)
	if err != nil {
		return nil, fmt.Errorf("read commit-log position %d: %w", pos, err)
	}
	if len(idx.Queues) != len(seg.Queues) {
		return nil, fmt.Errorf("read commit-log position %d: %w: %s index has %d queues, manifest %d",
			pos, ErrCorrupt, seg.Object, len(idx.Queues), len(seg.Queues))
	}
	for qi := range idx.Queues {
		if seg.Queues[qi].Dropped {
			continue
		}
		run := &idx.Queues[qi]
		obj := runObject(span{seg: seg, q: &seg.Queues[qi], qi: qi}, run)
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
		if found != nil && cat.hidden(seg.Queues[qi].Topic, pos) {
			return nil, fmt.Errorf("read commit-log position %d: topic %s was deleted: %w", pos, seg.Queues[qi].Topic, ErrNotInTier)
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("read commit-log position %d: no record starts there in %s: %w", pos, seg.Object, ErrNotInTier)
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
