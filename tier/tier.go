package tier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stratamq/strata/tier/objstore"
	"golang.org/x/sync/semaphore"
)

// Defaults of Config.
const (
	DefaultOffloadConcurrency = 2
	DefaultRetryMin           = 100 * time.Millisecond
	DefaultRetryMax           = 30 * time.Second
	DefaultCacheBytes         = 256 << 20
	DefaultIndexCacheBytes    = 64 << 20
	DefaultMaxConcurrentGets  = 8
	DefaultReadAheadBytes     = 32 << 20
	DefaultRetentionInterval  = 5 * time.Minute
	DefaultCompactMinRunBytes = 32 << 20
	DefaultCompactTargetBytes = 128 << 20
	DefaultCompactMinRuns     = 8
	DefaultCompactInterval    = 5 * time.Minute
)

// Config configures a Tier. Zero fields take the defaults above.
type Config struct {
	// Bucket holds the segment objects and manifests.
	Bucket objstore.Bucket
	// Pointers keeps the broker group's TierPointer (etcd through meta).
	Pointers PointerStore
	// Prefix names the broker group in the bucket, e.g. "<cluster>/<group>".
	Prefix string
	// ReadOnly opens the tier for reading only (export and replay tools): no offload, no
	// retention, no manifest writes. A tier that is not read-only still writes only while
	// it leads its group (Lead).
	ReadOnly bool

	// BlockBytes is the uncompressed size at which a block is cut.
	BlockBytes int
	// OwnObjectBytes is the queue-run size from which a run gets an object of its own.
	OwnObjectBytes int64
	// OffloadConcurrency bounds segments uploaded at once (each holds about its compressed
	// size in memory).
	OffloadConcurrency int
	// RetryMin and RetryMax bound the exponential backoff of failed uploads and commits.
	RetryMin, RetryMax time.Duration
	// StartOffset is where offload starts when the group has no tier pointer yet: the base
	// of the oldest sealed segment on disk (0 for a new commit log).
	StartOffset int64
	// LocalRetention is how long a sealed segment stays on local disk after its last
	// record, once it is offloaded (CanDeleteLocal).
	LocalRetention time.Duration

	// CacheBytes bounds the cache of decompressed blocks.
	CacheBytes int64
	// IndexCacheBytes bounds the cache of decoded index and keys sections.
	IndexCacheBytes int64
	// MaxConcurrentGets bounds bucket reads in flight, so replays cannot starve others.
	MaxConcurrentGets int
	// ReadAheadBytes bounds the compressed bytes one coalesced ranged GET fetches from a
	// queue run (reader.go, readahead.go). The decoded size of
	// one such window is further capped at CacheBytes/4, so one window cannot flush the
	// cache; a window is never less than one block.
	ReadAheadBytes int64
	// DisableReadAhead turns off read-ahead: every GET fetches exactly one block and nothing
	// is fetched in the background.
	DisableReadAhead bool

	// Retention, when set, is each topic's tier retention (0: keep forever); the tier
	// enforces it every RetentionInterval while it leads.
	Retention         func(topic string) time.Duration
	RetentionInterval time.Duration

	// DisableCompaction stops Lead from starting the background compactor (compact.go),
	// which also sweeps orphaned objects; Compact can still be called.
	DisableCompaction bool
	// CompactMinRunBytes: queue runs smaller than this (uncompressed) are merged into
	// per-queue compacted objects.
	CompactMinRunBytes int64
	// CompactTargetBytes bounds a compacted object (uncompressed); compacted objects
	// smaller than half of it are merged again with their neighbours.
	CompactTargetBytes int64
	// CompactMinRuns is how many consecutive small pieces of a queue a compacted object
	// merges at least, unless they already reach half of CompactTargetBytes.
	CompactMinRuns int
	// CompactInterval is how often the background compactor runs a pass.
	CompactInterval time.Duration

	// Registerer receives the tier's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives offload and retention events; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.Bucket == nil {
		return errors.New("tier config: Bucket is nil; pass the object store bucket")
	}
	if c.Pointers == nil {
		return errors.New("tier config: Pointers is nil; pass the etcd tier-pointer store")
	}
	if c.Prefix == "" || strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") {
		return fmt.Errorf("tier config: Prefix %q must be non-empty without leading or trailing '/', e.g. cluster/group", c.Prefix)
	}
	if err := objstore.ValidateName(c.Prefix); err != nil {
		return fmt.Errorf("tier config: Prefix: %w", err)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.BlockBytes, DefaultBlockBytes)
	def(&c.OffloadConcurrency, DefaultOffloadConcurrency)
	def(&c.MaxConcurrentGets, DefaultMaxConcurrentGets)
	if c.OwnObjectBytes <= 0 {
		c.OwnObjectBytes = DefaultOwnObjectBytes
	}
	if c.RetryMin <= 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.ReadAheadBytes <= 0 {
		c.ReadAheadBytes = DefaultReadAheadBytes
	}
	if c.IndexCacheBytes <= 0 {
		c.IndexCacheBytes = DefaultIndexCacheBytes
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = DefaultRetentionInterval
	}
	if c.CompactMinRunBytes <= 0 {
		c.CompactMinRunBytes = DefaultCompactMinRunBytes
	}
	if c.CompactTargetBytes <= 0 {
		c.CompactTargetBytes = DefaultCompactTargetBytes
	}
	if c.CompactMinRuns < 2 {
		c.CompactMinRuns = DefaultCompactMinRuns
	}
	if c.CompactInterval <= 0 {
		c.CompactInterval = DefaultCompactInterval
	}
	if c.BlockBytes > maxBlockRawBytes/2 {
		return fmt.Errorf("tier config: BlockBytes %d exceeds %d", c.BlockBytes, maxBlockRawBytes/2)
	}
	if c.LocalRetention < 0 {
		return errors.New("tier config: LocalRetention must not be negative")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Tier is a broker group's cold tier: it serves cold reads (Read, QueueRange, OffsetForTime,
// Lookup) and, while it leads its group (Lead), offloads sealed segments (Submit), compacts
// and enforces tier retention.
type Tier struct {
	cfg     Config
	bucket  *countingBucket
	metrics *metrics

	// leadMu serialises Lead; term is the current writer term (leader.go), nil when the
	// tier does not lead.
	leadMu sync.Mutex
	term   atomic.Pointer[term]

	stallMu sync.Mutex
	stall   OffloadStall

	// commitMu serialises manifest writes (offload commits, retention, compaction).
	commitMu sync.Mutex
	// lastManifestSeq is the highest manifest seq this tier has written (under commitMu).
	lastManifestSeq int64
	// compactMu serialises compaction passes.
	compactMu sync.Mutex
	cat       atomic.Pointer[catalog]
	wmMu      sync.Mutex
	wmCh      chan struct{} // closed and replaced when the watermark moves

	// sizeHints carries each queue's size from one offloaded segment to the next, and
	// chunks the memory they were encoded in.
	sizeHints sizeHints
	chunks    chunkPool

	submitMu  sync.Mutex
	submitted []Segment
	submitCh  chan struct{}
	highEnd   atomic.Int64

	blocks   *lru[*decodedBlock]
	indexes  *lru[any]
	gets     *semaphore.Weighted
	flightMu sync.Mutex
	flight   map[string]*fetchCall // blocks being fetched, waited on by their readers
	indexing map[string]bool       // objects whose index a read-ahead is fetching (flightMu)

	bgMu      sync.Mutex // guards closed and wg.Add of background work started by callers
	closed    bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// catalog is an immutable view of one manifest version with a per-queue lookup.
type catalog struct {
	ptr TierPointer
	m   *Manifest
	// prev names the manifest object this one replaced ("" if unknown): it is kept one
	// round for readers in flight and deleted by the next publish.
	prev   string
	queues map[queueKey][]span           // sorted by first offset
	topics map[string][]*ManifestSegment // topic → segment and compacted objects holding it, by base
}

type span struct {
	seg *ManifestSegment
	q   *ManifestQueue
	qi  int // index of the queue in the segment's index
}

func newCatalog(ptr TierPointer, m *Manifest) *catalog {
	c := &catalog{ptr: ptr, m: m, queues: map[queueKey][]span{}, topics: map[string][]*ManifestSegment{}}
	objs := make([]*ManifestSegment, 0, len(m.Segments)+len(m.Compacted))
	for si := range m.Segments {
		objs = append(objs, &m.Segments[si])
	}
	for ci := range m.Compacted {
		objs = append(objs, &m.Compacted[ci])
	}
	sort.SliceStable(objs, func(i, j int) bool { return objs[i].Base < objs[j].Base })
	for _, s := range objs {
		seen := map[string]bool{}
		for qi := range s.Queues {
			q := &s.Queues[qi]
			if q.Dropped || q.Compacted != "" {
				continue
			}
			q, ok := m.visibleSpan(s, q)
			if !ok {
				continue
			}
			k := queueKey{q.Topic, q.QueueID}
			c.queues[k] = append(c.queues[k], span{s, q, qi})
			if !seen[q.Topic] {
				seen[q.Topic] = true
				c.topics[q.Topic] = append(c.topics[q.Topic], s)
			}
		}
	}
	for _, spans := range c.queues {
		sort.Slice(spans, func(i, j int) bool { return spans[i].q.FirstOffset < spans[j].q.FirstOffset })
	}
	return c
}

// Open loads the broker group's pointer and manifest. A manifest that is missing or corrupt
// is rebuilt from the segment objects. The tier serves reads at once; it writes only once
// Lead hands it a term of the group's election.
func Open(ctx context.Context, cfg Config) (*Tier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Tier{
		cfg:      cfg,
		metrics:  newMetrics(cfg.Registerer),
		wmCh:     make(chan struct{}),
		submitCh: make(chan struct{}, 1),
		blocks:   newLRU[*decodedBlock](cfg.CacheBytes),
		indexes:  newLRU[any](cfg.IndexCacheBytes),
		gets:     semaphore.NewWeighted(int64(cfg.MaxConcurrentGets)),
		flight:   map[string]*fetchCall{},
		indexing: map[string]bool{},
		chunks:   chunkPool{max: encoderChunksKept, idle: encoderChunksIdle},
	}
	t.blocks.onGet, t.blocks.onEvict = (*decodedBlock).acquire, (*decodedBlock).release
	t.bucket = &countingBucket{Bucket: cfg.Bucket, m: t.metrics}
	if err := t.load(ctx); err != nil {
		return nil, err
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

// load reads the pointer and its manifest into the catalog.
func (t *Tier) load(ctx context.Context) error {
	var ptr TierPointer
	var m *Manifest
	var err error
	for attempt := 0; ; attempt++ {
		ptr, err = t.cfg.Pointers.Load(ctx)
		if err != nil {
			return fmt.Errorf("open tier %s: load tier pointer: %w", t.cfg.Prefix, err)
		}
		if ptr.Manifest == "" {
			m = &Manifest{Version: ManifestVersion, Watermark: ptr.OffloadWatermark}
			if ptr.Revision == 0 {
				// The pointer stays absent until the first commit, so only the
				// manifest carries the start offset.
				m.Watermark = t.cfg.StartOffset
			}
			break
		}
		m, err = LoadManifest(ctx, t.bucket, ptr.Manifest)
		if err == nil {
			break
		}
		if errors.Is(err, objstore.ErrNotFound) && attempt == 0 {
			// A writer may have replaced and deleted it since the pointer was read.
			continue
		}
		if !errors.Is(err, objstore.ErrNotFound) && !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("open tier %s: %w", t.cfg.Prefix, err)
		}
		t.cfg.Logger.Warn("tier manifest unreadable; rebuilding it from the segment objects",
			"prefix", t.cfg.Prefix, "manifest", ptr.Manifest, "err", err)
		if m, err = RebuildManifest(ctx, t.bucket, t.cfg.Prefix, ptr); err != nil {
			return fmt.Errorf("open tier %s: %w", t.cfg.Prefix, err)
		}
		m.Seq = manifestSeq(ptr.Manifest)
		break
	}
	t.setCatalog(newCatalog(ptr, m))
	return nil
}

// Refresh reloads the pointer and manifest, for read-only users following a writer.
func (t *Tier) Refresh(ctx context.Context) error {
	t.commitMu.Lock()
	defer t.commitMu.Unlock()
	return t.load(ctx)
}

func (t *Tier) setCatalog(c *catalog) {
	old := t.cat.Swap(c)
	t.metrics.watermark.Set(float64(c.ptr.OffloadWatermark))
	t.metrics.lag.Set(float64(max(0, t.highEnd.Load()-c.ptr.OffloadWatermark)))
	if old == nil || old.ptr.OffloadWatermark != c.ptr.OffloadWatermark {
		t.wmMu.Lock()
		close(t.wmCh)
		t.wmCh = make(chan struct{})
		t.wmMu.Unlock()
	}
}

// OffloadWatermark is the commit-log offset below which everything is durable in the bucket.
func (t *Tier) OffloadWatermark() int64 { return t.cat.Load().ptr.OffloadWatermark }

// Pointer is the tier pointer the current catalog was loaded or published with.
func (t *Tier) Pointer() TierPointer { return t.cat.Load().ptr }

// Manifest returns the current manifest; callers must not modify it.
func (t *Tier) Manifest() *Manifest { return t.cat.Load().m }

// WaitOffloaded blocks until the watermark reaches end or ctx ends.
func (t *Tier) WaitOffloaded(ctx context.Context, end int64) error {
	for {
		t.wmMu.Lock()
		ch := t.wmCh
		t.wmMu.Unlock()
		if t.OffloadWatermark() >= end {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for offload watermark %d (at %d): %w", end, t.OffloadWatermark(), ctx.Err())
		}
	}
}

// CanDeleteLocal is the hot tier's retention policy: a sealed segment ending at end whose
// newest record was stored at lastStoreTimeMs may leave local disk once the tier has it and
// it is older than Config.LocalRetention.
func (t *Tier) CanDeleteLocal(end, lastStoreTimeMs int64) bool {
	if end > t.OffloadWatermark() {
		return false
	}
	return t.cfg.Now().Sub(time.UnixMilli(lastStoreTimeMs)) >= t.cfg.LocalRetention
}

// Close stops the writer work of a term (offload, compaction, retention) and read-ahead, and
// waits for them.
// Segments not yet committed are offloaded again after restart (Submit them again).
func (t *Tier) Close() error {
	t.closeOnce.Do(func() {
		t.bgMu.Lock()
		t.closed = true
		t.bgMu.Unlock()
		t.cancel()
		t.wg.Wait()
		t.blocks.clear() // their buffers go back to blockBufs once no reader holds them
		t.chunks.close()
	})
	return nil
}
