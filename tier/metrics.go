package tier

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stratamq/strata/tier/objstore"
)

// metrics are the tier's Prometheus series, all named strata_tier_<what>_<unit>: offload
// (offloaded bytes and segments, offload lag and watermark in commit-log bytes), cold reads
// (bytes, duration, block-cache hits and misses), retention and compaction. Bucket requests
// are counted by objstore.WithMetrics (strata_objstore_*); no series has a per-topic or
// per-object label.
type metrics struct {
	offloadedBytes    prometheus.Counter
	offloadedSegments prometheus.Counter
	coldReadBytes     prometheus.Counter
	coldReadSeconds   prometheus.Histogram
	cacheHits         prometheus.Counter
	cacheMisses       prometheus.Counter
	lag               prometheus.Gauge
	watermark         prometheus.Gauge
	retentionDeleted  prometheus.Counter
	compactedObjects  prometheus.Counter
	compactedBytes    prometheus.Counter
	compactDeleted    prometheus.Counter
	staleRetries      prometheus.Counter
	orphansDeleted    prometheus.Counter
	writerEpoch       prometheus.Gauge

	// Plain counts, for tests and benchmarks that read them without a registry.
	puts, gets atomic.Int64
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		offloadedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_offloaded_bytes_total", Help: "Bytes of segment objects written to the bucket."}),
		offloadedSegments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_offloaded_segments_total", Help: "Commit-log segments committed to the tier."}),
		coldReadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_cold_read_bytes_total", Help: "Record bytes served from the cold tier."}),
		coldReadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strata_tier_cold_read_duration_seconds", Help: "Latency of cold reads.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_block_cache_hits_total", Help: "Cold block reads served from the cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_block_cache_misses_total", Help: "Cold block reads that went to the bucket."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_tier_offload_lag_bytes", Help: "Sealed commit-log bytes not yet in the tier."}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_tier_offload_watermark_bytes", Help: "Commit-log offset below which everything is in the tier."}),
		retentionDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_retention_deleted_objects_total", Help: "Objects deleted by tier retention."}),
		compactedObjects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_compacted_objects_total", Help: "Per-queue compacted objects published."}),
		compactedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_compacted_bytes_total", Help: "Bytes of compacted objects written to the bucket."}),
		compactDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_compaction_deleted_objects_total", Help: "Objects compaction deleted once nothing referenced them."}),
		staleRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_stale_manifest_retries_total", Help: "Cold reads retried on a newer manifest after an object was gone."}),
		orphansDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_tier_orphans_deleted_objects_total", Help: "Objects of older writer terms that no manifest names, deleted by the orphan sweep."}),
		writerEpoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_tier_writer_epoch", Help: "Election epoch this broker writes the group's tier in; 0 when it is not the elected writer."}),
	}
	if reg != nil {
		reg.MustRegister(m.offloadedBytes, m.offloadedSegments, m.coldReadBytes,
			m.coldReadSeconds, m.cacheHits, m.cacheMisses, m.lag, m.watermark, m.retentionDeleted,
			m.compactedObjects, m.compactedBytes, m.compactDeleted, m.staleRetries, m.orphansDeleted, m.writerEpoch)
	}
	return m
}

// countingBucket counts PUT and GET requests in plain counters, around whichever provider is
// configured. The Prometheus series of bucket requests (strata_objstore_*) come from
// objstore.WithMetrics, which the broker wraps around the bucket; counting them here too
// would export every request twice under two names.
type countingBucket struct {
	objstore.Bucket
	m *metrics
}

func (b *countingBucket) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	b.m.puts.Add(1)
	return b.Bucket.Put(ctx, name, r, size)
}

func (b *countingBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.m.gets.Add(1)
	return b.Bucket.Get(ctx, name)
}

func (b *countingBucket) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	b.m.gets.Add(1)
	return b.Bucket.GetRange(ctx, name, off, n)
}

// BucketRequests reports the PUT and GET (whole or ranged) requests this tier has made.
func (t *Tier) BucketRequests() (puts, gets int64) {
	return t.metrics.puts.Load(), t.metrics.gets.Load()
}
