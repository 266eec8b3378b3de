package query

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier"
)

// ColdReader is what export needs from a (read-only) tier.Tier.
type ColdReader interface {
	QueueRange(topic string, queueID int32) (first, last int64, ok bool)
	Read(ctx context.Context, req tier.ReadRequest) (tier.ReadResult, error)
	OffsetForTime(ctx context.Context, topic string, queueID int32, tsMs int64) (int64, error)
	// Refresh reloads the cold index, when the hot tier moved data into it meanwhile.
	Refresh(ctx context.Context) error
}

var _ ColdReader = (*tier.Tier)(nil)

// HotBatch is one read of a queue's hot part.
type HotBatch struct {
	// Messages passed the filter, in queue order.
	Messages []*message.Message
	// NextOffset is the offset to read next, past filtered-out messages too.
	NextOffset int64
	// MinOffset is the oldest offset the broker holds for the queue.
	MinOffset int64
}

// HotReader reads queues through a broker (broker/client in the CLI, the store in tests).
type HotReader interface {
	// Read returns messages f keeps (a nil f keeps all), as a pull with f's subscription.
	Read(ctx context.Context, topic string, queueID int32, offset int64, maxMessages int, f *filter.Filter) (HotBatch, error)
	MinOffset(ctx context.Context, topic string, queueID int32) (int64, error)
	MaxOffset(ctx context.Context, topic string, queueID int32) (int64, error)
	OffsetForTime(ctx context.Context, topic string, queueID int32, tsMs int64) (int64, error)
}

// Queue is one queue to export and the readers of its two tiers; either may be nil (no
// tier configured; no broker reachable), not both.
type Queue struct {
	// Group is the broker group owning the queue (queue ids are per group).
	Group   string
	Topic   string
	QueueID int32
	Cold    ColdReader
	Hot     HotReader
}

// Bound is one end of an export range: a queue offset, a store time, or unset (the oldest
// message for From, the newest at planning time for To). Ends are exclusive for To.
type Bound struct {
	Set    bool
	IsTime bool
	Offset int64
	TimeMs int64
}

// ParseBound reads a --from/--to value: "" (unset), an integer queue offset, or an RFC 3339
// time.
func ParseBound(s string) (Bound, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Bound{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return Bound{}, fmt.Errorf("offset %d is negative", n)
		}
		return Bound{Set: true, Offset: n}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Bound{}, fmt.Errorf("%q is neither a queue offset nor an RFC 3339 time (e.g. 2026-11-26T10:00:00Z)", s)
	}
	return Bound{Set: true, IsTime: true, TimeMs: t.UnixMilli()}, nil
}

// Range is one queue's planned export: queue offsets [From, To).
type Range struct {
	Queue
	From, To int64
}

// Count is the number of offsets in the range (an upper bound on its rows).
func (r Range) Count() int64 { return max(0, r.To-r.From) }

// Plan resolves from and to for every queue: offsets are taken as they are, times become the
// first offset stored at or after them (the cold index first, then the broker), and unset
// ends become the oldest offset held and the end of the queue now, so a running export ends.
func Plan(ctx context.Context, queues []Queue, from, to Bound) ([]Range, error) {
	var out []Range
	for _, q := range queues {
		if q.Cold == nil && q.Hot == nil {
			return nil, fmt.Errorf("queue %s/%s/%d: no reader for either tier", q.Group, q.Topic, q.QueueID)
		}
		f, err := resolve(ctx, q, from, false)
		if err != nil {
			return nil, err
		}
		t, err := resolve(ctx, q, to, true)
		if err != nil {
			return nil, err
		}
		out = append(out, Range{Queue: q, From: f, To: max(f, t)})
	}
	return out, nil
}

func resolve(ctx context.Context, q Queue, b Bound, isTo bool) (int64, error) {
	if b.Set && !b.IsTime {
		return b.Offset, nil
	}
	var coldFirst, coldLast int64
	coldOK := false
	if q.Cold != nil {
		coldFirst, coldLast, coldOK = q.Cold.QueueRange(q.Topic, q.QueueID)
	}
	where := fmt.Sprintf("queue %s/%s/%d", q.Group, q.Topic, q.QueueID)
	if !b.Set {
		if !isTo {
			if coldOK {
				return coldFirst, nil
			}
			off, err := q.Hot.MinOffset(ctx, q.Topic, q.QueueID)
			if err != nil {
				return 0, fmt.Errorf("%s: min offset: %w", where, err)
			}
			return off, nil
		}
		if q.Hot != nil {
			off, err := q.Hot.MaxOffset(ctx, q.Topic, q.QueueID)
			if err != nil {
				return 0, fmt.Errorf("%s: max offset: %w", where, err)
			}
			return off, nil
		}
		if coldOK {
			return coldLast + 1, nil
		}
		return 0, nil
	}
	if coldOK {
		off, err := q.Cold.OffsetForTime(ctx, q.Topic, q.QueueID, b.TimeMs)
		if err == nil {
			return off, nil
		}
		if !errors.Is(err, tier.ErrNotInTier) {
			return 0, fmt.Errorf("%s: %w", where, err)
		}
	}
	if q.Hot != nil {
		off, err := q.Hot.OffsetForTime(ctx, q.Topic, q.QueueID, b.TimeMs)
		if err != nil {
			return 0, fmt.Errorf("%s: offset for time %d: %w", where, b.TimeMs, err)
		}
		return off, nil
	}
	if coldOK {
		return coldLast + 1, nil
	}
	return 0, nil
}

// Stats sums up an export.
type Stats struct {
	Rows int64
	// Bytes is the message data exported: stored record sizes of the rows.
	Bytes int64
	// ColdRows came straight from the bucket, HotRows through a broker.
	ColdRows, HotRows int64
	// Skipped counts offsets in the ranges that neither tier holds any more (retention).
	Skipped int64
	// Incomplete lists queues whose range goes past the cold tier when no broker is
	// reachable: their hot part is not exported.
	Incomplete []Range
}

// Exporter streams planned ranges into a FileWriter.
type Exporter struct {
	// Filter keeps the rows of messages it matches, a TAG or an SQL92 expression; nil keeps
	// all. Cold data is filtered in the tier's block reader, hot data by the broker.
	Filter *filter.Filter
	// Progress, when set, is called after each read with the offsets covered so far (across
	// ranges, filtered-out ones included) and the message bytes written so far.
	Progress func(offsets, bytes int64)
	// ReadMessages and ReadBytes bound one read from either tier (defaults 1024 and 4 MiB).
	ReadMessages int
	ReadBytes    int
}

// Run exports the ranges in order, queue by queue, each in queue-offset order.
func (e *Exporter) Run(ctx context.Context, ranges []Range, w *FileWriter) (Stats, error) {
	var st Stats
	var covered int64
	for _, r := range ranges {
		done, err := e.runRange(ctx, r, w, &st, func(n int64) {
			if e.Progress != nil {
				e.Progress(covered+n, st.Bytes)
			}
		})
		covered += done
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

func (e *Exporter) readLimits() (int, int) {
	n, b := e.ReadMessages, e.ReadBytes
	if n <= 0 {
		n = 1024
	}
	if b <= 0 {
		b = 4 << 20
	}
	return n, b
}

// runRange exports one range and returns the offsets it covered.
func (e *Exporter) runRange(ctx context.Context, r Range, w *FileWriter, st *Stats, progress func(int64)) (int64, error) {
	where := fmt.Sprintf("export %s/%s/%d [%d,%d)", r.Group, r.Topic, r.QueueID, r.From, r.To)
	maxMsgs, maxBytes := e.readLimits()
	next := r.From
	refreshed := false
	for next < r.To {
		if err := ctx.Err(); err != nil {
			return next - r.From, err
		}
		coldFirst, coldLast, coldOK := int64(0), int64(-1), false
		if r.Cold != nil {
			coldFirst, coldLast, coldOK = r.Cold.QueueRange(r.Topic, r.QueueID)
		}
		switch {
		case coldOK && next <= coldLast:
			if next < coldFirst {
				st.Skipped += coldFirst - next
				next = coldFirst
			}
			req := tier.ReadRequest{Topic: r.Topic, QueueID: r.QueueID, Offset: next, MaxCount: maxMsgs, MaxBytes: maxBytes}
			if e.Filter.TagCodes() != nil {
				req.TagFilter = e.Filter.MatchTagCode
			}
			if !e.Filter.MatchesAll() {
				req.Match = e.Filter.MatchRecord
			}
			res, err := r.Cold.Read(ctx, req)
			if err != nil {
				return next - r.From, fmt.Errorf("%s: cold read at %d: %w", where, next, err)
			}
			for _, rec := range res.Records {
				m, _, err := message.Decode(rec)
				if err != nil {
					return next - r.From, fmt.Errorf("%s: cold record: %w", where, err)
				}
				if m.QueueOffset >= r.To {
					break
				}
				if err := w.Add(m); err != nil {
					return next - r.From, err
				}
				st.Rows++
				st.ColdRows++
				st.Bytes += int64(len(rec))
			}
			if res.NextOffset <= next {
				return next - r.From, fmt.Errorf("%s: cold read at %d made no progress", where, next)
			}
			next = res.NextOffset
		case r.Hot == nil:
			// Brokerless: only the cold part can be exported.
			st.Incomplete = append(st.Incomplete, Range{Queue: r.Queue, From: next, To: r.To})
			progress(r.Count())
			return r.Count(), nil
		default:
			b, err := r.Hot.Read(ctx, r.Topic, r.QueueID, next, maxMsgs, e.Filter)
			if err != nil {
				return next - r.From, fmt.Errorf("%s: read through the broker at %d: %w", where, next, err)
			}
			if b.MinOffset > next && len(b.Messages) == 0 && r.Cold != nil && !refreshed {
				// The broker no longer holds next: it moved to the bucket since the
				// cold index was loaded.
				refreshed = true
				if err := r.Cold.Refresh(ctx); err != nil {
					return next - r.From, fmt.Errorf("%s: reload the cold index: %w", where, err)
				}
				continue
			}
			for _, m := range b.Messages {
				if m.QueueOffset < next {
					continue
				}
				if m.QueueOffset >= r.To {
					break
				}
				if err := w.Add(m); err != nil {
					return next - r.From, err
				}
				st.Rows++
				st.HotRows++
				st.Bytes += recordSize(m)
			}
			if b.NextOffset <= next {
				// Nothing more below r.To: the queue ended sooner than planned.
				progress(r.Count())
				return r.Count(), nil
			}
			if len(b.Messages) == 0 && b.MinOffset > next {
				st.Skipped += min(b.MinOffset, r.To) - next
			}
			refreshed = false
			next = b.NextOffset
		}
		progress(min(next, r.To) - r.From)
	}
	return r.Count(), nil
}

// recordSize is a message's stored size, computed without encoding it.
func recordSize(m *message.Message) int64 {
	n, err := m.EncodedSize()
	if err != nil {
		return int64(len(m.Body))
	}
	return int64(n)
}
