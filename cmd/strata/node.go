package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	tuneGC(os.LookupEnv)
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

func devCmd() *cobra.Command {
	return leaf("dev", "run everything in one process: embedded etcd, one broker, a filesystem bucket", `
Runs everything in one process with no outside service: an embedded etcd, one broker and a
filesystem bucket under --data. It prints a ready line with the addresses once it serves.`, nil, devFlags)
}

// devOptions are `strata dev`'s flags.
type devOptions struct {
	data, namesrv, brokerAddr, httpAddr, flush string
	autoCreate, verbose                        bool
	segment                                    ByteSize
	sealAfter                                  Duration
	tier                                       *tierFlags
	txn                                        *txnFlags
	timer                                      *timerFlags
	sec                                        *nodeSecurityFlags
	cluster                                    devClusterOptions
}

func devFlags(fs *pflag.FlagSet) runFunc {
	o := &devOptions{segment: ByteSize(store.DefaultSegmentBytes)}
	fs.StringVar(&o.data, "data", "./data", "data directory: hot store, embedded etcd and the filesystem bucket")
	fs.StringVar(&o.namesrv, "namesrv-addr", "127.0.0.1:9876", "name-server listen address")
	fs.StringVar(&o.brokerAddr, "broker-addr", "127.0.0.1:10911", "broker listen address")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address (/healthz, /readyz, /metrics, the console)")
	fs.BoolVar(&o.autoCreate, "auto-create-topics", true, "create a topic on its first send")
	fs.Var(&o.segment, "segment-size", "commit-log segment size, e.g. 1MiB")
	fs.Var(&o.sealAfter, "seal-after", "seal a segment once it is this old, e.g. 1s (0: only when full)")
	fs.StringVar(&o.flush, "flush", "async", "flush policy: async or sync")
	o.tier = addTierFlags(fs)
	o.txn = addTxnFlags(fs)
	o.timer = addTimerFlags(fs)
	o.sec = addNodeSecurityFlags(fs)
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "log at debug level")
	fs.IntVar(&o.cluster.groups, "groups", 1, "broker groups (broker-a, broker-b, ...); more than one group or member runs each member as a child process")
	fs.IntVar(&o.cluster.replicas, "replicas", 1, "members per group, 1-3: one master and up to two slaves")
	fs.StringVar(&o.cluster.mode, "replication", "", "sync or async (default sync when --replicas > 1)")
	o.cluster.electionTTL = Duration(5 * time.Second)
	fs.Var(&o.cluster.electionTTL, "election-ttl", "with --groups/--replicas: how long a dead master keeps its group's election")
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		if o.cluster.wanted() {
			return runDevCluster(ctx, o, stdout) // devcluster.go
		}
		return runDev(ctx, stdout, o)
	}
}

// openDevData locks strata dev's data directory and starts the embedded etcd in it; release
// stops etcd and unlocks.
func openDevData(ctx context.Context, data string) (dir string, etcd *etcdembed.Server, release func(), err error) {
	if dir, err = filepath.Abs(data); err != nil {
		return "", nil, nil, err
	}
	lock, err := lockDataDir(dir, "--data")
	if err != nil {
		return "", nil, nil, err
	}
	if etcd, err = etcdembed.Start(ctx, filepath.Join(dir, "etcd")); err != nil {
		lock.release()
		return "", nil, nil, fmt.Errorf("start embedded etcd: %w", err)
	}
	return dir, etcd, func() { etcd.Close(); lock.release() }, nil
}

func runDev(ctx context.Context, stdout io.Writer, o *devOptions) error {
	setupLogging(o.verbose)
	dir, etcd, release, err := openDevData(ctx, o.data)
	if err != nil {
		return err
	}
	defer release()

	nc := defaultNodeConfig()
	nc.DataDir = filepath.Join(dir, "broker")
	nc.NamesrvAddr, nc.BrokerAddr, nc.HTTPAddr = o.namesrv, o.brokerAddr, o.httpAddr
	nc.AutoCreateTopics = o.autoCreate
	nc.Store.SegmentSize = o.segment
	nc.Store.SealAfter = o.sealAfter
	nc.Store.Flush = o.flush
	if err := o.tier.apply(&nc, dir); err != nil {
		return err
	}
	o.txn.apply(&nc)
	o.timer.apply(&nc)
	if err := o.sec.apply(&nc); err != nil {
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

func brokerCmd() *cobra.Command {
	cmd := leaf("broker", "run a cluster node from a YAML config (--config FILE); broker status: a broker's runtime info", `
Runs a cluster node that joins an external etcd and an S3 bucket, configured by a YAML file
(deployments/broker.yaml documents every key); STRATA_* environment variables override it.

`+"`strata broker status`"+` reports a running broker instead.`, nil,
		func(fs *pflag.FlagSet) runFunc {
			path := fs.String("config", "", "YAML config file (see deployments/broker.yaml); STRATA_* environment variables override it")
			verbose := fs.BoolP("verbose", "v", false, "log at debug level")
			return func(ctx context.Context, _ []string, stdout io.Writer) error {
				return runBroker(ctx, stdout, *path, *verbose)
			}
		})
	cmd.AddCommand(brokerStatusCmd())
	return cmd
}

func runBroker(ctx context.Context, stdout io.Writer, path string, verbose bool) error {
	setupLogging(verbose)
	nc, err := loadNodeConfig(path, os.Environ())
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
