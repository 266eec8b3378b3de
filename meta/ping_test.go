package meta

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestPingAnswersWhenEtcdServes(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	if err := c.Ping(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// silentEtcd is a TCP listener that accepts connections and never answers; accepted is
// signalled for each connection.
func silentEtcd(t *testing.T) (addr string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 16)
	go func() {
		var held []net.Conn
		defer func() {
			for _, nc := range held {
				nc.Close()
			}
		}()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, nc)
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ln.Addr().String(), ch
}

// TestPingNamesTheEndpointsItTried covers the two ways etcd can be missing: nothing listens
// (connection refused), and something accepts the connection but never answers.
func TestPingNamesTheEndpointsItTried(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	silent, _ := silentEtcd(t)
	for name, addr := range map[string]string{"refused": closed, "silent": silent} {
		t.Run(name, func(t *testing.T) {
			url := "http://" + addr
			c, err := New(testCtx(t), Config{Endpoints: []string{url}, Cluster: "test", DialTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Ping(testCtx(t))
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "within 300ms") {
				t.Fatalf("Ping = %v; want ErrUnreachable naming %s and the 300ms bound", err, url)
			}
		})
	}
}

// TestPingEndsWithItsContext cancels a Ping that waits on a silent etcd with a long timeout.
func TestPingEndsWithItsContext(t *testing.T) {
	addr, accepted := silentEtcd(t)
	c, err := New(testCtx(t), Config{Endpoints: []string{"http://" + addr}, Cluster: "test", DialTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		<-accepted // Ping is waiting on the connection
		cancel()
	}()
	if err := c.Ping(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("Ping after cancel = %v; want context.Canceled, not ErrUnreachable", err)
	}
}
