package txn

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by Validate to zero fields. Timeout, CheckInterval and CheckMax are
// RocketMQ's transactionTimeOut, transactionCheckInterval and transactionCheckMax.
const (
	DefaultTimeout            = 6 * time.Second
	DefaultCheckInterval      = 30 * time.Second
	DefaultCheckMax           = 15
	DefaultMaxPending         = 2_000_000
	DefaultMaxChecksPerRound  = 5000
	DefaultCheckResolution    = 100 * time.Millisecond
	DefaultCheckSendTimeout   = 3 * time.Second
	DefaultCheckpointInterval = 5 * time.Second
)

// Config configures a Service. Zero fields take the defaults above.
type Config struct {
	// Timeout is how old a half message with no decision must be before it is first checked
	// back (the message property CHECK_IMMUNITY_TIME_IN_SECONDS overrides it).
	Timeout time.Duration
	// CheckInterval is the time between two check-backs of the same half message.
	CheckInterval time.Duration
	// CheckMax is how many check-backs a half message gets; at the next one due it is parked
	// in CheckMaxTopic and forgotten.
	CheckMax int
	// MaxPending bounds the half messages with no decision held at once (each costs a
	// 32-byte entry in memory); a half message beyond it is refused.
	MaxPending int
	// MaxChecksPerRound bounds the check-backs (and parkings) of one check round; the rest
	// wait for the next round.
	MaxChecksPerRound int
	// CheckResolution is the shortest time between two check rounds, so a round over many
	// pending half messages does not run continuously.
	CheckResolution time.Duration
	// CheckSendTimeout bounds the write of one check-back to one producer connection.
	CheckSendTimeout time.Duration
	// CheckpointInterval is how often the recovery checkpoint is written when it moved.
	CheckpointInterval time.Duration

	// StoreHost is the broker address written into committed messages (STOREHOST).
	StoreHost netip.AddrPort
	// Clock tells the time of check-backs; nil is the system clock.
	Clock Clock
	// Logger receives decisions that fail, parkings and recovery; nil is slog.Default().
	Logger *slog.Logger
	// Registerer receives the strata_txn_* metrics; nil registers nothing.
	Registerer prometheus.Registerer

	// noLoop keeps Open from starting the check loop (tests drive rounds themselves).
	noLoop bool
}

// Clock tells the time.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Validate fills defaults and checks limits.
func (c *Config) Validate() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Timeout, DefaultTimeout)
	def(&c.CheckInterval, DefaultCheckInterval)
	def(&c.CheckResolution, DefaultCheckResolution)
	def(&c.CheckSendTimeout, DefaultCheckSendTimeout)
	def(&c.CheckpointInterval, DefaultCheckpointInterval)
	if c.CheckMax == 0 {
		c.CheckMax = DefaultCheckMax
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxChecksPerRound == 0 {
		c.MaxChecksPerRound = DefaultMaxChecksPerRound
	}
	if c.Timeout < 0 || c.CheckInterval < 0 || c.CheckResolution < 0 || c.CheckSendTimeout < 0 || c.CheckpointInterval < 0 {
		return errors.New("transaction config: timeout, check_interval, check_resolution, check_send_timeout and checkpoint_interval must be positive")
	}
	if c.CheckMax < 0 || c.CheckMax > 1<<15 {
		return fmt.Errorf("transaction config: check_max %d must be in 1..32768", c.CheckMax)
	}
	if c.MaxPending < 1 || c.MaxChecksPerRound < 1 {
		return errors.New("transaction config: max_pending and max_checks_per_round must be positive")
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
