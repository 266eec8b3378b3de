package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/store"
)

func TestSampleConfigLoadsAndEnvironmentOverrides(t *testing.T) {
	cfg, err := loadNodeConfig("../../deployments/broker.yaml", []string{
		"STRATA_BROKER_NAME=broker-b",
		"STRATA_ETCD_ENDPOINTS=http://10.0.0.1:2379, http://10.0.0.2:2379",
		"STRATA_STORE_SEGMENT_SIZE=64MiB",
		"STRATA_STORE_FLUSH=sync",
		"STRATA_STORE_SEAL_AFTER=30s",
		"STRATA_AUTO_CREATE_TOPICS=true",
		"STRATA_ETCD_DIAL_TIMEOUT=2s",
		"STRATA_MAX_INFLIGHT_FRAME_BYTES=512MiB",
		"OTHER=ignored",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BrokerName != "broker-b" || cfg.Store.SegmentSize != 64<<20 || !cfg.AutoCreateTopics ||
		cfg.Store.SealAfter.duration() != 30*time.Second || cfg.EtcdDialTimeout.duration() != 2*time.Second ||
		!reflect.DeepEqual(cfg.EtcdEndpoints, []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379"}) {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	bc, err := cfg.brokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if bc.Store.FlushMode != store.FlushSync || bc.Store.SegmentBytes != 64<<20 || bc.MaxMessageBytes != 4<<20 ||
		bc.Remoting.MaxInFlightFrameBytes != 512<<20 {
		t.Fatalf("broker config %+v", bc.Store)
	}
}

func TestConfigErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("segment_sise: 1GiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadNodeConfig(bad, nil); err == nil || !strings.Contains(err.Error(), "segment_sise") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := loadNodeConfig("", []string{"STRATA_STORE_SEGMENT_SIZE=lots"}); err == nil || !strings.Contains(err.Error(), "STRATA_STORE_SEGMENT_SIZE") {
		t.Fatalf("bad size: %v", err)
	}
	cfg := defaultNodeConfig()
	cfg.Store.Flush = "sometimes"
	if _, err := cfg.brokerConfig(); err == nil || !strings.Contains(err.Error(), "async or sync") {
		t.Fatalf("bad flush: %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"1GiB": 1 << 30, "512MiB": 512 << 20, "4MB": 4e6, "1024": 1024, "1.5KiB": 1536} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "-1MiB", "1XB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

func TestTierConfigKeysAndSmallSegments(t *testing.T) {
	cfg, err := loadNodeConfig("../../deployments/broker.yaml", []string{
		"STRATA_TIER_BUCKET=s3://b/p",
		"STRATA_TIER_LOCAL_RETENTION=5s",
		"STRATA_TIER_MAX_LOCAL_BYTES=8MiB",
		"STRATA_TIER_S3_ENDPOINT=http://127.0.0.1:9000",
		"STRATA_TIER_S3_PATH_STYLE=true",
		"STRATA_STORE_SEGMENT_SIZE=64KiB",
	})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := cfg.brokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if bc.BucketURL != "s3://b/p" || bc.LocalRetention != 5*time.Second || bc.MaxLocalBytes != 8<<20 ||
		bc.S3.Endpoint != "http://127.0.0.1:9000" || !bc.S3.UsePathStyle {
		t.Fatalf("tier settings not applied: %+v", bc)
	}
	if bc.Store.MaxMessageBytes > 64<<10 || bc.MaxMessageBytes >= bc.Store.MaxMessageBytes {
		t.Fatalf("message limits %d/%d do not fit 64KiB segments", bc.MaxMessageBytes, bc.Store.MaxMessageBytes)
	}
}

func TestTransactionKeysLoadAndOverride(t *testing.T) {
	cfg, err := loadNodeConfig("../../deployments/broker.yaml", []string{"STRATA_TRANSACTION_CHECK_MAX=3", "STRATA_TRANSACTION_TIMEOUT=2s"})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := cfg.brokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	tx := bc.Transaction
	if tx.CheckMax != 3 || tx.Timeout != 2*time.Second || tx.CheckInterval != 30*time.Second || tx.MaxPending != 2_000_000 ||
		tx.CheckResolution != 100*time.Millisecond {
		t.Fatalf("transaction config %+v", tx)
	}
	cfg.Transaction.CheckMax = -1
	if _, err := cfg.brokerConfig(); err == nil || !strings.Contains(err.Error(), "check_max") {
		t.Fatalf("negative check_max: %v", err)
	}
}

// The slave-read keys of the sample config load, with their defaults and from the
// environment; a negative bound is refused with the key's name.
func TestSlaveReadConfigKeys(t *testing.T) {
	cfg, err := loadNodeConfig("../../deployments/broker.yaml", []string{"STRATA_REPLICATION_LISTEN=127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := cfg.brokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if bc.Replication.SlaveReadEnable || bc.Replication.SlaveReadLagBytes != 256<<20 {
		t.Fatalf("sample slave-read settings: enable %v, lag %d; want off and 256MiB", bc.Replication.SlaveReadEnable, bc.Replication.SlaveReadLagBytes)
	}
	cfg, err = loadNodeConfig("../../deployments/broker.yaml", []string{"STRATA_REPLICATION_LISTEN=127.0.0.1:0",
		"STRATA_REPLICATION_SLAVE_READ_ENABLE=true", "STRATA_REPLICATION_SLAVE_READ_LAG_BYTES=64MiB"})
	if err != nil {
		t.Fatal(err)
	}
	if bc, err = cfg.brokerConfig(); err != nil {
		t.Fatal(err)
	}
	if !bc.Replication.SlaveReadEnable || bc.Replication.SlaveReadLagBytes != 64<<20 {
		t.Fatalf("overridden slave-read settings: enable %v, lag %d", bc.Replication.SlaveReadEnable, bc.Replication.SlaveReadLagBytes)
	}
	cfg.Replication.SlaveReadLagBytes = -1
	if _, err := cfg.brokerConfig(); err == nil || !strings.Contains(err.Error(), "slave_read_lag_bytes") {
		t.Fatalf("negative bound: %v", err)
	}
}
