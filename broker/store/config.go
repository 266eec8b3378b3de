package store

import (
	"errors"
	"fmt"
	"time"
)

// FlushMode says when an append is acknowledged relative to fsync.
type FlushMode int

const (
	// FlushAsync acknowledges an append once it is written to the segment file; a background
	// loop fsyncs every FlushInterval.
	FlushAsync FlushMode = iota
	// FlushSync acknowledges an append only after an fsync that covers it; appends that arrive
	// together share one fsync (group commit).
	FlushSync
)

func (m FlushMode) String() string {
	switch m {
	case FlushAsync:
		return "async"
	case FlushSync:
		return "sync"
	}
	return fmt.Sprintf("FlushMode(%d)", int(m))
}

// Defaults applied by Validate to zero fields.
const (
	DefaultSegmentBytes       = 1 << 30
	DefaultFlushInterval      = 200 * time.Millisecond
	DefaultCheckpointInterval = time.Second
	DefaultMaxMessageBytes    = 4 << 20
	// DefaultConsumeQueueCacheBytes caches 4,096 consume-queue pages (594k entries).
	DefaultConsumeQueueCacheBytes = 16 << 20
	// DefaultKeyIndexCacheBytes caches 2,048 key-index blocks.
	DefaultKeyIndexCacheBytes = 8 << 20
	// DefaultKeyIndexFileKeys makes 32 MiB key-index files whose active slot table takes
	// 1 MiB of memory.
	DefaultKeyIndexFileKeys = 1 << 20
	// DefaultRecoveryReplayBytes bounds the log tail Open replays to about a second of work.
	DefaultRecoveryReplayBytes = 256 << 20
)

// Config configures a Store. Zero fields take the defaults above; SealAfter 0 means segments
// seal only when full.
type Config struct {
	// Dir holds the commit log, consume queues, key index and checkpoint.
	Dir string
	// SegmentBytes is the size at which a commit-log segment seals (header included).
	SegmentBytes int64
	FlushMode    FlushMode
	// FlushInterval is the fsync period under FlushAsync.
	FlushInterval time.Duration
	// CheckpointInterval is how often consume queues and the key index are written and
	// fsynced and the recovery checkpoint advanced.
	CheckpointInterval time.Duration
	// RecoveryReplayBytes bounds the commit-log tail Open replays after a crash (plus what
	// one CheckpointInterval appends): a queue whose unfinished consume-queue page holds
	// entries further back than half of it has them written out at the next checkpoint.
	RecoveryReplayBytes int64
	// ConsumeQueueCacheBytes bounds the in-process cache of consume-queue pages read from
	// disk; with the page tables (16 bytes per 145 messages) and each queue's unfinished
	// page, it is all the heap the consume queues take.
	ConsumeQueueCacheBytes int64
	// KeyIndexCacheBytes bounds the in-process cache of key-index blocks read from disk.
	KeyIndexCacheBytes int64
	// KeyIndexFileKeys is the number of key references one key-index file holds (32 bytes
	// each). The active file's slot table, a quarter as many 4-byte slots, is in memory and
	// rebuilt from the file at open.
	KeyIndexFileKeys int
	// SealAfter seals a non-empty active segment once its first record is this old.
	SealAfter time.Duration
	// Replicated marks a member of a replicated group: its log's positions are the master's,
	// so it seals by age only once it leads (SetFollower(false)). A follower, and a member
	// that has not yet learnt its role, rolls where its master's stream does; rolling on its
	// own would shift every later record off its master's position.
	Replicated bool
	// MaxMessageBytes bounds one encoded record (its TOTALSIZE).
	MaxMessageBytes int
	// BaseOffset is the commit-log position at which an empty store's first segment starts
	// (0 for a new broker). A broker whose disk was wiped passes its cold tier's offload
	// watermark, so new records continue the commit log instead of reusing positions the tier
	// already holds. Ignored when the commit log has segments.
	BaseOffset int64
	// OnFsync, when set, is called after every fsync of a commit-log segment with how long it
	// took and whether it failed: group commits under FlushSync, the interval flush under
	// FlushAsync, seals and new segments. It runs on the goroutine that synced (the
	// completer's, for group commits), so it must be quick; the broker feeds a latency
	// histogram with it.
	OnFsync func(elapsed time.Duration, err error)
}

// Validate fills defaults and checks limits.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("store config: Dir is empty; set the directory for the commit log")
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.RecoveryReplayBytes == 0 {
		c.RecoveryReplayBytes = DefaultRecoveryReplayBytes
	}
	if c.ConsumeQueueCacheBytes == 0 {
		c.ConsumeQueueCacheBytes = DefaultConsumeQueueCacheBytes
	}
	if c.KeyIndexCacheBytes == 0 {
		c.KeyIndexCacheBytes = DefaultKeyIndexCacheBytes
	}
	if c.KeyIndexFileKeys == 0 {
		c.KeyIndexFileKeys = DefaultKeyIndexFileKeys
	}
	if c.RecoveryReplayBytes < 4096 {
		return fmt.Errorf("store config: RecoveryReplayBytes %d is below 4096", c.RecoveryReplayBytes)
	}
	if c.ConsumeQueueCacheBytes < blockBytes || c.KeyIndexCacheBytes < blockBytes {
		return fmt.Errorf("store config: ConsumeQueueCacheBytes %d and KeyIndexCacheBytes %d must hold at least one %d-byte block",
			c.ConsumeQueueCacheBytes, c.KeyIndexCacheBytes, blockBytes)
	}
	if c.KeyIndexFileKeys < 64 || c.KeyIndexFileKeys > 1<<26 {
		return fmt.Errorf("store config: KeyIndexFileKeys %d outside 64..%d", c.KeyIndexFileKeys, 1<<26)
	}
	if c.FlushMode != FlushAsync && c.FlushMode != FlushSync {
		return fmt.Errorf("store config: unknown flush mode %d; use FlushAsync or FlushSync", c.FlushMode)
	}
	if c.FlushInterval < 0 || c.CheckpointInterval < 0 || c.SealAfter < 0 {
		return errors.New("store config: FlushInterval, CheckpointInterval and SealAfter must not be negative")
	}
	if c.BaseOffset < 0 {
		return fmt.Errorf("store config: BaseOffset %d is negative", c.BaseOffset)
	}
	if c.MaxMessageBytes < 128 {
		return fmt.Errorf("store config: MaxMessageBytes %d is below 128", c.MaxMessageBytes)
	}
	if c.SegmentBytes < segmentHeaderBytes+int64(c.MaxMessageBytes)+frameTrailerBytes {
		return fmt.Errorf("store config: SegmentBytes %d cannot hold one record of MaxMessageBytes %d; raise SegmentBytes",
			c.SegmentBytes, c.MaxMessageBytes)
	}
	return nil
}

// Errors callers act on.
var (
	// ErrMessageTooLarge rejects a record above MaxMessageBytes, or a batch that does not fit
	// in one segment.
	ErrMessageTooLarge = errors.New("message too large")
	// ErrClosed is returned by calls on a closed Store.
	ErrClosed = errors.New("store closed")
	// ErrWriteFailed wraps a write or fsync failure; what is stored stays readable.
	ErrWriteFailed = errors.New("commit log write failed")
	// ErrOffsetNotFound is returned by ReadAt for a position that is not a stored record.
	ErrOffsetNotFound = errors.New("commit-log position not found")
	// ErrCorrupt reports a checksum mismatch in stored data.
	ErrCorrupt = errors.New("stored data corrupt")
	// ErrWouldBlock answers a ReadRequest with NoWait that would have to wait: for the disk,
	// the cold tier or a lock. The same read without NoWait serves it.
	ErrWouldBlock = errors.New("read would block")
)
