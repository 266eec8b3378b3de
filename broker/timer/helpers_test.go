package timer

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

// fakeClock is a Clock the test moves by hand. Timers fire when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	ch    chan time.Time
	state int // 0 waiting, 1 fired, 2 stopped
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) TimerAt(at time.Time) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: at, ch: make(chan time.Time, 1)}
	if !at.After(c.now) {
		t.state = 1
		t.ch <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.state == 0
	if was {
		t.state = 2
	}
	return was
}

// Advance moves the clock and fires the timers it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.state != 0:
		case !t.at.After(c.now):
			t.state = 1
			t.ch <- c.now
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
}

// Set moves the clock to t (never back).
func (c *fakeClock) Set(t time.Time) {
	if d := t.Sub(c.Now()); d > 0 {
		c.Advance(d)
	}
}

// waitIdle blocks until the fire loop sleeps on a timer the clock has not passed, with no
// wake-up pending: it has seen the time and done what was due.
func (c *fakeClock) waitIdle(tb testing.TB, wake chan struct{}) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		for {
			c.mu.Lock()
			idle := false
			for _, t := range c.timers {
				idle = idle || t.state == 0
			}
			c.mu.Unlock()
			if idle && len(wake) == 0 {
				close(done)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		tb.Fatal("the fire loop did not go idle within 20s")
	}
}

var (
	testHost = netip.MustParseAddrPort("10.0.0.7:10911")
	epoch    = time.UnixMilli(1_800_000_000_000)
)

// harness is a real store with a timer service on a fake clock.
type harness struct {
	t     *testing.T
	dir   string
	st    *store.Store
	svc   *Service
	clock *fakeClock
	cfg   Config
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: newFakeClock(epoch)}
	st, err := store.Open(store.Config{Dir: h.dir + "/store", SegmentBytes: 8 << 20, FlushMode: store.FlushSync})
	if err != nil {
		t.Fatal(err)
	}
	h.st = st
	h.cfg = Config{Dir: h.dir + "/timer", StoreHost: testHost, Clock: h.clock, FlushInterval: time.Hour}
	if mutate != nil {
		mutate(&h.cfg)
	}
	h.open()
	t.Cleanup(func() {
		h.closeService()
		st.Close()
	})
	return h
}

// idle waits until the fire loop has done what is due at the current time.
func (h *harness) idle() {
	h.t.Helper()
	h.clock.waitIdle(h.t, h.svc.wake)
}

func (h *harness) open() {
	h.t.Helper()
	svc, err := Open(context.Background(), h.cfg, StoreLog{Store: h.st})
	if err != nil {
		h.t.Fatal(err)
	}
	h.svc = svc
}

func (h *harness) closeService() {
	if h.svc == nil {
		return
	}
	if err := h.svc.Close(context.Background()); err != nil {
		h.t.Errorf("close timer service: %v", err)
	}
	h.svc = nil
}

func (h *harness) restart() {
	h.t.Helper()
	h.closeService()
	h.open()
}

// schedule sends one message to topic/queue with props through Intercept and Park and
// returns its unique key; it fails the test unless the message is parked.
func (h *harness) schedule(topic string, queue int32, props map[string]string, body string) string {
	h.t.Helper()
	p, ok, err := h.trySchedule(topic, queue, props, body)
	if err != nil || !ok {
		h.t.Fatalf("schedule %v: parked %v, err %v", props, ok, err)
	}
	_ = p
	return props[message.PropertyUniqKey]
}

var uniqSeq int

func (h *harness) trySchedule(topic string, queue int32, props map[string]string, body string) (Parked, bool, error) {
	h.t.Helper()
	if props[message.PropertyUniqKey] == "" {
		uniqSeq++
		props[message.PropertyUniqKey] = fmt.Sprintf("U%08d", uniqSeq)
	}
	p, ok, err := h.svc.Intercept(props, topic, queue)
	if err != nil || !ok {
		return p, ok, err
	}
	m := &message.Message{Topic: p.Topic, QueueID: p.QueueID, BornTimestamp: h.clock.Now().UnixMilli(),
		BornHost: netip.MustParseAddrPort("10.0.0.9:5555"), StoreHost: testHost, Body: []byte(body), Properties: props}
	rec, err := m.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.svc.Park(context.Background(), rec); err != nil {
		h.t.Fatal(err)
	}
	return p, true, nil
}

// waitIndexed waits until every parked record is in the index.
func (h *harness) waitIndexed() {
	h.t.Helper()
	want := h.st.MaxOffset(ParkTopic, 0)
	eventually(h.t, "parked messages indexed", func() bool { return h.svc.Status().Index.IndexedOffset >= want })
}

// delivered returns the messages of topic/queue from offset 0.
func (h *harness) delivered(topic string, queue int32) []*message.Message {
	h.t.Helper()
	res, err := h.st.Read(context.Background(), store.ReadRequest{Topic: topic, QueueID: queue, Offset: 0, MaxMessages: 1 << 20, MaxBytes: 1 << 30})
	if err != nil {
		h.t.Fatal(err)
	}
	if res.Status != store.ReadFound {
		return nil
	}
	msgs, err := message.DecodeAll(res.Records)
	if err != nil {
		h.t.Fatal(err)
	}
	return msgs
}

// waitDelivered waits until topic/queue holds n messages.
func (h *harness) waitDelivered(topic string, queue int32, n int) []*message.Message {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for have := h.st.MaxOffset(topic, queue); have < int64(n); {
		var err error
		if have, err = h.st.WaitForAppend(ctx, topic, queue, have); err != nil {
			h.t.Fatalf("%s/%d holds %d messages, want %d: %v", topic, queue, have, n, err)
		}
	}
	return h.delivered(topic, queue)
}

// eventually polls cond with a deadline (for state that has no event to wait on).
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
