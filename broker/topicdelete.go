package broker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/timer"
	"github.com/stratamq/strata/broker/txn"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/tier"
)

// Deleting a topic, consistently across the hot and the cold tier and across broker groups:
//
//   - A topic's incarnation is the etcd create revision of its config (meta.TopicConfig).
//     Deleting it and creating it again makes a new incarnation whose queues start at offset
//     0, as in RocketMQ.
//   - Every broker drops its group's data of a deleted incarnation (deleteTopicData): when it
//     sees the topic vanish from the view, when a send finds the view's incarnation newer than
//     the one its local data belongs to (a delete and re-create it slept through), and at
//     start for topics deleted while it was down. DELETE_TOPIC_IN_BROKER does it at once on
//     the broker that receives it; the others follow their views.
//   - Dropping the data: the hot store writes its local tombstone (broker/store FORMAT.md)
//     and drops the queues; the cold tier records a tier.Tombstone {topic, commit-log
//     position at deletion} in its manifest (and an object of its own), so every reader —
//     this broker after a restart or over a wiped data directory, other members of the group,
//     and the brokerless retro/query tools — skips the deleted records; offload drops records
//     of a deleted topic below its tombstone (and every record of a topic while its deletion
//     is in flight), so no segment object written afterwards mixes the two incarnations; and
//     the group's consumer offsets of the topic are deleted from etcd, so a group reading the
//     new incarnation starts at its first message instead of an offset past its end.
//   - The incarnation each local topic's data belongs to is kept in
//     <DataDir>/topic-incarnations (incarnations.go), written only when a topic is first
//     written under a new incarnation.

// checkIncarnation is called before this broker writes to t: data of an older incarnation of
// the topic is dropped first, and t's incarnation is recorded as the one local data belongs to.
// First writes to topics never seen here only add a record, and share their fsync with the
// other first writes in flight; only a changed incarnation takes the exclusive lock.
func (b *Broker) checkIncarnation(ctx context.Context, t topicInfo) error {
	in := b.incarnations
	if rev, ok := in.get(t.Name); ok && rev == t.Incarnation || t.Incarnation == 0 {
		return nil
	}
	in.mu.RLock()
	if _, ok := in.get(t.Name); !ok {
		err := in.record(t.Name, t.Incarnation)
		in.mu.RUnlock()
		return err
	}
	in.mu.RUnlock()
	in.mu.Lock()
	defer in.mu.Unlock()
	rev, ok := in.get(t.Name)
	if ok && rev == t.Incarnation {
		return nil
	}
	if ok && rev != t.Incarnation {
		b.log.Info("topic was deleted and created again; dropping the old incarnation's local data",
			"topic", t.Name, "old_incarnation", rev, "incarnation", t.Incarnation)
		if err := b.deleteTopicData(ctx, t.Name); err != nil {
			return fmt.Errorf("drop data of the deleted incarnation of topic %s: %w", t.Name, err)
		}
	}
	return in.record(t.Name, t.Incarnation)
}

// reconcileTopics drops the local data of every topic the view no longer has, or has under a
// newer incarnation, and records the incarnation of local topics not yet recorded (data
// written before incarnations were kept belongs to the topic the view holds now).
func (b *Broker) reconcileTopics(ctx context.Context, s *meta.Snapshot) {
	b.sendTopics.forgetDeleted(s)
	in := b.incarnations
	in.mu.Lock()
	defer in.mu.Unlock()
	local := map[string]bool{}
	for _, q := range b.store.Queues() {
		local[q.Topic] = true
	}
	for _, topic := range in.topics() {
		local[topic] = true
	}
	for topic := range local {
		if isInternalTopic(topic) {
			continue // the broker's own system topics are in no topic table
		}
		cur, exists := s.Topics[topic]
		rev, recorded := in.get(topic)
		switch {
		case exists && recorded && rev == cur.Incarnation:
			continue
		case exists && !recorded:
			if err := in.record(topic, cur.Incarnation); err != nil {
				b.log.Warn("record topic incarnation", "topic", topic, "err", err)
			}
			continue
		}
		b.log.Info("topic deleted; dropping this broker group's data of it", "topic", topic)
		if err := b.deleteTopicData(ctx, topic); err != nil {
			b.log.Warn("drop data of a deleted topic; retrying at the next change", "topic", topic, "err", err)
			continue
		}
		next := int64(0)
		if exists {
			next = cur.Incarnation
		}
		if err := in.record(topic, next); err != nil {
			b.log.Warn("record topic incarnation", "topic", topic, "err", err)
		}
	}
}

// followTopicDeletions runs reconcileTopics whenever the view's topics change (the view
// copies its topic map only then, so comparing the maps' identity is enough).
func (b *Broker) followTopicDeletions() {
	defer b.wg.Done()
	var last uintptr
	for {
		s, changed := b.meta.view.Current()
		if id := reflect.ValueOf(s.Topics).Pointer(); id != last {
			last = id
			b.reconcileTopics(b.ctx, s)
		}
		select {
		case <-changed:
		case <-b.ctx.Done():
			return
		}
	}
}

// dropTopic drops this group's data of a deleted topic at once (DELETE_TOPIC_IN_BROKER).
func (b *Broker) dropTopic(ctx context.Context, topic string) error {
	in := b.incarnations
	in.mu.Lock()
	defer in.mu.Unlock()
	if err := b.deleteTopicData(ctx, topic); err != nil {
		return err
	}
	return in.record(topic, 0)
}

// isInternalTopic reports whether topic is a broker-internal system topic (transactions,
// scheduled delivery): no route, no sends from clients, never deleted for missing from the
// cluster's topics.
func isInternalTopic(topic string) bool {
	return txn.IsSystemTopic(topic) || timer.IsSystemTopic(topic)
}

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

// deleteTopicData drops topic's data on this broker group in both tiers and its consumer
// offsets; the topic's next incarnation starts at offset 0.
func (b *Broker) deleteTopicData(ctx context.Context, topic string) error {
	b.deleting.add(topic)
	defer b.deleting.done(topic)
	if err := b.store.DeleteTopic(ctx, topic); err != nil {
		return err
	}
	if b.tier != nil {
		ts := tier.Tombstone{Topic: topic, Position: b.store.MaxCommitLogOffset()}
		if err := b.tier.AddTombstone(ctx, ts); errors.Is(err, tier.ErrFenced) {
			return fmt.Errorf("the local data is deleted, but this broker is not the elected master of group %s and only the master records the deletion in the cold tier: %w; delete the topic on the master", b.cfg.BrokerName, err)
		} else if err != nil {
			return fmt.Errorf("the local data is deleted but the cold tier still holds it: %w; delete the topic again once the bucket is reachable", err)
		}
	}
	if err := b.meta.offsets.Forget(ctx, topic); err != nil {
		return fmt.Errorf("the data is deleted but the consumer offsets of the topic are not: %w; delete the topic again once etcd is reachable", err)
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

// incarnationsPath is where the broker keeps its topic incarnations.
func (b *Broker) incarnationsPath() string {
	dir := b.cfg.DataDir
	if dir == "" {
		dir = b.cfg.Store.Dir
	}
	return filepath.Join(dir, "topic-incarnations")
}
