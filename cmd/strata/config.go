package main

import (
	"encoding"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/broker/timer"
	"github.com/stratamq/strata/broker/txn"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/tier/objstore"
)

// NodeConfig is the YAML file of `strata broker`. Every key can be overridden by an
// environment variable named STRATA_ plus the key path in upper case joined by '_'
// (store.segment_size → STRATA_STORE_SEGMENT_SIZE; lists are comma-separated).
// deployments/broker.yaml documents every key with its default.
type NodeConfig struct {
	// Cluster names the cluster: the etcd key prefix and the cluster in routes.
	Cluster string `yaml:"cluster"`
	// BrokerName is the broker group this node serves.
	BrokerName string `yaml:"broker_name"`
	// DataDir holds the hot store.
	DataDir string `yaml:"data_dir"`
	// BrokerID is this member's id in its broker group (0, 1, 2); the master is elected.
	BrokerID int64 `yaml:"broker_id"`
	// ElectionTTL is how long a dead master keeps its group's election.
	ElectionTTL Duration `yaml:"election_ttl"`
	// Replication copies the group's log to its other members.
	Replication ReplicationYAML `yaml:"replication"`
	// EtcdEndpoints are the etcd client URLs.
	EtcdEndpoints []string `yaml:"etcd_endpoints"`
	// EtcdDialTimeout bounds the wait for etcd at start; past it the broker exits naming the
	// endpoints it tried.
	EtcdDialTimeout Duration `yaml:"etcd_dial_timeout"`
	// NamesrvAddr, BrokerAddr and HTTPAddr are the listen addresses of the three roles.
	NamesrvAddr string `yaml:"namesrv_addr"`
	BrokerAddr  string `yaml:"broker_addr"`
	HTTPAddr    string `yaml:"http_addr"`
	// AdvertisedAddr is the broker address put in routes and message ids (reachable IPv4).
	AdvertisedAddr string `yaml:"advertised_addr"`
	// AutoCreateTopics creates a topic on its first send.
	AutoCreateTopics bool `yaml:"auto_create_topics"`
	// DefaultQueueNums is the queue count of auto-created topics.
	DefaultQueueNums int `yaml:"default_queue_nums"`
	// MaxMessageBytes bounds one message.
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	// MaxConnections bounds client connections per listener.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a connection that has sent nothing for this long.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// TraceTopicEnable creates RMQ_SYS_TRACE_TOPIC, where clients with trace on write.
	TraceTopicEnable bool `yaml:"trace_topic_enable"`
	// TraceRetention is how long trace records are kept.
	TraceRetention Duration `yaml:"trace_retention"`
	// MaxInFlightFrameBytes bounds the bytes of incoming frames held at once per listener.
	MaxInFlightFrameBytes ByteSize  `yaml:"max_inflight_frame_bytes"`
	Store                 StoreYAML `yaml:"store"`
	Tier                  TierYAML  `yaml:"tier"`
	// Transaction tunes transactional messages.
	Transaction TransactionYAML `yaml:"transaction"`
	// Timer tunes scheduled delivery.
	Timer TimerYAML `yaml:"timer"`
	// EtcdTLS, EtcdUsername and EtcdPassword reach an etcd with TLS and auth (ACL secret
	// keys are stored there).
	EtcdTLS      EtcdTLSYAML `yaml:"etcd_tls"`
	EtcdUsername string      `yaml:"etcd_username"`
	EtcdPassword string      `yaml:"etcd_password"`
	ACL          ACLYAML     `yaml:"acl"`
	TLS          TLSYAML     `yaml:"tls"`
	HTTP         HTTPYAML    `yaml:"http"`
}

// ReplicationYAML configures log replication in the broker group (broker.ReplicationConfig).
type ReplicationYAML struct {
	Listen            string   `yaml:"listen"`
	AdvertisedAddr    string   `yaml:"advertised_addr"`
	Mode              string   `yaml:"mode"`
	MinInSyncReplicas int      `yaml:"min_in_sync_replicas"`
	MaxLag            Duration `yaml:"max_lag"`
	AckTimeout        Duration `yaml:"ack_timeout"`
	UncleanElection   bool     `yaml:"unclean_election"`
	TLSCAFile         string   `yaml:"tls_ca_file"`
	TLSCertFile       string   `yaml:"tls_cert_file"`
	TLSKeyFile        string   `yaml:"tls_key_file"`
	SlaveReadEnable   bool     `yaml:"slave_read_enable"`
	SlaveReadLagBytes ByteSize `yaml:"slave_read_lag_bytes"`
}

// TransactionYAML configures transactional messages (RocketMQ's transactionTimeOut,
// transactionCheckInterval and transactionCheckMax, and Strata's limits).
type TransactionYAML struct {
	// Timeout is how old a half message with no decision gets before its first check-back.
	Timeout Duration `yaml:"timeout"`
	// CheckInterval is the time between two check-backs of one half message.
	CheckInterval Duration `yaml:"check_interval"`
	// CheckMax is how many check-backs a half message gets before it is parked in
	// TRANS_CHECK_MAX_TIME_TOPIC.
	CheckMax int `yaml:"check_max"`
	// MaxPending bounds the half messages with no decision (32 bytes of memory each).
	MaxPending int `yaml:"max_pending"`
	// MaxChecksPerRound bounds the check-backs sent by one check round.
	MaxChecksPerRound int `yaml:"max_checks_per_round"`
	// CheckResolution is the shortest time between two check rounds.
	CheckResolution Duration `yaml:"check_resolution"`
	// CheckpointInterval is how often the recovery checkpoint is written.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
}

// TimerYAML configures scheduled delivery (delay levels, delivery times, retry back-off).
type TimerYAML struct {
	// MessageDelayLevel is RocketMQ's delay-level table: DELAY=n (and the n-th retry)
	// waits its n-th entry; higher levels use the last.
	MessageDelayLevel string `yaml:"message_delay_level"`
	// MaxDelay refuses deliveries scheduled further ahead than this.
	MaxDelay Duration `yaml:"max_delay"`
}

// ACLYAML turns on access control (broker/acl).
type ACLYAML struct {
	Enabled bool `yaml:"enabled"`
	// PublicRoutes answers route lookups without checking their signature (see broker/acl).
	PublicRoutes bool `yaml:"public_routes"`
	// AdminAccessKey and AdminSecretKey, when set, are an admin account made sure of at start.
	AdminAccessKey string `yaml:"admin_access_key"`
	AdminSecretKey string `yaml:"admin_secret_key"`
	// FailureLogInterval is how often refusals of one access key are logged, at most.
	FailureLogInterval Duration `yaml:"failure_log_interval"`
	// MaxSignatureAge refuses Strata clients' signatures older than this (replays).
	MaxSignatureAge Duration `yaml:"max_signature_age"`
	// MinSecretKeyBytes is the shortest secret key an account may have.
	MinSecretKeyBytes int `yaml:"min_secret_key_bytes"`
}

// TLSYAML serves the three listeners over TLS.
type TLSYAML struct {
	Enabled      bool     `yaml:"enabled"`
	CertFile     string   `yaml:"cert_file"`
	KeyFile      string   `yaml:"key_file"`
	ClientCAFile string   `yaml:"client_ca_file"`
	ClientAuth   string   `yaml:"client_auth"`
	Permissive   bool     `yaml:"permissive"`
	ReloadCheck  Duration `yaml:"reload_check"`
}

// HTTPYAML configures the HTTP endpoints (broker/httpauth.go).
type HTTPYAML struct {
	Pprof        bool   `yaml:"pprof"`
	AdminToken   string `yaml:"admin_token"`
	ProtectReads bool   `yaml:"protect_reads"`
}

// EtcdTLSYAML holds the PEM files of the connection to etcd.
type EtcdTLSYAML struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

func (e EtcdTLSYAML) meta() meta.EtcdTLS {
	return meta.EtcdTLS{CAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile, ServerName: e.ServerName}
}

// metaConfig is how the node reaches etcd.
func (c NodeConfig) metaConfig() meta.Config {
	return meta.Config{Endpoints: c.EtcdEndpoints, Cluster: c.Cluster, DialTimeout: c.EtcdDialTimeout.duration(),
		TLS: c.EtcdTLS.meta(), Username: c.EtcdUsername, Password: c.EtcdPassword}
}

// TierYAML configures the cold tier.
type TierYAML struct {
	// Bucket is the bucket URL (file:///dir or s3://bucket/prefix); empty: no cold tier.
	Bucket string `yaml:"bucket"`
	// LocalRetention keeps offloaded segments on local disk this long (0s: drop at once).
	LocalRetention Duration `yaml:"local_retention"`
	// MaxLocalBytes is the disk high watermark: sends are refused while more commit-log
	// bytes than this are not yet offloaded (0: no limit).
	MaxLocalBytes ByteSize `yaml:"max_local_bytes"`
	S3            S3YAML   `yaml:"s3"`
}

// S3YAML holds the endpoint and credentials of an s3:// bucket; empty credentials use the
// default AWS chain (environment, shared files, instance or task role).
type S3YAML struct {
	Endpoint  string `yaml:"endpoint"`
	Region    string `yaml:"region"`
	PathStyle bool   `yaml:"path_style"`
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// CABundleFile holds CAs trusted for an https:// endpoint besides the system's.
	CABundleFile string `yaml:"ca_bundle_file"`
}

// StoreYAML configures the hot tier.
type StoreYAML struct {
	// SegmentSize is the commit-log segment size.
	SegmentSize ByteSize `yaml:"segment_size"`
	// Flush is "async" (fsync every flush_interval) or "sync" (ack after fsync).
	Flush string `yaml:"flush"`
	// FlushInterval is the fsync period under async flush.
	FlushInterval Duration `yaml:"flush_interval"`
	// SealAfter seals a segment once it is this old, so slow topics reach the tier.
	SealAfter Duration `yaml:"seal_after"`
}

func defaultNodeConfig() NodeConfig {
	return NodeConfig{
		Cluster:     broker.DefaultClusterName,
		BrokerName:  broker.DefaultBrokerName,
		DataDir:     "./data",
		ElectionTTL: Duration(meta.DefaultBrokerTTL),
		Replication: ReplicationYAML{Mode: broker.ReplicationAsync, MinInSyncReplicas: 1,
			MaxLag: Duration(broker.DefaultReplicationMaxLag), AckTimeout: Duration(broker.DefaultReplicationAckTimeout),
			SlaveReadLagBytes: broker.DefaultSlaveReadLagBytes},
		EtcdEndpoints:   []string{"http://127.0.0.1:2379"},
		EtcdDialTimeout: Duration(5 * time.Second),
		NamesrvAddr:     "0.0.0.0:9876",
		BrokerAddr:      "0.0.0.0:10911",
		// HTTP serves metrics, health and (opt-in) profiles: loopback unless configured.
		HTTPAddr:         "127.0.0.1:8080",
		DefaultQueueNums: broker.DefaultQueueNums,
		MaxMessageBytes:  broker.DefaultMaxMessageBytes,
		TraceTopicEnable: true,
		TraceRetention:   Duration(broker.DefaultTraceRetention),
		ACL:              ACLYAML{PublicRoutes: true},
		Store: StoreYAML{
			SegmentSize:   store.DefaultSegmentBytes,
			Flush:         "async",
			FlushInterval: Duration(store.DefaultFlushInterval),
		},
		Transaction: TransactionYAML{
			Timeout:            Duration(txn.DefaultTimeout),
			CheckInterval:      Duration(txn.DefaultCheckInterval),
			CheckMax:           txn.DefaultCheckMax,
			MaxPending:         txn.DefaultMaxPending,
			MaxChecksPerRound:  txn.DefaultMaxChecksPerRound,
			CheckResolution:    Duration(txn.DefaultCheckResolution),
			CheckpointInterval: Duration(txn.DefaultCheckpointInterval),
		},
		Timer: TimerYAML{MessageDelayLevel: timer.DefaultDelayLevels, MaxDelay: Duration(timer.DefaultMaxDelay)},
	}
}

// loadNodeConfig reads path (if not empty) over the defaults, then applies the environment.
func loadNodeConfig(path string, environ []string) (NodeConfig, error) {
	cfg := defaultNodeConfig()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "STRATA_") {
			env[k] = v
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "STRATA", env); err != nil {
		return cfg, err
	}
	return cfg, nil
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// applyEnv sets each yaml-tagged field from env[prefix_KEY] when present.
func applyEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(textUnmarshaler) {
			if err := applyEnv(fv, name, env); err != nil {
				return err
			}
			continue
		}
		val, ok := env[name]
		if !ok {
			continue
		}
		if err := setField(fv, val); err != nil {
			return fmt.Errorf("environment %s=%q: %w", name, val, err)
		}
	}
	return nil
}

func setField(fv reflect.Value, val string) error {
	if u, ok := fv.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(val))
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(val)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer")
		}
		fv.SetInt(n)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(val, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported field kind %s", fv.Kind())
	}
	return nil
}

// brokerConfig turns the node config into the broker's own configuration.
func (c NodeConfig) brokerConfig() (broker.Config, error) {
	bc := broker.Config{
		ClusterName: c.Cluster,
		BrokerName:  c.BrokerName,
		DataDir:     c.DataDir,
		BrokerID:    c.BrokerID,
		ElectionTTL: c.ElectionTTL.duration(),
		Replication: broker.ReplicationConfig{Listen: c.Replication.Listen, AdvertisedAddr: c.Replication.AdvertisedAddr,
			Mode: c.Replication.Mode, MinInSyncReplicas: c.Replication.MinInSyncReplicas, MaxLag: c.Replication.MaxLag.duration(),
			AckTimeout: c.Replication.AckTimeout.duration(), UncleanElection: c.Replication.UncleanElection,
			TLSCAFile: c.Replication.TLSCAFile, TLSCertFile: c.Replication.TLSCertFile, TLSKeyFile: c.Replication.TLSKeyFile,
			SlaveReadEnable: c.Replication.SlaveReadEnable, SlaveReadLagBytes: int64(c.Replication.SlaveReadLagBytes)},
		NameServerListen:  c.NamesrvAddr,
		BrokerListen:      c.BrokerAddr,
		HTTPListen:        c.HTTPAddr,
		AdvertisedAddr:    c.AdvertisedAddr,
		AutoCreateTopics:  c.AutoCreateTopics,
		DefaultQueueNums:  c.DefaultQueueNums,
		MaxMessageBytes:   int(c.MaxMessageBytes),
		DisableTraceTopic: !c.TraceTopicEnable,
		TraceRetention:    c.TraceRetention.duration(),
		Store: store.Config{
			SegmentBytes:  int64(c.Store.SegmentSize),
			FlushInterval: Duration(c.Store.FlushInterval).duration(),
			SealAfter:     Duration(c.Store.SealAfter).duration(),
		},
	}
	bc.MessageDelayLevel = c.Timer.MessageDelayLevel
	bc.TimerMaxDelay = c.Timer.MaxDelay.duration()
	bc.BucketURL = c.Tier.Bucket
	bc.LocalRetention = c.Tier.LocalRetention.duration()
	bc.MaxLocalBytes = int64(c.Tier.MaxLocalBytes)
	bc.S3 = objstore.S3Options{Endpoint: c.Tier.S3.Endpoint, Region: c.Tier.S3.Region, UsePathStyle: c.Tier.S3.PathStyle,
		AccessKeyID: c.Tier.S3.AccessKey, SecretAccessKey: c.Tier.S3.SecretKey, CABundleFile: c.Tier.S3.CABundleFile}
	tx := c.Transaction
	bc.Transaction = txn.Config{Timeout: tx.Timeout.duration(), CheckInterval: tx.CheckInterval.duration(), CheckMax: tx.CheckMax,
		MaxPending: tx.MaxPending, MaxChecksPerRound: tx.MaxChecksPerRound, CheckResolution: tx.CheckResolution.duration(),
		CheckpointInterval: tx.CheckpointInterval.duration()}
	fitMessagesToSegments(&bc)
	bc.Remoting.MaxConnections = c.MaxConnections
	bc.Remoting.IdleTimeout = c.IdleTimeout.duration()
	bc.Remoting.MaxInFlightFrameBytes = int64(c.MaxInFlightFrameBytes)
	if err := c.securityConfig(&bc); err != nil {
		return bc, err
	}
	switch c.Store.Flush {
	case "", "async":
		bc.Store.FlushMode = store.FlushAsync
	case "sync":
		bc.Store.FlushMode = store.FlushSync
	default:
		return bc, fmt.Errorf("store.flush %q: want async or sync", c.Store.Flush)
	}
	if err := bc.Validate(); err != nil {
		return bc, err
	}
	return bc, nil
}

func (d Duration) duration() time.Duration { return time.Duration(d) }

// fitMessagesToSegments lowers the message size limit when segments are too small for the
// default (demo segments of 64KiB–1MiB): a record must fit in one segment.
func fitMessagesToSegments(bc *broker.Config) {
	seg := bc.Store.SegmentBytes
	if seg <= 0 {
		return
	}
	maxBody := bc.MaxMessageBytes
	if maxBody == 0 {
		maxBody = broker.DefaultMaxMessageBytes
	}
	const overhead = 64 << 10 // fixed fields, topic and properties of one record
	if int64(maxBody+overhead) < seg-1024 {
		return
	}
	rec := seg - 1024 // leave room for the segment header and the frame trailer
	bc.Store.MaxMessageBytes = int(rec)
	bc.MaxMessageBytes = int(max(rec/2, 1024))
}
