package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
)

// runNode runs one broker until ctx ends, then shuts it down cleanly: listeners closed,
// offsets flushed, files closed.
func runNode(ctx context.Context, bc broker.Config, endpoints []string, stdout io.Writer, banner func(b *broker.Broker) string) error {
	mc, err := meta.New(ctx, meta.Config{Endpoints: endpoints, Cluster: bc.ClusterName})
	if err != nil {
		return err
	}
	defer mc.Close()
	b, err := broker.New(bc, mc)
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		_ = b.Close(context.Background())
		return err
	}
	fmt.Fprintln(stdout, banner(b))
	<-ctx.Done()
	slog.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Close(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func runDev(ctx context.Context, args []string, stdout io.Writer) error {
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
	timerf := addTimerFlags(fs)
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	setupLogging(*verbose)
	dir, err := filepath.Abs(*data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
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
	timerf.apply(&nc)
	bc, err := nc.brokerConfig()
	if err != nil {
		return err
	}
	return runNode(ctx, bc, etcd.Endpoints(), stdout, func(b *broker.Broker) string {
		return fmt.Sprintf("strata dev ready: clients connect to name server %s (broker %s, http://%s); data in %s",
			b.NameServerAddr(), b.BrokerAddr(), b.HTTPAddr(), dir)
	})
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
	return runNode(ctx, bc, nc.EtcdEndpoints, stdout, func(b *broker.Broker) string {
		return fmt.Sprintf("strata broker %s/%s ready: name server %s, broker %s, http %s, etcd %v",
			bc.ClusterName, bc.BrokerName, b.NameServerAddr(), b.BrokerAddr(), b.HTTPAddr(), nc.EtcdEndpoints)
	})
}

func setupLogging(verbose bool) {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
}
