package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
)

// Helpers around the official RocketMQ Go client (v2.1.2), the reference client.

func newProducer(t testing.TB, namesrv string, opts ...producer.Option) interface {
	SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
	SendAsync(context.Context, func(context.Context, *primitive.SendResult, error), ...*primitive.Message) error
	SendOneWay(context.Context, ...*primitive.Message) error
	Shutdown() error
} {
	t.Helper()
	opts = append([]producer.Option{
		producer.WithNameServer(primitive.NamesrvAddr{namesrv}),
		producer.WithGroupName(fmt.Sprintf("pg-%s-%d", t.Name(), time.Now().UnixNano())),
		// Its own instance name, so it never shares the client object of a consumer in this
		// process (v2.1.2 shares one per instance name and races on it).
		producer.WithInstanceName(fmt.Sprintf("p-%d", time.Now().UnixNano())),
		producer.WithRetry(2),
	}, opts...)
	p, err := producer.NewDefaultProducer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("start producer: %v", err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

// received collects message bodies from consumers, counting duplicates.
type received struct {
	mu     sync.Mutex
	counts map[string]int
	by     map[string]map[string]bool // consumer → bodies
	tags   map[string]string
	notify chan struct{}
}

func newReceived() *received {
	return &received{counts: map[string]int{}, by: map[string]map[string]bool{}, tags: map[string]string{}, notify: make(chan struct{}, 1)}
}

func (r *received) add(who string, msgs ...*primitive.MessageExt) {
	r.mu.Lock()
	for _, m := range msgs {
		b := string(m.Body)
		r.counts[b]++
		if r.by[who] == nil {
			r.by[who] = map[string]bool{}
		}
		r.by[who][b] = true
		r.tags[b] = m.GetTags()
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// waitFor waits until every body in want has arrived, or fails after timeout.
func (r *received) waitFor(t testing.TB, want []string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		missing := 0
		for _, w := range want {
			if r.counts[w] == 0 {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 {
			return
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("%d of %d messages not received within %v", missing, len(want), timeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (r *received) duplicates() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var d []string
	for b, n := range r.counts {
		if n > 1 {
			d = append(d, b)
		}
	}
	return d
}

func (r *received) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.counts)
}

type pushConsumer interface {
	Subscribe(string, consumer.MessageSelector, func(context.Context, ...*primitive.MessageExt) (consumer.ConsumeResult, error)) error
	Start() error
	Shutdown() error
}

// startPushConsumer starts a push consumer that records into r under the name who.
func startPushConsumer(t testing.TB, namesrv, group, topic, expr, who string, r *received, opts ...consumer.Option) (pushConsumer, func() int) {
	t.Helper()
	opts = append([]consumer.Option{
		consumer.WithNameServer(primitive.NamesrvAddr{namesrv}),
		consumer.WithGroupName(group),
		consumer.WithInstance(who),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
	}, opts...)
	c, err := consumer.NewPushConsumer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	sel := consumer.MessageSelector{Type: consumer.TAG, Expression: expr}
	if err := c.Subscribe(topic, sel, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		r.add(who, msgs...)
		return consumer.ConsumeSuccess, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("start consumer %s: %v", who, err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { _ = c.Shutdown() }) })
	// assigned counts the topic's queues the consumer holds (its retry topic's aside).
	assigned := func() int {
		n := 0
		for mq := range c.GetConsumerRunningInfo(false).MQTable {
			if mq.Topic == topic {
				n++
			}
		}
		return n
	}
	return c, assigned
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i)
	}
	return out
}

// traceConfig is a WithTrace config for the official client. The client keeps one trace
// client per process (instance INNER_TRACE_CLIENT_DEFAULT) that it never shuts down, and
// refuses a second one with other name servers, so every test of this process reaches its
// name server through one forwarding address (traceNamesrvProxy) that points at the current
// test's name server.
func traceConfig(t testing.TB, namesrv, group string) *primitive.TraceConfig {
	t.Helper()
	return &primitive.TraceConfig{GroupName: group, Access: primitive.Local, NamesrvAddrs: []string{traceNamesrvProxy(t, namesrv)}}
}

var traceProxy struct {
	once   sync.Once
	addr   string
	err    error
	mu     sync.Mutex
	target string
}

// traceNamesrvProxy points the process's trace name-server forwarder at namesrv and returns
// its address. Tests of this package do not run in parallel, so one target at a time is enough.
func traceNamesrvProxy(t testing.TB, namesrv string) string {
	t.Helper()
	traceProxy.once.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			traceProxy.err = err
			return
		}
		traceProxy.addr = ln.Addr().String()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				traceProxy.mu.Lock()
				target := traceProxy.target
				traceProxy.mu.Unlock()
				go forward(c, target)
			}
		}()
	})
	if traceProxy.err != nil {
		t.Fatal(traceProxy.err)
	}
	traceProxy.mu.Lock()
	traceProxy.target = namesrv
	traceProxy.mu.Unlock()
	return traceProxy.addr
}

// forward copies bytes both ways between c and a new connection to target.
func forward(c net.Conn, target string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}
