package timer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

func TestDelayLevelFiresAtDueNeverEarly(t *testing.T) {
	h := newHarness(t, nil)
	uniq := h.schedule("orders", 2, map[string]string{message.PropertyDelayLevel: "3", message.PropertyTags: "TagA",
		message.PropertyKeys: "k1 k2", "custom": "v"}, "hello")
	h.waitIndexed()
	h.clock.Advance(10*time.Second - time.Millisecond)
	h.idle()
	if n := h.st.MaxOffset("orders", 2); n != 0 {
		t.Fatalf("delivered %d messages 1ms before the 10s of level 3", n)
	}
	h.clock.Advance(time.Millisecond)
	got := h.waitDelivered("orders", 2, 1)[0]
	p := got.Properties
	if string(got.Body) != "hello" || got.QueueID != 2 || p[message.PropertyUniqKey] != uniq || p[message.PropertyTags] != "TagA" ||
		p[message.PropertyKeys] != "k1 k2" || p["custom"] != "v" {
		t.Fatalf("delivered copy %+v", got)
	}
	// RocketMQ 4's schedule service: DELAY goes, REAL_TOPIC and REAL_QID stay.
	if _, ok := p[message.PropertyDelayLevel]; ok || p[message.PropertyRealTopic] != "orders" || p[message.PropertyRealQueueID] != "2" {
		t.Fatalf("delivered properties %v", p)
	}
	if _, ok := p[PropertyTimerOutMs]; ok {
		t.Fatalf("delivered copy of a delay level keeps %s: %v", PropertyTimerOutMs, p)
	}
	if got.StoreHost != testHost {
		t.Fatalf("store host %v", got.StoreHost)
	}
	// Lookups by key and unique key find the delivered copy on its real topic (the store
	// indexes keys just after the record becomes readable).
	for _, k := range []string{uniq, "k2"} {
		eventually(t, "lookup of "+k, func() bool {
			hits, err := h.st.LookupKey("orders", k, 0, 1<<62, 10)
			return err == nil && len(hits) == 1 && hits[0].QueueID == 2
		})
	}
	// The copy is readable a moment before its append returns to the fire loop.
	eventually(t, "the fired count", func() bool { return h.svc.Status().Fired == 1 })
	if st := h.svc.Status(); st.Pending != 0 || st.Scheduled != 1 {
		t.Fatalf("status %+v", st)
	}
}

func TestDeliveryTimesFireInOrder(t *testing.T) {
	h := newHarness(t, nil)
	nowMs := epoch.UnixMilli()
	type want struct {
		uniq string
		due  int64
	}
	var ws []want
	add := func(props map[string]string, due int64) {
		ws = append(ws, want{h.schedule("t", 0, props, "b"), due})
	}
	add(map[string]string{PropertyTimerDeliverMs: strconv.FormatInt(nowMs+3000, 10)}, nowMs+3000)
	add(map[string]string{PropertyTimerDelaySec: "2"}, nowMs+2000)
	add(map[string]string{PropertyTimerDelayMs: "1500"}, nowMs+1500)
	add(map[string]string{PropertyStartDeliverTime: strconv.FormatInt(nowMs+2500, 10)}, nowMs+2500)
	add(map[string]string{PropertyTimerDelayMs: "1"}, nowMs+1)
	h.waitIndexed()
	fired := 0
	for ms := int64(1); ms <= 3251; ms += 250 {
		h.clock.Set(time.UnixMilli(nowMs + ms))
		due := 0
		for _, w := range ws {
			if w.due <= nowMs+ms {
				due++
			}
		}
		if due > fired {
			h.waitDelivered("t", 0, due)
			fired = due
		}
		h.idle()
		if n := h.st.MaxOffset("t", 0); n != int64(due) {
			t.Fatalf("at +%dms %d delivered, %d due", ms, n, due)
		}
	}
	got := h.delivered("t", 0)
	byUniq := map[string]*message.Message{}
	for _, m := range got {
		byUniq[m.UniqKey()] = m
	}
	for _, w := range ws {
		m := byUniq[w.uniq]
		if m == nil || m.Properties[PropertyTimerDequeueMs] < strconv.FormatInt(w.due, 10) {
			t.Fatalf("timer %s due %d: delivered %+v", w.uniq, w.due, m)
		}
		// RocketMQ 5's timer wheel: REAL_TOPIC / REAL_QID go, the timer times stay.
		p := m.Properties
		if p[message.PropertyRealTopic] != "" || p[PropertyTimerOutMs] != strconv.FormatInt(w.due, 10) ||
			p[PropertyTimerEnqueueMs] == "" || p[PropertyTimerDequeueMs] == "" {
			t.Fatalf("delivered properties %v", p)
		}
	}
	for i := 1; i < len(got); i++ {
		a, _ := strconv.ParseInt(got[i-1].Properties[PropertyTimerOutMs], 10, 64)
		b, _ := strconv.ParseInt(got[i].Properties[PropertyTimerOutMs], 10, 64)
		if a > b {
			t.Fatalf("fired out of due order: %d before %d", a, b)
		}
	}
}

func TestRestartFiresEachTimerOnce(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MemtableEntries = 50 })
	const n = 300
	for i := range n {
		h.schedule("r", 0, map[string]string{PropertyTimerDelayMs: strconv.Itoa(1000 + 10*i)}, fmt.Sprint(i))
	}
	h.waitIndexed()
	if err := h.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance((1000 + 10*n/2) * time.Millisecond)
	h.waitDelivered("r", 0, n/2+1)
	h.restart()
	if st := h.svc.Status(); st.Pending != n/2-1 || st.Index.RebuiltFrom != -1 {
		t.Fatalf("after restart: pending %d (want %d), rebuilt from %d", st.Pending, n/2-1, st.Index.RebuiltFrom)
	}
	h.clock.Advance(time.Duration(10*n) * time.Millisecond)
	got := h.waitDelivered("r", 0, n)
	h.idle()
	if m := h.st.MaxOffset("r", 0); m != n {
		t.Fatalf("%d delivered, want %d (duplicates after a clean restart)", m, n)
	}
	seen := map[string]bool{}
	for _, m := range got {
		if seen[string(m.Body)] {
			t.Fatalf("timer %s fired twice", m.Body)
		}
		seen[string(m.Body)] = true
	}
}

func TestIndexRebuiltFromTheLog(t *testing.T) {
	for _, damage := range []string{"deleted", "corrupt manifest", "truncated run"} {
		t.Run(damage, func(t *testing.T) {
			h := newHarness(t, nil)
			const n = 40
			for i := range n {
				h.schedule("x", 0, map[string]string{PropertyTimerDelayMs: strconv.Itoa(100 * (i + 1))}, fmt.Sprint(i))
			}
			h.waitIndexed()
			h.clock.Advance(100 * n / 2 * time.Millisecond)
			h.waitDelivered("x", 0, n/2)
			h.closeService()
			damageIndex(t, h.cfg.Dir, damage)
			h.open()
			if st := h.svc.Status(); st.Index.RebuiltFrom < 0 {
				t.Fatalf("index was not rebuilt: %+v", st.Index)
			}
			h.clock.Advance(100 * n * time.Millisecond)
			got := h.waitDelivered("x", 0, n)
			h.idle()
			if len(got) != n || h.st.MaxOffset("x", 0) != n {
				t.Fatalf("%d delivered after the rebuild, want %d", h.st.MaxOffset("x", 0), n)
			}
		})
	}
}

func TestManyTimersThroughRunsAndCompaction(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MemtableEntries = 1000; c.MaxHeapEntries = 500 })
	const n = 10000
	recs := make([][]byte, 0, 500)
	for i := range n {
		// Delays of 1..n ms in a scrambled order.
		delay := 1 + (i*7919)%n
		props := map[string]string{PropertyTimerDelayMs: strconv.Itoa(delay), message.PropertyUniqKey: fmt.Sprintf("M%06d", i)}
		p, ok, err := h.svc.Intercept(props, "many", int32(i%4))
		if !ok || err != nil {
			t.Fatal(ok, err)
		}
		m := &message.Message{Topic: p.Topic, Body: []byte(strconv.Itoa(delay)), Properties: props, StoreHost: testHost}
		rec, _ := m.Encode()
		if recs = append(recs, rec); len(recs) == cap(recs) {
			if _, err := h.svc.Park(context.Background(), recs...); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
			if i%2500 == 2499 {
				h.waitIndexed()
				if err := h.svc.Sync(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	h.waitIndexed()
	if err := h.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := h.svc.Status(); st.Pending != n || st.PendingByHorizon[0].Count != n {
		t.Fatalf("pending %d (%v), want %d", st.Pending, st.PendingByHorizon, n)
	}
	// The delays are exactly 1..n ms: after k seconds, 1000k have fired and no other.
	delivered := func() (int, int) {
		total, maxDelay := 0, 0
		for q := int32(0); q < 4; q++ {
			for _, m := range h.delivered("many", q) {
				delay, _ := strconv.Atoi(string(m.Body))
				total, maxDelay = total+1, max(maxDelay, delay)
			}
		}
		return total, maxDelay
	}
	for k := 1; k <= n/1000; k++ {
		h.clock.Advance(time.Second)
		eventually(t, "the timers of one more second fired", func() bool {
			var n int64
			for q := int32(0); q < 4; q++ {
				n += h.st.MaxOffset("many", q)
			}
			return n >= int64(1000*k)
		})
		h.idle()
		if got, maxDelay := delivered(); got != 1000*k || maxDelay > 1000*k {
			t.Fatalf("after %ds: %d delivered (want %d), longest delay %dms", k, got, 1000*k, maxDelay)
		}
		// Timers parked due within the lookahead went straight to the heap; past them the
		// loader keeps it within its bound, plus one 100ms load step.
		if hp := h.svc.Status().Index.HeapEntries; k >= 2 && hp > 500+100 {
			t.Fatalf("heap holds %d entries, bound 500 plus one load step: %+v", hp, h.svc.Status())
		}
	}
	eventually(t, "the fired count", func() bool { return h.svc.Status().Fired == n })
	if st := h.svc.Status(); st.Pending != 0 {
		t.Fatalf("status after firing: %+v", st)
	}
	// Fired entries leave the index once a checkpoint covers them: the one owed since the
	// last batch is written a CheckpointInterval later.
	h.clock.Advance(time.Second)
	h.idle()
	if err := h.svc.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := h.svc.Status(); st.Index.Runs != 0 {
		t.Fatalf("%d runs left after everything fired and was checkpointed", st.Index.Runs)
	}
}

func TestRefusedSchedules(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxDelay = time.Hour })
	for _, props := range []map[string]string{
		{PropertyTimerDelaySec: "3601"},
		{PropertyTimerDelayMs: "3600001"},
		{PropertyTimerDeliverMs: strconv.FormatInt(epoch.Add(2*time.Hour).UnixMilli(), 10)},
		{PropertyTimerDelaySec: "99999999999999999"},
	} {
		if _, ok, err := h.trySchedule("t", 0, props, "x"); ok || !errors.Is(err, ErrTooFar) {
			t.Errorf("%v: parked %v err %v, want ErrTooFar", props, ok, err)
		}
	}
	for _, props := range []map[string]string{{message.PropertyDelayLevel: "x"}, {PropertyTimerDelayMs: "soon"}} {
		if _, ok, err := h.trySchedule("t", 0, props, "x"); ok || !errors.Is(err, ErrBadSchedule) {
			t.Errorf("%v: parked %v err %v, want ErrBadSchedule", props, ok, err)
		}
	}
	// Exactly at the limit is fine; so is a level whose delay is past MaxDelay (RocketMQ
	// does not bound levels).
	for _, props := range []map[string]string{{PropertyTimerDelaySec: "3600"}, {message.PropertyDelayLevel: "18"}} {
		if _, ok, err := h.trySchedule("t", 0, props, "x"); !ok || err != nil {
			t.Errorf("%v: parked %v err %v", props, ok, err)
		}
	}
}

// flakyLog fails the reads of chosen parked records a number of times.
type flakyLog struct {
	StoreLog
	failPos  atomic.Int64
	failures atomic.Int64
}

func (l *flakyLog) ReadAt(ctx context.Context, pos int64, size int32) ([]byte, error) {
	if pos == l.failPos.Load() && l.failures.Add(-1) >= 0 {
		return nil, errors.New("bucket unreachable")
	}
	return l.StoreLog.ReadAt(ctx, pos, size)
}

func TestUnreadableParkedRecordIsRetried(t *testing.T) {
	h := newHarness(t, nil)
	h.closeService()
	fl := &flakyLog{StoreLog: StoreLog{Store: h.st}}
	svc, err := Open(context.Background(), h.cfg, fl)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	h.schedule("f", 0, map[string]string{PropertyTimerDelayMs: "100"}, "a")
	h.schedule("f", 0, map[string]string{PropertyTimerDelayMs: "200"}, "b")
	h.waitIndexed()
	first := h.svc.ix.heapOrRunsFirst(t)
	fl.failPos.Store(first.pos)
	fl.failures.Store(3)
	h.clock.Advance(200 * time.Millisecond)
	h.waitDelivered("f", 0, 1)
	if st := h.svc.Status(); st.Retrying != 1 {
		t.Fatalf("retrying %d, want 1", st.Retrying)
	}
	// No checkpoint may claim that the failed timer fired.
	if ck := h.svc.Status().Checkpoint; first.qoff < ck.LowOffset || first.qoff < ck.IndexedBelow && first.due <= ck.FiredThroughMs {
		t.Fatalf("checkpoint %+v covers the timer %+v that has not fired", ck, first)
	}
	for i := 0; h.st.MaxOffset("f", 0) < 2; i++ {
		if i > 200 {
			t.Fatal("the failed timer never fired")
		}
		h.clock.Advance(time.Second)
		h.idle()
	}
	if got := h.delivered("f", 0); len(got) != 2 || string(got[1].Body) != "a" {
		t.Fatalf("delivered %d messages, last %q", len(got), got[len(got)-1].Body)
	}
}

// heapOrRunsFirst returns the earliest pending entry (for tests).
func (ix *index) heapOrRunsFirst(t *testing.T) entry {
	t.Helper()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	best := entry{due: 1 << 62}
	consider := func(e entry) {
		if e.less(best) {
			best = e
		}
	}
	for _, e := range ix.heap {
		consider(e)
	}
	for _, e := range ix.mem {
		consider(e)
	}
	if best.due == 1<<62 {
		t.Fatal("no pending entry")
	}
	return best
}

func TestParkedSendResultIsTheParkedRecord(t *testing.T) {
	h := newHarness(t, nil)
	props := map[string]string{message.PropertyDelayLevel: "1", message.PropertyUniqKey: "ID1"}
	p, ok, err := h.svc.Intercept(props, "dst", 3)
	if !ok || err != nil || p.Topic != ParkTopic || p.QueueID != 0 || p.Level != 1 || p.DueMs != epoch.UnixMilli()+1000 {
		t.Fatalf("intercept: %+v %v %v", p, ok, err)
	}
	m := &message.Message{Topic: p.Topic, QueueID: p.QueueID, Body: []byte("x"), Properties: props, StoreHost: testHost}
	rec, _ := m.Encode()
	res, err := h.svc.Park(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	parked, err := h.st.ReadAt(res[0].CommitLogOffset, 0)
	if err != nil {
		t.Fatal(err)
	}
	pm, _, _ := message.Decode(parked)
	if pm.Topic != ParkTopic || pm.Properties[message.PropertyRealTopic] != "dst" || pm.Properties[message.PropertyRealQueueID] != "3" {
		t.Fatalf("parked record %+v", pm)
	}
	if _, err := h.st.Read(context.Background(), store.ReadRequest{Topic: "dst", QueueID: 3}); err != nil {
		t.Fatal(err)
	}
	if h.st.MaxOffset("dst", 3) != 0 {
		t.Fatal("a parked message is visible on its real topic before it is due")
	}
}
