package broker

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/remoting/tlstest"
	"github.com/stratamq/strata/broker/store"
)

// BenchmarkSecuredSend measures sync sends of 1 KiB messages over loopback, 16 connections
// sending in parallel, to four brokers that differ only in their protection: plain, ACL
// (signature verified and permission checked on every send), TLS, and both. The brokers
// take turns, a round of 1024 sends each per iteration, so load from elsewhere on the
// machine falls on all four alike; the metrics are each broker's msgs/s and its throughput
// relative to plain's (acl/plain = 0.9: ACL costs 10%).
//
//	go test -run=NONE -bench=BenchmarkSecuredSend -benchtime=200x ./broker/
func BenchmarkSecuredSend(b *testing.B) {
	ca := tlstest.NewCA(b, "bench CA")
	pair := ca.Server("broker")
	trust, err := remoting.ClientTLSConfig{CAFile: ca.CertFile}.Load()
	if err != nil {
		b.Fatal(err)
	}
	type target struct {
		name    string
		clients []*remoting.Client
		elapsed time.Duration
		sent    int
	}
	const conns, perConn = 16, 64
	var targets []*target
	for _, c := range []struct {
		name     string
		acl, tls bool
	}{{"plain", false, false}, {"acl", true, false}, {"tls", false, true}, {"acl+tls", true, true}} {
		cfg := Config{DataDir: b.TempDir(), NameServerListen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", HTTPListen: "-",
			Store: store.Config{SegmentBytes: 256 << 20}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		var dialCfg remoting.ClientConfig
		if c.acl {
			cfg.ACLEnabled = true
			dialCfg.Credentials = remoting.Credentials{AccessKey: "bench", SecretKey: "bench-secret"}
			cfg.ACLAdmin = dialCfg.Credentials
		}
		if c.tls {
			cfg.TLS = &remoting.ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile}
			dialCfg.TLS = trust
		}
		br := startBenchBroker(b, cfg)
		ns := benchDial(b, br.NameServerAddr(), dialCfg)
		if resp, err := ns.Invoke(context.Background(), remoting.NewRequest(remoting.CodeUpdateAndCreateTopic,
			remoting.ExtFields{"topic": "bench", "readQueueNums": "4", "writeQueueNums": "4", "perm": "6"}, nil)); err != nil || resp.Code != remoting.RespSuccess {
			b.Fatalf("%s: create topic: %v %v", c.name, resp, err)
		}
		t := &target{name: c.name}
		for range conns {
			t.clients = append(t.clients, benchDial(b, br.BrokerAddr(), dialCfg))
		}
		targets = append(targets, t)
	}
	body := make([]byte, 1024)
	round := func(t *target) {
		start := time.Now()
		var wg sync.WaitGroup
		for _, cl := range t.clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perConn {
					ext := sendExt("bench")
					ext["queueId"] = strconv.Itoa(i % 4)
					resp, err := cl.Invoke(context.Background(), remoting.NewRequest(remoting.CodeSendMessage, ext, body))
					if err != nil || resp.Code != remoting.RespSuccess {
						b.Errorf("%s: send: %v %v", t.name, resp, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		t.elapsed += time.Since(start)
		t.sent += conns * perConn
	}
	for _, t := range targets {
		round(t) // warm up: connections, handshakes, first segment
		t.elapsed, t.sent = 0, 0
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range targets {
			round(targets[(i+j)%len(targets)]) // each goes first in turn
		}
	}
	rate := func(t *target) float64 { return float64(t.sent) / t.elapsed.Seconds() }
	plain := rate(targets[0])
	for _, t := range targets {
		b.ReportMetric(rate(t), t.name+"_msgs/s")
		if t != targets[0] {
			b.ReportMetric(rate(t)/plain, t.name+"/plain")
		}
	}
}

func benchDial(b *testing.B, addr string, cfg remoting.ClientConfig) *remoting.Client {
	b.Helper()
	c, err := remoting.Dial(context.Background(), addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func startBenchBroker(b *testing.B, cfg Config) *Broker {
	b.Helper()
	br, err := New(cfg, startMeta(b))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := br.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = br.Close(cctx)
	})
	return br
}
