package tier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/stratamq/strata/tier/objstore"
)

// Tombstone records that a topic was deleted: its records at commit-log positions below
// Position belong to a deleted incarnation and are never served from the tier again
// (QueueRange, Read, OffsetForTime, Lookup and ReadAt all skip them). A recreated topic's
// queues start again at offset 0 (as in RocketMQ); offload drops the deleted records, so no
// queue run mixes the two incarnations. Next, optional, holds per queue the first queue offset
// of the next incarnation; builds that continued offsets across incarnations wrote it, and a
// run straddling the tombstone is clamped to it.
type Tombstone struct {
	Topic    string           `json:"topic"`
	Position int64            `json:"position"`
	Next     []TombstoneQueue `json:"next,omitempty"`
}

// TombstoneQueue is one queue's next offset in a Tombstone.
type TombstoneQueue struct {
	QueueID int32 `json:"queue"`
	Next    int64 `json:"next"`
}

// NextOffset is the first queue offset of the next incarnation of queue id (0 if unknown).
func (ts Tombstone) NextOffset(id int32) int64 {
	for _, q := range ts.Next {
		if q.QueueID == id {
			return q.Next
		}
	}
	return 0
}

// tombstoneOf returns the tombstone of topic in m.
func (m *Manifest) tombstoneOf(topic string) (Tombstone, bool) {
	for _, ts := range m.Tombstones {
		if ts.Topic == topic {
			return ts, true
		}
	}
	return Tombstone{}, false
}

// withTombstone returns m's tombstones with ts replacing an older one of the same topic
// (a later deletion hides everything an earlier one hid).
func withTombstone(list []Tombstone, ts Tombstone) []Tombstone {
	out := make([]Tombstone, 0, len(list)+1)
	for _, old := range list {
		if old.Topic != ts.Topic {
			out = append(out, old)
		} else if old.Position > ts.Position {
			ts.Position = old.Position
		}
	}
	return append(out, ts)
}

// Tombstone returns the tombstone of topic, if the topic was ever deleted.
func (t *Tier) Tombstone(topic string) (Tombstone, bool) { return t.cat.Load().m.tombstoneOf(topic) }

// Tombstones returns every tombstone; callers must not modify it.
func (t *Tier) Tombstones() []Tombstone { return t.cat.Load().m.Tombstones }

// AddTombstone durably records a topic deletion: first as an object of its own (kept by a
// rebuilt manifest), then in a new manifest version. From its return on, no reader of this
// tier, nor one opened later by any broker or tool, serves a record of ts.Topic below
// ts.Position. Only the group's elected writer records tombstones: a tier that does not lead
// gets ErrFenced.
func (t *Tier) AddTombstone(ctx context.Context, ts Tombstone) error {
	tm, err := t.writer("tombstone " + ts.Topic)
	if err != nil {
		return err
	}
	ctx, cancel := withTerm(ctx, tm)
	defer cancel()
	if ts.Topic == "" || ts.Position < 0 {
		return fmt.Errorf("tombstone on %s: topic %q at position %d: need a topic and a non-negative position", t.cfg.Prefix, ts.Topic, ts.Position)
	}
	data, err := json.Marshal(ts)
	if err != nil {
		return fmt.Errorf("tombstone %s: %w", ts.Topic, err)
	}
	name := TombstoneObjectName(t.cfg.Prefix, ts, tm.epoch())
	if err := t.bucket.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("tombstone %s on %s: write %s: %w", ts.Topic, t.cfg.Prefix, name, err)
	}
	t.commitMu.Lock()
	defer t.commitMu.Unlock()
	for attempt := 0; ; attempt++ {
		cur := t.cat.Load()
		next := *cur.m
		next.Seq++
		next.Tombstones = withTombstone(cur.m.Tombstones, ts)
		err := t.publish(ctx, tm, cur, &next)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrPointerConflict) || attempt >= 3 || ctx.Err() != nil {
			return fmt.Errorf("tombstone %s on %s: %w", ts.Topic, t.cfg.Prefix, err)
		}
	}
}

// loadTombstoneObjects reads the tombstone objects under prefix, for RebuildManifest.
func loadTombstoneObjects(ctx context.Context, b objstore.Bucket, prefix string) ([]Tombstone, error) {
	var out []Tombstone
	err := b.List(ctx, prefix+"/tombstones/", func(name string) error {
		if !strings.HasSuffix(name, ".json") {
			return nil
		}
		data, err := readAll(ctx, b, name, 1<<20)
		if err != nil {
			return err
		}
		var ts Tombstone
		if err := json.Unmarshal(data, &ts); err != nil || ts.Topic == "" {
			return fmt.Errorf("%w: tombstone %s: %v", ErrCorrupt, name, err)
		}
		out = withTombstone(out, ts)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tombstones of %s: %w", prefix, err)
	}
	return out, nil
}

// hidden reports whether a record of topic at commit-log position pos belongs to a deleted
// incarnation.
func (c *catalog) hidden(topic string, pos int64) bool {
	ts, ok := c.m.tombstoneOf(topic)
	return ok && pos < ts.Position
}

// visibleSpan applies the manifest's tombstones to one queue run of a segment: a run of a
// segment ending at or below its topic's tombstone is hidden; a run of a segment straddling
// the tombstone starts no earlier than the next incarnation's first offset (offload drops
// deleted records, so this only guards objects written while the deletion was in flight).
func (m *Manifest) visibleSpan(s *ManifestSegment, q *ManifestQueue) (*ManifestQueue, bool) {
	ts, ok := m.tombstoneOf(q.Topic)
	if !ok || s.Base >= ts.Position {
		return q, true
	}
	if s.End <= ts.Position {
		return nil, false
	}
	first := ts.NextOffset(q.QueueID)
	if q.FirstOffset >= first {
		return q, true
	}
	if q.LastOffset < first {
		return nil, false
	}
	c := *q
	c.FirstOffset = first
	return &c, true
}
