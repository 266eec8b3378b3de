package timer

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultDelayLevels is RocketMQ's default messageDelayLevel table.
const DefaultDelayLevels = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"

// Defaults applied by Validate to zero fields.
const (
	// DefaultMaxDelay is how far ahead a delivery may be scheduled: a leap year. RocketMQ 5
	// refuses more than 3 days by default (timerMaxDelaySec).
	DefaultMaxDelay = 366 * 24 * time.Hour
	// DefaultFlushInterval is how often the index's memtable becomes a run on disk.
	DefaultFlushInterval = time.Second
	// DefaultMemtableEntries flushes the memtable early once it holds this many entries.
	DefaultMemtableEntries = 64 << 10
	// DefaultMaxHeapEntries bounds the near-window heap: loading stops while it holds more.
	DefaultMaxHeapEntries = 1 << 20
	// DefaultLookahead is how far ahead of the clock entries are loaded into the heap.
	DefaultLookahead = 2 * time.Second
	// DefaultMaxFireBatch bounds the timers fired by one append.
	DefaultMaxFireBatch = 1024
	// DefaultMaxAppendBytes bounds the bytes of one append of delivered copies.
	DefaultMaxAppendBytes = 1 << 20
	// DefaultCheckpointInterval spaces the fired-state records written while timers fire
	// back to back; a crash re-fires at most this much.
	DefaultCheckpointInterval = 100 * time.Millisecond
	// DefaultReadConcurrency bounds parallel reads of parked records (the cold tier is slow
	// per request, so a batch fired from the bucket reads in parallel).
	DefaultReadConcurrency = 16
)

// Config configures a Service. It is a plain struct: the broker fills it from its own
// configuration; Validate fills defaults and rejects values that cannot work.
type Config struct {
	// Dir holds the timer index (runs and manifest). The index is derived from the commit
	// log: deleting Dir costs a rebuild, never a timer.
	Dir string
	// DelayLevels is RocketMQ's messageDelayLevel table ("1s 5s 10s ..."): DELAY=n waits
	// the n-th entry; levels above the table use its last entry. Empty: DefaultDelayLevels.
	DelayLevels string
	// MaxDelay refuses deliveries scheduled further ahead than this (0: DefaultMaxDelay).
	MaxDelay time.Duration
	// StoreHost is written as the STOREHOST of delivered copies and checkpoint records.
	StoreHost netip.AddrPort

	// FlushInterval, MemtableEntries, MaxHeapEntries, Lookahead, MaxFireBatch,
	// MaxAppendBytes, CheckpointInterval and ReadConcurrency tune the engine (defaults
	// above). MaxAppendBytes must stay below the commit-log segment size.
	FlushInterval      time.Duration
	MemtableEntries    int
	MaxHeapEntries     int
	Lookahead          time.Duration
	MaxFireBatch       int
	MaxAppendBytes     int
	CheckpointInterval time.Duration
	ReadConcurrency    int

	// Clock tells time and waits; nil is the system clock. Tests drive a fake one.
	Clock Clock
	// Registerer receives the strata_timer_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives recovery and failure events; nil means slog.Default().
	Logger *slog.Logger

	levels []time.Duration // parsed DelayLevels
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("timer config: Dir is empty; set the directory of the timer index")
	}
	if c.DelayLevels == "" {
		c.DelayLevels = DefaultDelayLevels
	}
	levels, err := ParseDelayLevels(c.DelayLevels)
	if err != nil {
		return fmt.Errorf("timer config: %w", err)
	}
	c.levels = levels
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxDelay < 0 {
		return fmt.Errorf("timer config: MaxDelay %s is negative", c.MaxDelay)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.FlushInterval, DefaultFlushInterval)
	def(&c.Lookahead, DefaultLookahead)
	def(&c.CheckpointInterval, DefaultCheckpointInterval)
	defInt(&c.MemtableEntries, DefaultMemtableEntries)
	defInt(&c.MaxHeapEntries, DefaultMaxHeapEntries)
	defInt(&c.MaxFireBatch, DefaultMaxFireBatch)
	defInt(&c.MaxAppendBytes, DefaultMaxAppendBytes)
	defInt(&c.ReadConcurrency, DefaultReadConcurrency)
	if c.FlushInterval < 0 || c.Lookahead < 0 || c.CheckpointInterval < 0 || c.MemtableEntries < 1 ||
		c.MaxHeapEntries < 1 || c.MaxFireBatch < 1 || c.MaxAppendBytes < 1024 || c.ReadConcurrency < 1 {
		return errors.New("timer config: intervals must not be negative, limits must be positive (MaxAppendBytes at least 1 KiB)")
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// ParseDelayLevels parses a messageDelayLevel table: space-separated durations with the
// units RocketMQ accepts (s, m, h, d) plus ms, such as "1s 5s 10s 30s 1m 2h 1d".
func ParseDelayLevels(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Fields(s) {
		unit, mult := f[len(f)-1:], time.Duration(0)
		num := f[:len(f)-1]
		switch {
		case strings.HasSuffix(f, "ms"):
			num, mult = f[:len(f)-2], time.Millisecond
		case unit == "s":
			mult = time.Second
		case unit == "m":
			mult = time.Minute
		case unit == "h":
			mult = time.Hour
		case unit == "d":
			mult = 24 * time.Hour
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if mult == 0 || err != nil || n <= 0 || n > int64(100*365*24*time.Hour/mult) {
			return nil, fmt.Errorf("delay level %q (level %d of %q): want a positive whole number with a unit of ms, s, m, h or d, such as 10s", f, len(out)+1, s)
		}
		out = append(out, time.Duration(n)*mult)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("delay level table %q is empty; use RocketMQ's form, e.g. %q", s, DefaultDelayLevels)
	}
	return out, nil
}
