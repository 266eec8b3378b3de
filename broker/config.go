package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"time"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/console"
	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/broker/timer"
	"github.com/stratamq/strata/broker/txn"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// Defaults applied by Validate to zero fields.
const (
	DefaultClusterName        = "DefaultCluster"
	DefaultBrokerName         = "broker-a"
	DefaultNameServerListen   = ":9876"
	DefaultBrokerListen       = ":10911"
	DefaultHTTPListen         = ":8080"
	DefaultQueueNums          = 4
	DefaultMaxMessageBytes    = 4 << 20
	DefaultMaxSuspend         = 25 * time.Second
	DefaultMaxHeldPulls       = 100000
	DefaultMaxPullMessages    = 256
	DefaultMaxPullBytes       = 8 << 20
	DefaultClientExpiry       = 120 * time.Second
	DefaultHousekeepingPeriod = 10 * time.Second
	DefaultLockExpiry         = 60 * time.Second
	DefaultMaxBatchMessages   = 1024
	DefaultTraceRetention     = 7 * 24 * time.Hour
	// DefaultMaxFilterScanMessages lets a pull with an SQL92 filter examine this many hot
	// messages before it answers with what matched (Java examines 800: maxFilterMessageSize
	// 16000 bytes of consume queue).
	DefaultMaxFilterScanMessages = 4096
)

// Config configures a Broker. It is a plain struct: cmd/strata fills it from flags, YAML and
// the environment; Validate fills defaults and rejects values that cannot work.
type Config struct {
	// ClusterName is the RocketMQ cluster the broker reports in routes.
	ClusterName string
	// BrokerName is the broker group (RocketMQ's brokerName); routes map queues to it.
	BrokerName string
	// BrokerID identifies this member of its broker group (RocketMQ's brokerId: 0 for the
	// configured master, 1.. for the others). The acting master is elected (ElectionTTL)
	// and reported as brokerId 0 in routes; only it offloads, compacts and applies tier
	// retention. Until replication lands, a member that is not elected is a standby whose
	// own log is not a copy of the master's.
	BrokerID int64
	// ElectionTTL is how long the group's master keeps its election after its etcd session
	// stops being renewed (the broker died, or etcd is out of reach); another member can
	// take over after it. Default meta.DefaultBrokerTTL.
	ElectionTTL time.Duration
	// DataDir holds the hot store (DataDir/store unless Store.Dir is set).
	DataDir string
	// Replication copies the group's commit log from its master to the other members
	// (replication.go); the zero value (no Listen) keeps a group of one member.
	Replication ReplicationConfig

	// NameServerListen, BrokerListen and HTTPListen are the listen addresses of the three
	// roles ("host:port"; port 0 picks a free one). HTTPListen "-" disables HTTP.
	NameServerListen string
	BrokerListen     string
	HTTPListen       string
	// AdvertisedAddr is the broker-role address clients dial: it goes into routes and into
	// every stored record's STOREHOST and offset message id, so it must be a reachable IPv4
	// "ip:port" (the v2.1.2 Go client dials it for some send-backs). Empty: derived from the
	// broker listener, with the first non-loopback IPv4 address when it listens on all
	// interfaces.
	AdvertisedAddr string

	// AutoCreateTopics creates a topic on its first send (routes advertise TBW102 so
	// producers find the broker for topics that do not exist yet).
	AutoCreateTopics bool
	// DefaultQueueNums is the queue count of auto-created topics.
	DefaultQueueNums int
	// MaxMessageBytes bounds one message body (and its stored record).
	MaxMessageBytes int
	// MaxBatchMessages bounds the messages of one SEND_BATCH_MESSAGE.
	MaxBatchMessages int

	// DisableTraceTopic stops the broker from creating RMQ_SYS_TRACE_TOPIC, the topic that
	// clients with message trace on write to (RocketMQ's traceTopicEnable, on by default
	// here): without it, clients drop their trace records silently.
	DisableTraceTopic bool
	// TraceRetention is the trace topic's retention across both tiers.
	TraceRetention time.Duration

	// Store configures the hot tier. Dir defaults to DataDir/store; MaxMessageBytes is set
	// from the record size MaxMessageBytes implies.
	Store store.Config

	// BucketURL enables the cold tier (tiering.go): sealed segments are offloaded to this
	// bucket (file:///dir, s3://bucket/prefix) and reads below the local min offset are
	// served from it. Empty: no cold tier, local segments are kept.
	BucketURL string
	// Bucket, when set, is used instead of opening BucketURL (tests, embedding).
	Bucket objstore.Bucket
	// S3 holds endpoint, region, path-style addressing and static credentials of an s3://
	// BucketURL; empty credentials use the default AWS chain.
	S3 objstore.S3Options
	// LocalRetention keeps an offloaded segment on local disk this long after its newest
	// record (0: delete it as soon as it is offloaded).
	LocalRetention time.Duration
	// MaxLocalBytes is the local disk's high watermark: while the commit-log bytes not yet
	// offloaded exceed it, sends are refused (offload is failing). 0: no limit.
	MaxLocalBytes int64
	// Tier tunes the cold tier (block size, offload concurrency, caches, bucket GET
	// concurrency, retry backoff). Bucket, Pointers, Prefix, StartOffset, LocalRetention,
	// Retention, Registerer and Logger are set by the broker.
	Tier tier.Config

	// MessageDelayLevel is RocketMQ's delay-level table (messageDelayLevel): DELAY=n and the
	// n-th retry back-off wait its n-th entry. Empty: timer.DefaultDelayLevels
	// ("1s 5s 10s 30s 1m 2m ... 1h 2h").
	MessageDelayLevel string
	// TimerMaxDelay refuses deliveries scheduled further ahead than this (0:
	// timer.DefaultMaxDelay, a leap year).
	TimerMaxDelay time.Duration
	// Timer tunes scheduled delivery (index flush, near-window bounds, firing batches).
	// Dir, DelayLevels, MaxDelay, StoreHost, MaxAppendBytes, Registerer and Logger are set
	// by the broker.
	Timer timer.Config

	// MaxSuspend caps how long a pull is held (clients ask for 20 s and give up at 30 s).
	MaxSuspend time.Duration
	// MaxHeldPulls bounds the pulls held at once across all connections; beyond it a pull
	// that finds nothing is answered at once.
	MaxHeldPulls int
	// MaxPullMessages and MaxPullBytes cap one pull response.
	MaxPullMessages int
	MaxPullBytes    int
	// MaxFilterScanMessages bounds the hot messages one pull with an SQL92 filter examines;
	// when none of them match, the pull answers PULL_RETRY_IMMEDIATELY past them. The cold
	// tier bounds its own scan by blocks.
	MaxFilterScanMessages int
	// SQL92Limits bound the length and nesting of SQL92 subscription expressions.
	SQL92Limits filter.Limits

	// ClientExpiry drops a client's registrations after this long without a heartbeat.
	ClientExpiry time.Duration
	// HousekeepingPeriod is how often expired clients and locks are swept.
	HousekeepingPeriod time.Duration
	// LockExpiry is how long an orderly-consumer queue lock lives without a refresh.
	LockExpiry time.Duration

	// Metrics bounds the label cardinality of /metrics (metrics.go).
	Metrics MetricsConfig

	// Transaction tunes transactional messages (check-back timeout, interval and maximum,
	// pending limit). StoreHost, Logger and Registerer are set by the broker.
	Transaction txn.Config

	// Console configures the web console served on the HTTP listener (broker/console):
	// its limits, and Auth, the hook an access check (the ACL) wraps it with. The zero
	// value serves with the defaults and no login.
	Console console.Config

	// Remoting holds the connection limits of both remoting listeners.
	Remoting remoting.Config

	// ACLEnabled checks every request of both remoting roles against the access-control
	// accounts in etcd (broker/acl): RocketMQ's signatures and plain-ACL permissions.
	ACLEnabled bool
	// ACL tunes the checks; ClusterName, BrokerName, BrokerAddr and Logger are set by the
	// broker.
	ACL acl.Config
	// ACLAdmin, with ACL on, is an admin account made sure of at start: created, or given
	// this secret key and the admin right (so an operator is never locked out). Zero: none.
	ACLAdmin remoting.Credentials
	// TLS, when set, serves the name-server, broker and HTTP listeners over TLS, with
	// certificates read again when their files change (or on ReloadTLS).
	TLS *remoting.ServerTLSConfig
	// HTTP configures the endpoints of the HTTP listener (httpauth.go).
	HTTP HTTPConfig
	// Logger receives request failures and lifecycle events; nil means slog.Default().
	Logger *slog.Logger
}

// Replication modes (ReplicationConfig.Mode).
const (
	ReplicationAsync = "async"
	ReplicationSync  = "sync"
)

// Defaults of ReplicationConfig.
const (
	DefaultReplicationMaxLag     = 3 * time.Second
	DefaultReplicationAckTimeout = 5 * time.Second
	// DefaultSlaveReadLagBytes is how far behind the log end (in commit-log bytes) a pull
	// must start for the master to send the consumer to a slave. RocketMQ derives its bound
	// from 40 % of the host's RAM (accessMessageInMemoryMaxRatio): past it a read probably
	// misses the page cache and competes with producers for the master's disk. A broker in a
	// container cannot tell its page-cache share from the host's RAM, so Strata takes a fixed
	// bound instead: 256 MiB is seconds to minutes of writes at common rates, well inside the
	// page cache of any broker host, so a consumer that is merely tailing (or briefly behind)
	// stays on the master and only a real backlog moves to a slave.
	DefaultSlaveReadLagBytes = 256 << 20
)

// ReplicationConfig configures log replication within the broker group (DESIGN.md
// "Replication"). The elected master serves its log on Listen; the other members follow it.
type ReplicationConfig struct {
	// Listen is the replication listener's address ("host:port", port 0 picks one). Empty:
	// no replication; a member that is not elected is a standby with a log of its own.
	Listen string
	// AdvertisedAddr is the address the other members dial; empty: the listener's, with a
	// wildcard host replaced as for AdvertisedAddr.
	AdvertisedAddr string
	// Mode is ReplicationAsync (acknowledge after the master's append; a failover can lose
	// what the followers had not copied yet) or ReplicationSync (acknowledge once every
	// member of the in-sync set holds the message). Default async.
	Mode string
	// MinInSyncReplicas is the fewest members, the master included, the in-sync set must
	// have for a sync send to be accepted; with fewer, sends fail with SLAVE_NOT_AVAILABLE
	// and are not stored. Default 1.
	MinInSyncReplicas int
	// MaxLag drops a follower from the in-sync set once it has made no progress towards the
	// master's log end for this long (sync sends stall at most this long for a dead one).
	MaxLag time.Duration
	// AckTimeout bounds how long a sync send waits for the in-sync set; past it the answer
	// is FLUSH_SLAVE_TIMEOUT (stored on the master, not confirmed by the set). It should
	// exceed MaxLag.
	AckTimeout time.Duration
	// UncleanElection lets a member outside the in-sync set become master (an operator's
	// override when no in-sync member survives): messages acknowledged only by lost members
	// are then lost. Logged at start and at every such win.
	UncleanElection bool
	// TLSCAFile holds the PEM CAs a follower verifies its master's certificate against when
	// the broker serves TLS (Config.TLS), which then covers the replication listener too.
	// Empty: the broker's tls.client_ca_file.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are the certificate a follower presents to its master; needed
	// when tls.client_auth is require (the certificate must allow client authentication).
	TLSCertFile string
	TLSKeyFile  string
	// SlaveReadEnable lets consumers that are far behind read from an in-sync slave
	// (RocketMQ's slaveReadEnable, default off): the master answers such a pull with
	// suggestWhichBrokerId set to a slave, and a slave keeps its readers until they are
	// within SlaveReadLagBytes of the log end or reach what it may serve (slaveread.go).
	SlaveReadEnable bool
	// SlaveReadLagBytes is how far behind the log end, in commit-log bytes, a pull's first
	// record must lie to be served by a slave. Default DefaultSlaveReadLagBytes.
	SlaveReadLagBytes int64
}

// Enabled reports whether the broker replicates.
func (r ReplicationConfig) Enabled() bool { return r.Listen != "" }

// validateTLS checks that a follower can reach a master behind tls (nil: plain).
func (r ReplicationConfig) validateTLS(tls *remoting.ServerTLSConfig) error {
	if !r.Enabled() || tls == nil {
		return nil
	}
	if r.TLSCAFile == "" && tls.ClientCAFile == "" {
		return errors.New("broker config: with tls on, the replication listener serves TLS: set replication.tls_ca_file (the CAs of the members' certificates) or tls.client_ca_file")
	}
	if (r.TLSCertFile == "") != (r.TLSKeyFile == "") {
		return errors.New("broker config: replication.tls_cert_file and replication.tls_key_file go together")
	}
	if tls.ClientAuth == remoting.ClientAuthRequire && r.TLSCertFile == "" {
		return errors.New("broker config: tls.client_auth require also holds for replication: set replication.tls_cert_file and tls_key_file, a member certificate that allows client authentication")
	}
	return nil
}

// followerTLS is the client side of the replication listener under tls: the CAs of the
// members' certificates and this member's own, if any.
func (r ReplicationConfig) followerTLS(tls *remoting.ServerTLSConfig) remoting.ClientTLSConfig {
	ca := r.TLSCAFile
	if ca == "" {
		ca = tls.ClientCAFile
	}
	return remoting.ClientTLSConfig{CAFile: ca, CertFile: r.TLSCertFile, KeyFile: r.TLSKeyFile}
}

func (r *ReplicationConfig) validate() error {
	if !r.Enabled() {
		if r.Mode == ReplicationSync || r.MinInSyncReplicas > 1 {
			return errors.New("broker config: replication mode sync or min_in_sync_replicas > 1 needs a replication listener (replication.listen)")
		}
		if r.SlaveReadEnable {
			// Without replication the other members are standbys with logs of their own:
			// sending a consumer there would serve different messages at the same offsets.
			return errors.New("broker config: replication.slave_read_enable needs a replication listener (replication.listen): only replicating slaves hold the master's log")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(r.Listen); err != nil {
		return fmt.Errorf("broker config: replication listen %q is not host:port: %w", r.Listen, err)
	}
	if r.AdvertisedAddr != "" {
		if _, err := netip.ParseAddrPort(r.AdvertisedAddr); err != nil {
			return fmt.Errorf("broker config: replication advertised address %q must be ip:port: %w", r.AdvertisedAddr, err)
		}
	}
	switch r.Mode {
	case "":
		r.Mode = ReplicationAsync
	case ReplicationAsync, ReplicationSync:
	default:
		return fmt.Errorf("broker config: replication mode %q: want %s or %s", r.Mode, ReplicationAsync, ReplicationSync)
	}
	if r.MinInSyncReplicas == 0 {
		r.MinInSyncReplicas = 1
	}
	if r.MinInSyncReplicas < 1 || r.MinInSyncReplicas > 3 {
		return fmt.Errorf("broker config: min_in_sync_replicas %d must be 1..3 (a group has at most three members)", r.MinInSyncReplicas)
	}
	if r.MaxLag == 0 {
		r.MaxLag = DefaultReplicationMaxLag
	}
	if r.AckTimeout == 0 {
		r.AckTimeout = DefaultReplicationAckTimeout
	}
	if r.MaxLag < 0 || r.AckTimeout < 0 {
		return errors.New("broker config: replication max_lag and ack_timeout must be positive")
	}
	if r.SlaveReadLagBytes == 0 {
		r.SlaveReadLagBytes = DefaultSlaveReadLagBytes
	}
	if r.SlaveReadLagBytes < 0 {
		return fmt.Errorf("broker config: replication.slave_read_lag_bytes %d must not be negative (commit-log bytes behind the log end past which a slave serves a pull; default %d)",
			r.SlaveReadLagBytes, DefaultSlaveReadLagBytes)
	}
	return nil
}

// recordRoomBytes is what a stored record may add to its body: fixed fields, topic and
// properties take at most ~64 KiB.
const recordRoomBytes = 64 << 10

// maxBatchStoredBytes is the most the stored records of a batch of n messages may take
// (SEND_BATCH_MESSAGE): one message's body limit, plus a record's room for each message.
func (c *Config) maxBatchStoredBytes(n int) int { return c.MaxMessageBytes + n*recordRoomBytes }

// topicNameRE is RocketMQ's topic character set (rmq: C/topic/TopicValidator.java).
var topicNameRE = regexp.MustCompile(`^[%|a-zA-Z0-9_-]+$`)

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.BrokerName == "" {
		c.BrokerName = DefaultBrokerName
	}
	if !topicNameRE.MatchString(c.BrokerName) {
		return fmt.Errorf("broker config: broker name %q may use only letters, digits, '_', '-', '%%' and '|'", c.BrokerName)
	}
	if c.BrokerID < 0 {
		return fmt.Errorf("broker config: broker id %d must not be negative (0 for the configured master, 1.. for the other members)", c.BrokerID)
	}
	if c.ElectionTTL < 0 {
		return errors.New("broker config: ElectionTTL must not be negative")
	}
	if err := c.Replication.validate(); err != nil {
		return err
	}
	if err := c.Replication.validateTLS(c.TLS); err != nil {
		return err
	}
	if c.Replication.Enabled() && c.ElectionTTL > 0 && c.ElectionTTL < 2*time.Second {
		return fmt.Errorf("broker config: ElectionTTL %s is below 2s; a replicating master needs room for its write lease (the TTL minus a quarter)", c.ElectionTTL)
	}
	if c.DataDir == "" && c.Store.Dir == "" {
		return errors.New("broker config: DataDir is empty; set the directory for the broker's data")
	}
	if c.Store.Dir == "" {
		c.Store.Dir = filepath.Join(c.DataDir, "store")
	}
	if c.NameServerListen == "" {
		c.NameServerListen = DefaultNameServerListen
	}
	if c.BrokerListen == "" {
		c.BrokerListen = DefaultBrokerListen
	}
	if c.HTTPListen == "" {
		c.HTTPListen = DefaultHTTPListen
	}
	for name, a := range map[string]string{"NameServerListen": c.NameServerListen, "BrokerListen": c.BrokerListen} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("broker config: %s %q is not host:port: %w", name, a, err)
		}
	}
	if c.HTTPListen != "-" {
		if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
			return fmt.Errorf("broker config: HTTPListen %q is not host:port (use \"-\" to disable): %w", c.HTTPListen, err)
		}
	}
	if c.AdvertisedAddr != "" {
		ap, err := netip.ParseAddrPort(c.AdvertisedAddr)
		if err != nil || !ap.Addr().Unmap().Is4() || ap.Port() == 0 {
			return fmt.Errorf("broker config: AdvertisedAddr %q must be a reachable IPv4 ip:port such as 10.0.0.5:10911 (RocketMQ Go clients v2.1.2 parse only IPv4 message ids)", c.AdvertisedAddr)
		}
	}
	if c.DefaultQueueNums == 0 {
		c.DefaultQueueNums = DefaultQueueNums
	}
	if c.DefaultQueueNums < 1 || c.DefaultQueueNums > 1024 {
		return fmt.Errorf("broker config: DefaultQueueNums %d must be in 1..1024", c.DefaultQueueNums)
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxMessageBytes < 1024 || c.MaxMessageBytes > 15<<20 {
		return fmt.Errorf("broker config: MaxMessageBytes %d must be in 1 KiB..15 MiB (frames are capped at 16 MiB)", c.MaxMessageBytes)
	}
	if c.MaxBatchMessages == 0 {
		c.MaxBatchMessages = DefaultMaxBatchMessages
	}
	if c.TraceRetention == 0 {
		c.TraceRetention = DefaultTraceRetention
	}
	if c.Store.MaxMessageBytes == 0 {
		c.Store.MaxMessageBytes = c.MaxMessageBytes + recordRoomBytes
	}
	if c.MaxSuspend == 0 {
		c.MaxSuspend = DefaultMaxSuspend
	}
	if c.MaxSuspend < 0 || c.MaxSuspend >= 30*time.Second {
		return fmt.Errorf("broker config: MaxSuspend %s must be below 30s (the Go client abandons a pull after 30s)", c.MaxSuspend)
	}
	if c.MaxHeldPulls == 0 {
		c.MaxHeldPulls = DefaultMaxHeldPulls
	}
	if c.MaxPullMessages == 0 {
		c.MaxPullMessages = DefaultMaxPullMessages
	}
	if c.MaxPullBytes == 0 {
		c.MaxPullBytes = DefaultMaxPullBytes
	}
	if c.MaxFilterScanMessages == 0 {
		c.MaxFilterScanMessages = DefaultMaxFilterScanMessages
	}
	if c.ClientExpiry == 0 {
		c.ClientExpiry = DefaultClientExpiry
	}
	if c.HousekeepingPeriod == 0 {
		c.HousekeepingPeriod = DefaultHousekeepingPeriod
	}
	if c.LockExpiry == 0 {
		c.LockExpiry = DefaultLockExpiry
	}
	if c.MaxHeldPulls < 0 || c.MaxPullMessages < 1 || c.MaxPullBytes < 1 || c.MaxFilterScanMessages < 1 || c.ClientExpiry < 0 ||
		c.HousekeepingPeriod < 0 || c.LockExpiry < 0 || c.MaxBatchMessages < 1 {
		return errors.New("broker config: limits and periods must be positive")
	}
	if c.MessageDelayLevel == "" {
		c.MessageDelayLevel = timer.DefaultDelayLevels
	}
	if _, err := timer.ParseDelayLevels(c.MessageDelayLevel); err != nil {
		return fmt.Errorf("broker config: MessageDelayLevel: %w", err)
	}
	if c.TimerMaxDelay < 0 {
		return fmt.Errorf("broker config: TimerMaxDelay %s is negative", c.TimerMaxDelay)
	}
	if c.LocalRetention < 0 || c.MaxLocalBytes < 0 || c.TraceRetention < 0 {
		return errors.New("broker config: LocalRetention, MaxLocalBytes and TraceRetention must not be negative")
	}
	if err := c.Metrics.validate(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := c.Remoting.Validate(); err != nil {
		return fmt.Errorf("broker config: %w", err)
	}
	if c.TLS != nil {
		if err := c.TLS.Validate(); err != nil {
			return fmt.Errorf("broker config: %w", err)
		}
	}
	if !c.ACLAdmin.IsZero() && !c.ACLEnabled {
		return errors.New("broker config: an ACL admin account is configured but ACL is off; enable ACL or drop the admin account")
	}
	if err := c.Store.Validate(); err != nil {
		return fmt.Errorf("broker config: %w", err)
	}
	if err := c.Transaction.Validate(); err != nil {
		return fmt.Errorf("broker config: %w", err)
	}
	if c.Console.Logger == nil {
		c.Console.Logger = c.Logger
	}
	if err := c.Console.Validate(); err != nil {
		return fmt.Errorf("broker config: %w", err)
	}
	if c.MaxLocalBytes > 0 && c.MaxLocalBytes < c.Store.SegmentBytes {
		return fmt.Errorf("broker config: MaxLocalBytes %d is below one segment (%d bytes): the tier offloads whole sealed segments, so writes would stop; raise it to a few segments",
			c.MaxLocalBytes, c.Store.SegmentBytes)
	}
	return nil
}
