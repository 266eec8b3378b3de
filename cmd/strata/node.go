package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
)

// node is what runNode needs to run one broker.
type node struct {
	broker broker.Config
	meta   meta.Config
	// etcdHint says what to check when etcd cannot be reached.
	etcdHint string
	// etcdFailed delivers a fatal error of the embedded etcd (strata dev); nil otherwise.
	etcdFailed <-chan error
	banner     func(b *broker.Broker) string
}

// runNode runs one broker until ctx ends (or the embedded etcd fails), then shuts it down
// cleanly: listeners closed, offsets flushed, files closed. Every step of the start ends
// when ctx does.
func runNode(ctx context.Context, n node, stdout io.Writer) error {
	mc, err := meta.New(ctx, n.meta)
	if err != nil {
		return err
	}
	defer mc.Close()
	// The etcd client connects lazily; find out now, in one line, rather than through the
	// first request deep in the start.
	if err := mc.Ping(ctx); err != nil {
		if errors.Is(err, meta.ErrUnreachable) {
			return fmt.Errorf("%w; %s", err, n.etcdHint)
		}
		return err
	}
	b, err := broker.New(n.broker, mc)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err // Start has closed what it opened
	}
	banner := n.banner(b)
	if s := b.SecuritySummary(); s != "" {
		banner += "; " + s
	}
	fmt.Fprintln(stdout, banner)
	stopReload := reloadTLSOnHangup(b)
	defer stopReload()
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-n.etcdFailed:
		slog.Error("embedded etcd failed; shutting the broker down", "err", failed)
	}
	slog.Info("shutting down")
	// Leave a quarter of the hard stop for what follows the close.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout*3/4)
	defer cancel()
	closeErr := b.Close(shutdownCtx)
	if failed != nil {
		return fmt.Errorf("%w; the broker was shut down (close: %v); check the disk under the data directory, then start again", failed, errOrNone(closeErr))
	}
	if closeErr != nil {
		return fmt.Errorf("shutdown: %w", closeErr)
	}
	return nil
}

func errOrNone(err error) any {
	if err == nil {
		return "clean"
	}
	return err
}

func runDev(ctx context.Context, args []string, stdout io.Writer) error {
	if wantsDevCluster(args) {
		return runDevCluster(ctx, args, stdout) // devcluster.go
	}
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	data := fs.String("data", "./data", "data directory: hot store, embedded etcd and the filesystem bucket")
	namesrv := fs.String("namesrv-addr", "127.0.0.1:9876", "name-server listen address")
	brokerAddr := fs.String("broker-addr", "127.0.0.1:10911", "broker listen address")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "HTTP listen address (/healthz, /readyz, /metrics)")
	autoCreate := fs.Bool("auto-create-topics", true, "create a topic on its first send")
	segment := ByteSize(store.DefaultSegmentBytes)
	fs.Var(&segment, "segment-size", "commit-log segment size, e.g. 1MiB")
	var sealAfter Duration
	fs.Var(&sealAfter, "seal-after", "seal a segment once it is this old, e.g. 1s (0: only when full)")
	flush := fs.String("flush", "async", "flush policy: async or sync")
	tf := addTierFlags(fs)
	xf := addTxnFlags(fs)
	timerf := addTimerFlags(fs)
	sf := addNodeSecurityFlags(fs)
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setupLogging(*verbose)
	dir, err := filepath.Abs(*data)
	if err != nil {
		return err
	}
	lock, err := lockDataDir(dir, "--data")
	if err != nil {
		return err
	}
	defer lock.release()
	etcd, err := etcdembed.Start(ctx, filepath.Join(dir, "etcd"))
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	defer etcd.Close()

	nc := defaultNodeConfig()
	nc.DataDir = filepath.Join(dir, "broker")
	nc.NamesrvAddr, nc.BrokerAddr, nc.HTTPAddr = *namesrv, *brokerAddr, *httpAddr
	nc.AutoCreateTopics = *autoCreate
	nc.Store.SegmentSize = segment
	nc.Store.SealAfter = sealAfter
	nc.Store.Flush = *flush
	if err := tf.apply(&nc, dir); err != nil {
		return err
	}
	xf.apply(&nc)
	timerf.apply(&nc)
	if err := sf.apply(&nc); err != nil {
		return err
	}
	bc, err := nc.brokerConfig()
	if err != nil {
		return err
	}
	return runNode(ctx, node{
		broker:     bc,
		meta:       meta.Config{Endpoints: etcd.Endpoints(), Cluster: bc.ClusterName},
		etcdHint:   "the embedded etcd under " + filepath.Join(dir, "etcd") + " does not answer; see the log above",
		etcdFailed: etcd.Err(),
		banner: func(b *broker.Broker) string {
			return fmt.Sprintf("strata dev ready: clients connect to name server %s (broker %s, %s://%s); data in %s",
				b.NameServerAddr(), b.BrokerAddr(), httpScheme(bc), b.HTTPAddr(), dir)
		},
	}, stdout)
}

func runBroker(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	path := fs.String("config", "", "YAML config file (see deployments/broker.yaml); STRATA_* environment variables override it")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setupLogging(*verbose)
	nc, err := loadNodeConfig(*path, os.Environ())
	if err != nil {
		return err
	}
	bc, err := nc.brokerConfig()
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(nc.DataDir)
	if err != nil {
		return err
	}
	lock, err := lockDataDir(dir, "data_dir in the config")
	if err != nil {
		return err
	}
	defer lock.release()
	return runNode(ctx, node{
		broker:   bc,
		meta:     nc.metaConfig(),
		etcdHint: "check that etcd runs and that etcd_endpoints in the config (or STRATA_ETCD_ENDPOINTS) is right",
		banner: func(b *broker.Broker) string {
			return fmt.Sprintf("strata broker %s/%s ready: name server %s, broker %s, http %s, etcd %v",
				bc.ClusterName, bc.BrokerName, b.NameServerAddr(), b.BrokerAddr(), b.HTTPAddr(), nc.EtcdEndpoints)
		},
	}, stdout)
}

func setupLogging(verbose bool) {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
}
