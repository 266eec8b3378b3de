package txn

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

var (
	testStoreHost = netip.MustParseAddrPort("10.0.0.2:10911")
	testBornHost  = netip.MustParseAddrPort("10.0.0.1:5555")
)

const testGroup = "pg-orders"

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// recordingChecker records check-backs; answer (if set) decides what CheckBack returns.
type recordingChecker struct {
	mu     sync.Mutex
	reqs   []CheckRequest
	answer func(CheckRequest) error
}

func (c *recordingChecker) CheckBack(_ context.Context, req CheckRequest) error {
	c.mu.Lock()
	c.reqs = append(c.reqs, req)
	answer := c.answer
	c.mu.Unlock()
	if answer != nil {
		return answer(req)
	}
	return nil
}

func (c *recordingChecker) take() []CheckRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.reqs
	c.reqs = nil
	return out
}

// env is a Service over a real store in a temp dir, with a fake clock and no check loop.
type env struct {
	t       *testing.T
	dir     string
	st      *store.Store
	svc     *Service
	check   *recordingChecker
	clock   *fakeClock
	cfg     Config
	route   Router
	storeCf store.Config
}

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), check: &recordingChecker{}, clock: &fakeClock{now: time.Now()}}
	e.cfg = Config{Timeout: 6 * time.Second, CheckInterval: 30 * time.Second, CheckMax: 15, StoreHost: testStoreHost, noLoop: true,
		Logger: slog.New(slog.DiscardHandler)}
	if mutate != nil {
		mutate(&e.cfg)
	}
	e.storeCf = store.Config{Dir: e.dir, SegmentBytes: 8 << 20}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	st, err := store.Open(e.storeCf)
	if err != nil {
		e.t.Fatal(err)
	}
	e.st = st
	cfg := e.cfg
	cfg.Clock = e.clock
	svc, err := Open(context.Background(), cfg, Deps{Log: StoreLog{Store: st}, Checker: e.check, Route: e.route})
	if err != nil {
		st.Close()
		e.t.Fatal(err)
	}
	e.svc = svc
}

func (e *env) close() {
	if e.svc != nil {
		if err := e.svc.Close(); err != nil {
			e.t.Errorf("close service: %v", err)
		}
		e.svc = nil
	}
	if e.st != nil {
		if err := e.st.Close(); err != nil {
			e.t.Errorf("close store: %v", err)
		}
		e.st = nil
	}
}

// restart closes and reopens the service and the store, as a clean broker restart does.
func (e *env) restart() {
	e.t.Helper()
	e.close()
	e.open()
}

// crash closes the store without the service's last checkpoint, as kill -9 leaves it (the
// store's written bytes survive a process crash).
func (e *env) crash() {
	e.t.Helper()
	e.svc.cancel()
	<-e.svc.done
	e.svc.m.unregister()
	e.svc = nil
	if err := e.st.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.st = nil
}

func (e *env) message(topic string, q int32, body string, props map[string]string) *message.Message {
	p := map[string]string{message.PropertyUniqKey: "UNIQ-" + body, message.PropertyTransactionPrep: "true", message.PropertyProducerGroup: testGroup}
	for k, v := range props {
		p[k] = v
	}
	return &message.Message{Topic: topic, QueueID: q, SysFlag: message.FlagTransactionPrepared, BornTimestamp: e.clock.Now().UnixMilli(),
		BornHost: testBornHost, StoreHost: testStoreHost, Body: []byte(body), Properties: p}
}

func (e *env) prepare(topic string, q int32, body string, props map[string]string) PrepareResult {
	e.t.Helper()
	res, err := e.svc.Prepare(context.Background(), e.message(topic, q, body, props), testGroup)
	if err != nil {
		e.t.Fatalf("prepare %s: %v", body, err)
	}
	return res
}

func endReq(p PrepareResult, d Decision) EndRequest {
	return EndRequest{ProducerGroup: testGroup, TranStateTableOffset: p.QueueOffset, CommitLogOffset: p.CommitLogOffset, Decision: d,
		MsgID: p.TransactionID, TransactionID: p.TransactionID}
}

func (e *env) end(p PrepareResult, d Decision) EndResult {
	e.t.Helper()
	res, err := e.svc.End(context.Background(), endReq(p, d))
	if err != nil {
		e.t.Fatalf("end %v: %v", d, err)
	}
	return res
}

// queue reads every message of (topic, q).
func (e *env) queue(topic string, q int32) []*message.Message {
	e.t.Helper()
	var out []*message.Message
	off := int64(0)
	for {
		recs, next, err := StoreLog{Store: e.st}.ReadQueue(context.Background(), topic, q, off, 1000)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		for _, r := range recs {
			m, _, err := message.Decode(r)
			if err != nil {
				e.t.Fatal(err)
			}
			out = append(out, m)
		}
		off = next
	}
}

func bodiesOf(ms []*message.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	sort.Strings(out)
	return out
}

// lastSegment is the path and base position of the store's last commit-log segment.
func (e *env) lastSegment() (string, int64) {
	e.t.Helper()
	names, err := filepath.Glob(filepath.Join(e.dir, "commitlog", "*.log"))
	if err != nil || len(names) == 0 {
		e.t.Fatalf("no segment: %v", err)
	}
	sort.Strings(names)
	last := names[len(names)-1]
	var base int64
	for _, c := range filepath.Base(last)[:20] {
		base = base*10 + int64(c-'0')
	}
	return last, base
}

// cutLog truncates the commit log at position pos, as a crash that kept only the bytes
// before it would leave it.
func (e *env) cutLog(pos int64) {
	e.t.Helper()
	path, base := e.lastSegment()
	if err := os.Truncate(path, pos-base); err != nil {
		e.t.Fatal(err)
	}
}

// at sets the clock to d after p's half message was stored.
func (e *env) at(p PrepareResult, d time.Duration) {
	e.clock.mu.Lock()
	e.clock.now = time.UnixMilli(p.StoreTimestamp).Add(d)
	e.clock.mu.Unlock()
}
