package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
)

// firstWrite signals when something is first written to it (runNode's banner).
type firstWrite struct {
	once sync.Once
	c    chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.c) })
	return len(p), nil
}

// TestNodeStopsWhenEmbeddedEtcdFails hands runNode an embedded etcd's error, as strata dev
// does when etcd hits a Fatal: the broker must shut down and runNode return the error (a
// non-zero exit) rather than go on serving without its metadata.
func TestNodeStopsWhenEmbeddedEtcdFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	etcd, err := etcdembed.Start(ctx, filepath.Join(t.TempDir(), "etcd"), etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	failed := make(chan error, 1)
	ready := &firstWrite{c: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- runNode(ctx, node{
			broker: broker.Config{DataDir: t.TempDir(), NameServerListen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0",
				HTTPListen: "-", Store: store.Config{SegmentBytes: 16 << 20}},
			meta:       meta.Config{Endpoints: etcd.Endpoints(), Cluster: "test"},
			etcdFailed: failed,
			banner:     func(*broker.Broker) string { return "ready" },
		}, ready)
	}()
	select {
	case <-ready.c:
	case err := <-done:
		t.Fatalf("runNode ended before it served: %v", err)
	}
	boom := errors.New("embedded etcd stopped on a fatal error: failed to open backend")
	failed <- boom
	err = <-done
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "the broker was shut down (close: clean)") {
		t.Fatalf("runNode after the etcd failure = %v", err)
	}
}
