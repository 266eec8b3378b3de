package broker

import (
	"context"

	"github.com/stratamq/strata/meta"
)

// drainReadQueues finishes the shrinks of this broker group's share of topics: a shrink
// (meta.UpdateQueues) lowers the write queue count at once and leaves the read count, so
// consumers keep reading the removed queues; once every removed queue is drained, this lowers
// the read count to the write count. A queue is drained when every consumer group holding
// offsets on the topic has committed past its last message, or, if no group ever consumed
// the topic, when it holds no message at all (nothing a consumer could still want).
func (b *Broker) drainReadQueues(ctx context.Context) {
	var offsets map[meta.QueueKey]int64
	for _, t := range b.meta.topics() {
		share, ok := t.share(b.cfg.BrokerName)
		if !ok || share.ReadQueueNums <= share.WriteQueueNums {
			continue
		}
		if offsets == nil {
			offsets = b.meta.offsets.Offsets()
		}
		if !b.queuesDrained(t.Name, int32(share.WriteQueueNums), int32(share.ReadQueueNums), offsets) {
			continue
		}
		if _, err := b.mc.LowerReadQueues(ctx, t.Name, b.cfg.BrokerName, int32(share.WriteQueueNums)); err != nil {
			b.log.Warn("lower read queues of a shrunk topic; retrying later", "topic", t.Name, "err", err)
			continue
		}
		b.log.Info("shrunk topic drained: read queues lowered", "topic", t.Name,
			"from", share.ReadQueueNums, "to", share.WriteQueueNums)
	}
}

// queuesDrained reports whether queues [from, to) of topic are drained (drainReadQueues).
func (b *Broker) queuesDrained(topic string, from, to int32, offsets map[meta.QueueKey]int64) bool {
	groups := map[string]bool{}
	for k := range offsets {
		if k.Topic == topic {
			groups[k.Group] = true
		}
	}
	l := b.retroLog()
	for q := from; q < to; q++ {
		maxOff := l.MaxOffset(topic, q)
		if maxOff <= l.MinOffset(topic, q) {
			continue // holds nothing
		}
		if len(groups) == 0 {
			return false
		}
		for g := range groups {
			if off, ok := offsets[meta.QueueKey{Group: g, Topic: topic, QueueID: q}]; !ok || off < maxOff {
				return false
			}
		}
	}
	return true
}
