package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier"
)

// Deleting a topic's data, consistently across the hot and the cold tier:
//
//   - The hot store writes its local tombstone (broker/store FORMAT.md) and drops the
//     topic's queues.
//   - The cold tier records a tier.Tombstone {topic, commit-log position at deletion, next
//     queue offsets} in its manifest (and an object of its own) in the bucket, so every
//     reader — this broker after a restart or over a wiped data directory, other brokers
//     of the group, and the brokerless retro/query tools — skips the deleted records.
//   - Offload drops records of a deleted topic below its tombstone (and every record of a
//     topic while its deletion is in flight), so no segment object written afterwards
//     mixes the two incarnations.
//   - A recreated topic CONTINUES each queue's offsets after the deleted ones instead of
//     restarting at 0: queue offsets never repeat within a queue, so a consumer group's
//     stale committed offset (at most the old max offset) never points into the new
//     incarnation's middle and never beyond its max; the group resumes at the new
//     incarnation's first message. The group offsets in etcd therefore need no clearing.

// pendingDeletes tracks topics whose deletion is in flight, for offload.
type pendingDeletes struct {
	mu sync.Mutex
	m  map[string]int
}

func (p *pendingDeletes) add(topic string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]int{}
	}
	p.m[topic]++
}

func (p *pendingDeletes) done(topic string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[topic]--; p.m[topic] <= 0 {
		delete(p.m, topic)
	}
}

func (p *pendingDeletes) has(topic string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[topic] > 0
}

func (p *pendingDeletes) any() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m) > 0
}

// deleteTopicData drops topic's data on this broker group in both tiers and makes its
// queues continue after the deleted offsets.
func (b *Broker) deleteTopicData(ctx context.Context, topic string) error {
	next := map[int32]int64{}
	for _, q := range b.store.Queues() {
		if q.Topic == topic {
			next[q.QueueID] = max(next[q.QueueID], b.store.MaxOffset(topic, q.QueueID))
		}
	}
	if b.tier != nil {
		if ts, ok := b.tier.Tombstone(topic); ok {
			for _, q := range ts.Next {
				next[q.QueueID] = max(next[q.QueueID], q.Next)
			}
		}
		for _, s := range b.tier.Manifest().Segments {
			for _, q := range s.Queues {
				if q.Topic == topic {
					next[q.QueueID] = max(next[q.QueueID], q.LastOffset+1)
				}
			}
		}
	}
	b.deleting.add(topic)
	defer b.deleting.done(topic)
	if err := b.store.DeleteTopic(ctx, topic); err != nil {
		return err
	}
	if b.tier != nil {
		ts := tier.Tombstone{Topic: topic, Position: b.store.MaxCommitLogOffset()}
		for q, n := range next {
			ts.Next = append(ts.Next, tier.TombstoneQueue{QueueID: q, Next: n})
		}
		sort.Slice(ts.Next, func(i, j int) bool { return ts.Next[i].QueueID < ts.Next[j].QueueID })
		if err := b.tier.AddTombstone(ctx, ts); errors.Is(err, tier.ErrFenced) {
			return fmt.Errorf("the local data is deleted, but this broker is not the elected master of group %s and only the master records the deletion in the cold tier: %w; delete the topic on the master", b.cfg.BrokerName, err)
		} else if err != nil {
			return fmt.Errorf("the local data is deleted but the cold tier still holds it: %w; delete the topic again once the bucket is reachable", err)
		}
	}
	for q, n := range next {
		if err := b.store.EnsureQueueOffset(ctx, topic, q, n); err != nil {
			// Only a send racing the deletion gets here; the queue then restarts lower.
			b.log.Warn("deleted topic: queue offsets do not continue", "topic", topic, "queue", q, "next", n, "err", err)
		}
	}
	return nil
}

// offloadHides reports whether offload must drop the record of topic at commit-log
// position pos: its topic was deleted after it, or is being deleted now.
func (b *Broker) offloadHides(topic string, pos int64) bool {
	if b.deleting.has(topic) {
		return true
	}
	if b.tier == nil {
		return false
	}
	ts, ok := b.tier.Tombstone(topic)
	return ok && pos < ts.Position
}

// offloadFilters reports whether a segment starting at base may hold records offload drops.
func (b *Broker) offloadFilters(base int64) bool {
	if b.deleting.any() {
		return true
	}
	for _, ts := range b.tier.Tombstones() {
		if base < ts.Position {
			return true
		}
	}
	return false
}

// keepForOffload is tierSegment's record filter.
func (b *Broker) keepForOffload(pos int64, rec []byte) (bool, error) {
	h, err := message.ParseRecordHeader(rec)
	if err != nil {
		return false, fmt.Errorf("offload: record at %d: %w", pos, err)
	}
	return !b.offloadHides(h.Topic, pos), nil
}
