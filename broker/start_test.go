package broker

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
)

// unreachableMeta is a metadata client whose etcd endpoint refuses connections.
func unreachableMeta(t *testing.T) *meta.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	mc, err := meta.New(context.Background(), meta.Config{Endpoints: []string{"http://" + addr}, Cluster: "test",
		DialTimeout: 300 * time.Millisecond, RequestTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	return mc
}

// TestFailedStartClosesCleanly makes Start fail at each of its stages and checks that it
// returns an error naming the stage (a broker that could not reach etcd used to crash on a
// nil pointer while cleaning up), that Close after it is clean and idempotent, and that
// what Start had opened is released.
func TestFailedStartClosesCleanly(t *testing.T) {
	good := startMeta(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name   string
		mc     *meta.Client
		ctx    context.Context
		mutate func(t *testing.T, c *Config)
		want   string
	}{
		{"bucket", good, context.Background(), func(t *testing.T, c *Config) { c.BucketURL = "ftp://nowhere" }, "cold tier"},
		{"etcd with a bucket", unreachableMeta(t), context.Background(), func(t *testing.T, c *Config) {
			c.BucketURL = "file://" + t.TempDir()
		}, "tier pointer"},
		{"store", good, context.Background(), func(t *testing.T, c *Config) {
			file := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(file, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			c.Store.Dir = filepath.Join(file, "store") // under a regular file
		}, "open store"},
		{"listener", good, context.Background(), func(t *testing.T, c *Config) { c.BrokerListen = busy.Addr().String() }, "broker role"},
		{"etcd", unreachableMeta(t), context.Background(), nil, "cluster view"},
		{"cancelled", good, cancelled, nil, "context canceled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{DataDir: t.TempDir(), NameServerListen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0",
				HTTPListen: "127.0.0.1:0", Store: store.Config{SegmentBytes: 16 << 20}}
			if tc.mutate != nil {
				tc.mutate(t, &cfg)
			}
			b, err := New(cfg, tc.mc)
			if err != nil {
				t.Fatal(err)
			}
			err = b.Start(tc.ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want an error about %q", err, tc.want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := range 2 {
				if err := b.Close(ctx); err != nil {
					t.Fatalf("Close #%d after a failed Start: %v", i+1, err)
				}
			}
			if err := b.Ready(); err == nil {
				t.Fatal("Ready after a failed Start")
			}
			for _, ln := range []net.Listener{b.nsLn, b.brkLn, b.httpLn} {
				if ln == nil {
					continue
				}
				again, err := net.Listen("tcp", ln.Addr().String())
				if err != nil {
					t.Fatalf("listener %s not released: %v", ln.Addr(), err)
				}
				again.Close()
			}
			if b.store != nil {
				rec, err := (&message.Message{Topic: "T", Body: []byte("x")}).AppendEncoded(nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.store.Append(ctx, rec); !errors.Is(err, store.ErrClosed) {
					t.Fatalf("store still open after Close: %v", err)
				}
			}
		})
	}
}
