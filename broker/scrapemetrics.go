package broker

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/retro"
)

// stateCollector computes, at each scrape, the series that describe state rather than events:
// consumer-group lag and the tier's offload backlog. Nothing is kept up to date between
// scrapes, so the broker's hot paths pay nothing for them.
//
// Cost: one scrape copies the group's committed offsets (meta.OffsetStore.Offsets), sorts them,
// and per queue reads the queue's bounds (two consume-queue lookups and the tier catalog's
// in-memory map) and one store timestamp (the consume-queue entry of the committed offset, or
// the tier index's time range for an offset only in the bucket): no disk or bucket I/O, no
// etcd request. The series themselves are the cost: BenchmarkStateCollector scrapes a broker
// with 10,000 lagging queues in about 70 ms and 1.6 MB of text, against 0.5 ms and 14 KB for
// the same broker's other series in the same run (2 cores); most of it is the Prometheus
// client building, sorting and encoding 20,000 series. At a 15 s scrape interval that is well
// under 1% of a core; MaxLagQueues caps it for larger fleets.
type stateCollector struct {
	b         *Broker
	maxQueues int
	now       func() time.Time

	lagMessages, lagSeconds, lagAggregated *prometheus.Desc
	backlogBytes, backlogSeconds           *prometheus.Desc
}

// lagAllQueues is the queue label of a (group, topic) reported in one series past the limit.
const lagAllQueues = "(all)"

func newStateCollector(b *Broker, maxQueues int) *stateCollector {
	lag := []string{"group", "topic", "queue"}
	return &stateCollector{
		b: b, maxQueues: maxQueues, now: time.Now,
		lagMessages: prometheus.NewDesc("strata_broker_consumer_lag_messages",
			"Messages of the queue past the consumer group's committed offset (max offset − committed offset).", lag, nil),
		lagSeconds: prometheus.NewDesc("strata_broker_consumer_lag_seconds",
			"Age of the group's first unconsumed message of the queue (now − its store time); 0 when caught up. For an offset only in the cold tier the store time is estimated from the tier index.", lag, nil),
		lagAggregated: prometheus.NewDesc("strata_broker_consumer_lag_aggregated_topics",
			"(group, topic) pairs reported with queue=\"(all)\" because the per-queue lag series reached Metrics.MaxLagQueues.", nil, nil),
		backlogBytes: prometheus.NewDesc("strata_tier_backlog_bytes",
			"Commit-log bytes not yet offloaded to the cold tier (active segment included); 0 when no record lies past the offload watermark.", nil, nil),
		backlogSeconds: prometheus.NewDesc("strata_tier_backlog_seconds",
			"Age of the oldest record not yet offloaded to the cold tier; 0 when everything is offloaded.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lagMessages, c.lagSeconds, c.lagAggregated, c.backlogBytes, c.backlogSeconds} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	// serving is stored after Start has set the store, metadata and tier, and cleared before
	// Close tears them down; its atomic load orders the reads below after those writes.
	if !c.b.serving.Load() {
		return
	}
	nowMs := c.now().UnixMilli()
	c.collectLag(ch, nowMs)
	c.collectBacklog(ch, nowMs)
}

type queueLag struct {
	queue    int32
	messages int64
	seconds  float64
}

func (c *stateCollector) collectLag(ch chan<- prometheus.Metric, nowMs int64) {
	b := c.b
	offsets := b.meta.offsets.Offsets()
	keys := make([]meta.QueueKey, 0, len(offsets))
	for k := range offsets {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y meta.QueueKey) int {
		return cmp.Or(cmp.Compare(x.Group, y.Group), cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.QueueID, y.QueueID))
	})
	topics := b.meta.view.Snapshot().Topics
	log := b.retroLog()
	emitted, aggregated := 0, 0
	var run []queueLag
	for i := 0; i < len(keys); {
		group, topic := keys[i].Group, keys[i].Topic
		j := i
		for j < len(keys) && keys[j].Group == group && keys[j].Topic == topic {
			j++
		}
		if _, ok := topics[topic]; !ok { // deleted: its offsets are being forgotten
			i = j
			continue
		}
		run = run[:0]
		for _, k := range keys[i:j] {
			run = append(run, c.queueLag(log.Bounds(topic, k.QueueID), k, offsets[k], nowMs))
		}
		if emitted+len(run) <= c.maxQueues {
			for _, q := range run {
				qs := strconv.Itoa(int(q.queue))
				ch <- prometheus.MustNewConstMetric(c.lagMessages, prometheus.GaugeValue, float64(q.messages), group, topic, qs)
				ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, q.seconds, group, topic, qs)
			}
			emitted += len(run)
		} else {
			var msgs int64
			var secs float64
			for _, q := range run {
				msgs += q.messages
				secs = max(secs, q.seconds)
			}
			ch <- prometheus.MustNewConstMetric(c.lagMessages, prometheus.GaugeValue, float64(msgs), group, topic, lagAllQueues)
			ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, secs, group, topic, lagAllQueues)
			aggregated++
		}
		i = j
	}
	ch <- prometheus.MustNewConstMetric(c.lagAggregated, prometheus.GaugeValue, float64(aggregated))
}

// queueLag is one queue's lag behind committed offset off.
func (c *stateCollector) queueLag(bd retro.Bounds, k meta.QueueKey, off, nowMs int64) queueLag {
	l := queueLag{queue: k.QueueID, messages: max(0, bd.Max-off)}
	if l.messages == 0 {
		return l
	}
	// The first unconsumed message: the committed offset, or the oldest one still held if
	// retention has passed it.
	at := max(off, bd.Min)
	ts, ok := c.b.store.StoreTimeAt(k.Topic, k.QueueID, at)
	if !ok && c.b.tier != nil {
		ts, ok = c.b.tier.StoreTimeEstimate(k.Topic, k.QueueID, at)
	}
	if ok {
		l.seconds = float64(max(0, nowMs-ts)) / 1000
	}
	return l
}

func (c *stateCollector) collectBacklog(ch chan<- prometheus.Metric, nowMs int64) {
	b := c.b
	if b.tier == nil {
		return
	}
	wm := b.tier.OffloadWatermark()
	var bytes int64
	var secs float64
	if first, ok := b.store.FirstStoreTimeFrom(wm); ok {
		bytes = max(0, b.store.MaxCommitLogOffset()-wm)
		secs = float64(max(0, nowMs-first)) / 1000
	}
	ch <- prometheus.MustNewConstMetric(c.backlogBytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(c.backlogSeconds, prometheus.GaugeValue, secs)
}
