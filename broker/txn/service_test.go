package txn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
)

func TestPrepareStoresAHalfMessageConsumersNeverSee(t *testing.T) {
	e := newEnv(t, nil)
	p := e.prepare("orders", 3, "o-1", map[string]string{message.PropertyKeys: "k1 k2", message.PropertyTags: "paid"})
	if got := e.queue("orders", 3); len(got) != 0 {
		t.Fatalf("the real queue holds %d messages before the commit", len(got))
	}
	halves := e.queue(HalfTopic, 0)
	if len(halves) != 1 {
		t.Fatalf("%s holds %d records, want 1", HalfTopic, len(halves))
	}
	h := halves[0]
	want := map[string]string{
		message.PropertyRealTopic: "orders", message.PropertyRealQueueID: "3", message.PropertyProducerGroup: testGroup,
		message.PropertyTransactionID: "UNIQ-o-1", message.PropertyTransactionPrep: "true", message.PropertyUniqKey: "UNIQ-o-1",
		message.PropertyKeys: "k1 k2", message.PropertyTags: "paid",
	}
	for k, v := range want {
		if h.Properties[k] != v {
			t.Errorf("half property %s = %q, want %q", k, h.Properties[k], v)
		}
	}
	if h.SysFlag&message.FlagTransactionMask != 0 {
		t.Errorf("half sysflag %#x keeps transaction bits", h.SysFlag)
	}
	if p.CommitLogOffset != h.CommitLogOffset || p.QueueOffset != h.QueueOffset || p.TransactionID != "UNIQ-o-1" {
		t.Errorf("prepare result %+v does not describe the half record (pos %d, offset %d)", p, h.CommitLogOffset, h.QueueOffset)
	}
	if n := e.svc.PendingCount(); n != 1 {
		t.Fatalf("pending %d, want 1", n)
	}
}

func TestCommitDeliversOnceAsRocketMQRebuildsIt(t *testing.T) {
	e := newEnv(t, nil)
	p := e.prepare("orders", 1, "o-1", map[string]string{message.PropertyKeys: "k1", message.PropertyTags: "paid", "custom": "v"})
	if res := e.end(p, DecisionCommit); res.Outcome != OutcomeCommitted || res.Topic != "orders" || res.QueueID != 1 {
		t.Fatalf("commit: %+v", res)
	}
	for i := 0; i < 2; i++ {
		if res := e.end(p, DecisionCommit); res.Outcome != OutcomeAlreadyDecided {
			t.Fatalf("repeated commit: %v, want already decided", res.Outcome)
		}
	}
	req := endReq(p, DecisionCommit)
	req.FromCheck = true
	if res, err := e.svc.End(context.Background(), req); err != nil || res.Outcome != OutcomeAlreadyDecided {
		t.Fatalf("commit from a check-back after the commit: %v, %v", res.Outcome, err)
	}
	got := e.queue("orders", 1)
	if len(got) != 1 {
		t.Fatalf("real queue holds %d messages, want 1", len(got))
	}
	m := got[0]
	if m.UniqKey() != "UNIQ-o-1" || m.Properties[message.PropertyKeys] != "k1" || m.Tags() != "paid" || m.Properties["custom"] != "v" ||
		m.Properties[message.PropertyProducerGroup] != testGroup || m.Properties[message.PropertyTransactionID] != "UNIQ-o-1" {
		t.Errorf("committed properties %v lost the producer's ones", m.Properties)
	}
	for _, k := range []string{message.PropertyRealTopic, message.PropertyRealQueueID, message.PropertyTransactionPrep} {
		if _, ok := m.Properties[k]; ok {
			t.Errorf("committed message keeps %s", k)
		}
	}
	if m.SysFlag&message.FlagTransactionMask != message.FlagTransactionCommit {
		t.Errorf("committed sysflag %#x, want the commit type", m.SysFlag)
	}
	if m.PreparedTransactionOffset != p.CommitLogOffset || string(m.Body) != "o-1" || m.StoreHost != testStoreHost {
		t.Errorf("committed copy: prepared offset %d (half %d), body %q, store host %v", m.PreparedTransactionOffset, p.CommitLogOffset, m.Body, m.StoreHost)
	}
	if n := e.svc.PendingCount(); n != 0 {
		t.Fatalf("pending %d after the commit", n)
	}
}

func TestRollbackDiscardsAndLaterCommitsDoNothing(t *testing.T) {
	e := newEnv(t, nil)
	p := e.prepare("orders", 0, "o-1", nil)
	if res := e.end(p, DecisionRollback); res.Outcome != OutcomeRolledBack {
		t.Fatalf("rollback: %v", res.Outcome)
	}
	if res := e.end(p, DecisionCommit); res.Outcome != OutcomeAlreadyDecided {
		t.Fatalf("commit after rollback: %v", res.Outcome)
	}
	if got := e.queue("orders", 0); len(got) != 0 {
		t.Fatalf("a rolled-back message was delivered: %v", bodiesOf(got))
	}
	ops := e.queue(OpTopic, 0)
	if len(ops) != 1 || ops[0].Tags() != opTag {
		t.Fatalf("op topic holds %d records (tag %q), want one rollback op", len(ops), ops[0].Tags())
	}
	entries, err := decodeOpBody(ops[0].Body)
	if err != nil || len(entries) != 1 || entries[0] != (opEntry{kind: opRollback, halfPos: p.CommitLogOffset}) {
		t.Fatalf("op body %v, %v", entries, err)
	}
}

func TestEndRefusesWhatDoesNotMatch(t *testing.T) {
	e := newEnv(t, nil)
	p := e.prepare("orders", 0, "o-1", nil)
	other := e.prepare("orders", 0, "o-2", nil)
	ctx := context.Background()

	wrongGroup := endReq(p, DecisionCommit)
	wrongGroup.ProducerGroup = "someone-else"
	if _, err := e.svc.End(ctx, wrongGroup); !errors.Is(err, ErrMismatch) {
		t.Errorf("commit by another group: %v, want ErrMismatch", err)
	}
	wrongOffset := endReq(p, DecisionCommit)
	wrongOffset.TranStateTableOffset = other.QueueOffset
	if _, err := e.svc.End(ctx, wrongOffset); !errors.Is(err, ErrMismatch) {
		t.Errorf("commit with another half's queue offset: %v, want ErrMismatch", err)
	}
	nowhere := endReq(p, DecisionCommit)
	nowhere.CommitLogOffset = p.CommitLogOffset + 1
	if _, err := e.svc.End(ctx, nowhere); !errors.Is(err, ErrNoHalf) {
		t.Errorf("commit at a position with no record: %v, want ErrNoHalf", err)
	}
	bad := endReq(p, 5)
	if _, err := e.svc.End(ctx, bad); err == nil {
		t.Error("commitOrRollback 5 accepted")
	}
	if res := e.end(p, DecisionUnknown); res.Outcome != OutcomeUnknown {
		t.Errorf("unknown: %v", res.Outcome)
	}
	if got := e.queue("orders", 0); len(got) != 0 {
		t.Fatalf("refused decisions delivered %v", bodiesOf(got))
	}
	if n := e.svc.PendingCount(); n != 2 {
		t.Fatalf("pending %d, want both half messages still pending", n)
	}
	if res := e.end(p, DecisionCommit); res.Outcome != OutcomeCommitted {
		t.Fatalf("the right commit after refused ones: %v", res.Outcome)
	}
}

func TestCheckBackAfterTimeoutThenEveryInterval(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	p := e.prepare("orders", 2, "o-1", map[string]string{message.PropertyTags: "t"})
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 0 {
		t.Fatalf("checked back %d half messages before the timeout", len(got))
	}
	e.at(p, 6*time.Second-time.Millisecond)
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 0 {
		t.Fatalf("checked back %d half messages 1ms before the timeout", len(got))
	}
	e.at(p, 6*time.Second)
	e.svc.checkRound(ctx)
	got := e.check.take()
	if len(got) != 1 {
		t.Fatalf("%d check-backs after the timeout, want 1", len(got))
	}
	req := got[0]
	if req.Group != testGroup || req.TranStateTableOffset != p.QueueOffset || req.CommitLogOffset != p.CommitLogOffset ||
		req.MsgID != "UNIQ-o-1" || req.TransactionID != "UNIQ-o-1" || req.Topic != "orders" ||
		req.OffsetMsgID != message.OffsetMsgID(testStoreHost, p.CommitLogOffset) {
		t.Fatalf("check request %+v", req)
	}
	body, _, err := message.Decode(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	if body.Topic != "orders" || body.QueueID != 2 || body.Properties[message.PropertyProducerGroup] != testGroup ||
		body.QueueOffset != p.QueueOffset || body.CommitLogOffset != p.CommitLogOffset || string(body.Body) != "o-1" {
		t.Fatalf("check body: topic %s queue %d offsets %d/%d props %v", body.Topic, body.QueueID, body.QueueOffset, body.CommitLogOffset, body.Properties)
	}
	e.clock.Advance(29 * time.Second)
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 0 {
		t.Fatalf("checked again %d times before the interval", len(got))
	}
	e.clock.Advance(2 * time.Second)
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 1 {
		t.Fatalf("%d check-backs one interval later, want 1", len(got))
	}
	reply := endReq(p, DecisionCommit)
	reply.FromCheck = true
	if res, err := e.svc.End(ctx, reply); err != nil || res.Outcome != OutcomeCommitted {
		t.Fatalf("commit answering the check-back: %v %v", res.Outcome, err)
	}
	e.clock.Advance(time.Minute)
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 0 {
		t.Fatalf("checked back a committed message")
	}
	if got := e.queue("orders", 2); len(got) != 1 {
		t.Fatalf("%d delivered, want 1", len(got))
	}
}

func TestImmunityPropertyOverridesTheTimeout(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.prepare("orders", 0, "late", map[string]string{PropertyCheckImmunitySeconds: "60"})
	e.prepare("orders", 0, "soon", map[string]string{PropertyCheckImmunitySeconds: "1"})
	e.prepare("orders", 0, "bad", map[string]string{PropertyCheckImmunitySeconds: "x"}) // falls back to Timeout
	checked := func() []string {
		var out []string
		for _, r := range e.check.take() {
			out = append(out, r.MsgID)
		}
		slices.Sort(out)
		return out
	}
	e.clock.Advance(1500 * time.Millisecond)
	e.svc.checkRound(ctx)
	if got := checked(); !slices.Equal(got, []string{"UNIQ-soon"}) {
		t.Fatalf("after 1.5s checked %v, want only the 1s-immune one", got)
	}
	e.clock.Advance(5 * time.Second)
	e.svc.checkRound(ctx)
	if got := checked(); !slices.Equal(got, []string{"UNIQ-bad"}) {
		t.Fatalf("after 6.5s checked %v, want the one on the default timeout", got)
	}
	e.clock.Advance(54 * time.Second)
	e.svc.checkRound(ctx)
	if got := checked(); !slices.Contains(got, "UNIQ-late") {
		t.Fatalf("after 60.5s checked %v, want the 60s-immune one", got)
	}
}

func TestCheckMaxParksTheHalfMessage(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CheckMax = 2 })
	ctx := context.Background()
	p := e.prepare("orders", 0, "o-1", map[string]string{message.PropertyKeys: "k"})
	for round := 0; round < 2; round++ {
		e.clock.Advance(31 * time.Second)
		e.svc.checkRound(ctx)
		if got := e.check.take(); len(got) != 1 {
			t.Fatalf("round %d: %d check-backs", round, len(got))
		}
	}
	e.clock.Advance(31 * time.Second)
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 0 {
		t.Fatalf("checked back %d times past check_max", len(got))
	}
	parked := e.queue(CheckMaxTopic, 0)
	if len(parked) != 1 || string(parked[0].Body) != "o-1" || parked[0].Properties[message.PropertyRealTopic] != "orders" ||
		parked[0].PreparedTransactionOffset != p.CommitLogOffset {
		t.Fatalf("parked %d records in %s: %+v", len(parked), CheckMaxTopic, parked)
	}
	if n := e.svc.PendingCount(); n != 0 {
		t.Fatalf("pending %d after parking", n)
	}
	if res := e.end(p, DecisionCommit); res.Outcome != OutcomeAlreadyDecided {
		t.Fatalf("commit after parking: %v", res.Outcome)
	}
	if got := e.queue("orders", 0); len(got) != 0 {
		t.Fatal("a parked half message was delivered")
	}
	e.restart()
	if n := e.svc.PendingCount(); n != 0 {
		t.Fatalf("pending %d after a restart: the parking was not durable", n)
	}
}

func TestChecksWithNoProducerCountAndDoNotRepeatInARound(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CheckMax = 1 })
	e.check.answer = func(CheckRequest) error { return fmt.Errorf("checking: %w", ErrNoProducer) }
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		e.prepare("orders", 0, "o-"+strconv.Itoa(i), nil)
	}
	e.clock.Advance(7 * time.Second)
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 1 {
		t.Fatalf("asked the checker %d times for one absent group in one round, want 1", len(got))
	}
	e.clock.Advance(31 * time.Second)
	e.svc.checkRound(ctx)
	if n := e.svc.PendingCount(); n != 0 {
		t.Fatalf("pending %d: rounds without a producer did not count toward check_max", n)
	}
	if got := e.queue(CheckMaxTopic, 0); len(got) != 3 {
		t.Fatalf("parked %d, want 3", len(got))
	}
}

func TestMaxPendingRefusesHalfMessages(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPending = 2 })
	p := e.prepare("orders", 0, "a", nil)
	e.prepare("orders", 0, "b", nil)
	if _, err := e.svc.Prepare(context.Background(), e.message("orders", 0, "c", nil), testGroup); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("third half message: %v, want ErrTooManyPending", err)
	}
	e.end(p, DecisionRollback)
	e.prepare("orders", 0, "c", nil)
}

func TestPendingListsOldestFirstByGroup(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	a := e.prepare("orders", 1, "a", nil)
	e.clock.Advance(time.Second)
	if _, err := e.svc.Prepare(ctx, e.message("pay", 0, "x", map[string]string{message.PropertyProducerGroup: "pg-pay"}), "pg-pay"); err != nil {
		t.Fatal(err)
	}
	e.prepare("orders", 2, "b", nil)
	l := e.svc.Pending(ctx, testGroup, 1)
	if l.Pending != 2 || len(l.Halves) != 1 {
		t.Fatalf("group list: %d pending, %d listed; want 2 and 1", l.Pending, len(l.Halves))
	}
	h := l.Halves[0]
	if h.Topic != "orders" || h.QueueID != 1 || h.TransactionID != "UNIQ-a" || h.HalfOffset != a.QueueOffset || h.CommitLogOffset != a.CommitLogOffset ||
		h.Group != testGroup || h.Checks != 0 || h.AgeMs < 900 || h.Error != "" {
		t.Fatalf("listed %+v", h)
	}
	if l := e.svc.Pending(ctx, "", 10); l.Pending != 3 || len(l.Halves) != 3 {
		t.Fatalf("all groups: %d pending, %d listed", l.Pending, len(l.Halves))
	}
	if l := e.svc.Pending(ctx, "nobody", 10); l.Pending != 0 || len(l.Halves) != 0 {
		t.Fatalf("unknown group: %+v", l)
	}
}

func TestRestartKeepsPendingStateAndDecisions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var ps []PrepareResult
	for i := 0; i < 5; i++ {
		ps = append(ps, e.prepare("orders", 0, "o-"+strconv.Itoa(i), nil))
	}
	e.end(ps[0], DecisionCommit)
	e.end(ps[1], DecisionRollback)
	e.clock.Advance(7 * time.Second)
	e.svc.checkRound(ctx) // one check-back each for o-2..o-4
	if got := e.check.take(); len(got) != 3 {
		t.Fatalf("%d check-backs, want 3", len(got))
	}
	e.crash()
	e.open()
	if n := e.svc.PendingCount(); n != 3 {
		t.Fatalf("pending after restart %d, want 3", n)
	}
	l := e.svc.Pending(ctx, testGroup, 10)
	for _, h := range l.Halves {
		if h.Checks != 1 {
			t.Errorf("%s: %d checks after restart, want the 1 recorded", h.TransactionID, h.Checks)
		}
	}
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 0 {
		t.Fatalf("restart checked back %d again before the interval", len(got))
	}
	for _, p := range ps[:2] {
		if res := e.end(p, DecisionCommit); res.Outcome != OutcomeAlreadyDecided {
			t.Fatalf("replayed commit after restart: %v", res.Outcome)
		}
	}
	e.end(ps[2], DecisionCommit)
	e.end(ps[3], DecisionRollback)
	if got := bodiesOf(e.queue("orders", 0)); !slices.Equal(got, []string{"o-0", "o-2"}) {
		t.Fatalf("delivered %v, want o-0 and o-2 once each", got)
	}
}

func TestCheckpointBoundsWhatRecoveryReads(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	old := e.prepare("orders", 0, "old", nil)
	for i := 0; i < 50; i++ {
		e.end(e.prepare("orders", 0, "done-"+strconv.Itoa(i), nil), DecisionRollback)
	}
	if err := e.svc.checkpointNow(ctx); err != nil {
		t.Fatal(err)
	}
	if e.svc.lastCk.halfLow != old.QueueOffset {
		t.Fatalf("checkpoint half offset %d, want the oldest pending %d", e.svc.lastCk.halfLow, old.QueueOffset)
	}
	e.end(old, DecisionCommit)
	for i := 0; i < 20; i++ {
		e.end(e.prepare("orders", 0, "later-"+strconv.Itoa(i), nil), DecisionRollback)
	}
	keep := e.prepare("orders", 0, "keep", nil)
	if err := e.svc.checkpointNow(ctx); err != nil {
		t.Fatal(err)
	}
	e.crash()
	e.open()
	st := e.svc.lastCk
	if st.halfLow != keep.QueueOffset {
		t.Fatalf("recovered from half offset %d, want %d", st.halfLow, keep.QueueOffset)
	}
	if n := e.svc.PendingCount(); n != 1 {
		t.Fatalf("pending %d, want 1", n)
	}
	if res := e.end(keep, DecisionCommit); res.Outcome != OutcomeCommitted {
		t.Fatal(res.Outcome)
	}
	if got := bodiesOf(e.queue("orders", 0)); !slices.Equal(got, []string{"keep", "old"}) {
		t.Fatalf("delivered %v", got)
	}
}

func TestCheckpointWithNothingPendingStartsAtTheEnds(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		e.end(e.prepare("orders", 0, "x-"+strconv.Itoa(i), nil), DecisionCommit)
	}
	if err := e.svc.checkpointNow(ctx); err != nil {
		t.Fatal(err)
	}
	e.crash()
	e.open()
	if n, from := e.svc.PendingCount(), e.svc.lastCk; n != 0 || from.halfLow != 10 || from.opFrom != 10 {
		t.Fatalf("recovered %d pending from %+v; want nothing pending from offsets 10/10", n, from)
	}
}

func TestCrashBetweenOpAndCommittedCopyRedoesTheCommitOnce(t *testing.T) {
	e := newEnv(t, nil)
	p := e.prepare("orders", 0, "o-1", nil)
	e.end(p, DecisionCommit)
	committed := e.queue("orders", 0)[0]
	e.crash()
	e.cutLog(committed.CommitLogOffset + 10) // the committed copy is torn
	e.open()
	if got := e.queue("orders", 0); len(got) != 1 || got[0].UniqKey() != "UNIQ-o-1" || got[0].PreparedTransactionOffset != p.CommitLogOffset {
		t.Fatalf("after the crash the real queue holds %d messages, want the commit redone once", len(got))
	}
	if n := e.svc.PendingCount(); n != 0 {
		t.Fatalf("pending %d after the redo", n)
	}
	for i := 0; i < 2; i++ {
		e.crash()
		e.open()
	}
	if got := e.queue("orders", 0); len(got) != 1 {
		t.Fatalf("restarts after the redo delivered it %d times", len(got))
	}
	if res := e.end(p, DecisionCommit); res.Outcome != OutcomeAlreadyDecided {
		t.Fatalf("late commit: %v", res.Outcome)
	}
}

func TestCrashBeforeTheOpLeavesTheHalfPendingForCheckBack(t *testing.T) {
	e := newEnv(t, nil)
	p := e.prepare("orders", 0, "o-1", nil)
	e.end(p, DecisionCommit)
	op := e.queue(OpTopic, 0)[0]
	e.crash()
	e.cutLog(op.CommitLogOffset + 5) // neither the op nor the copy survived
	e.open()
	if got := e.queue("orders", 0); len(got) != 0 {
		t.Fatalf("delivered %d with no decision kept", len(got))
	}
	if n := e.svc.PendingCount(); n != 1 {
		t.Fatalf("pending %d, want the half message back", n)
	}
	e.clock.Advance(7 * time.Second)
	e.svc.checkRound(context.Background())
	if got := e.check.take(); len(got) != 1 {
		t.Fatalf("%d check-backs, want 1", len(got))
	}
	e.end(p, DecisionCommit)
	if got := e.queue("orders", 0); len(got) != 1 {
		t.Fatalf("delivered %d, want 1", len(got))
	}
}

func TestCrashAfterParkingOpRedoesTheParking(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CheckMax = 1 })
	ctx := context.Background()
	e.prepare("orders", 0, "o-1", nil)
	e.clock.Advance(7 * time.Second)
	e.svc.checkRound(ctx)
	e.clock.Advance(31 * time.Second)
	e.svc.checkRound(ctx)
	parked := e.queue(CheckMaxTopic, 0)
	if len(parked) != 1 {
		t.Fatalf("parked %d", len(parked))
	}
	e.crash()
	e.cutLog(parked[0].CommitLogOffset)
	e.open()
	if got := e.queue(CheckMaxTopic, 0); len(got) != 1 {
		t.Fatalf("after the crash %d parked, want the parking redone once", len(got))
	}
	if n := e.svc.PendingCount(); n != 0 {
		t.Fatalf("pending %d", n)
	}
}

func TestCommittedCopyGoesThroughTheRouter(t *testing.T) {
	const park = "fake_timer_park"
	e := newEnv(t, nil)
	var routed []string
	e.route = func(m *message.Message) error {
		routed = append(routed, m.UniqKey())
		if m.Properties[message.PropertyDelayLevel] != "" {
			m.Properties[message.PropertyRealTopic] = m.Topic
			m.Topic, m.QueueID = park, 0
		}
		return nil
	}
	e.restart() // with the router
	now := e.prepare("orders", 0, "now", nil)
	later := e.prepare("orders", 0, "later", map[string]string{message.PropertyDelayLevel: "2"})
	e.end(now, DecisionCommit)
	e.end(later, DecisionCommit)
	if !slices.Equal(routed, []string{"UNIQ-now", "UNIQ-later"}) {
		t.Fatalf("router saw %v", routed)
	}
	if got := bodiesOf(e.queue("orders", 0)); !slices.Equal(got, []string{"now"}) {
		t.Fatalf("real topic holds %v", got)
	}
	parked := e.queue(park, 0)
	if len(parked) != 1 || parked[0].Properties[message.PropertyRealTopic] != "orders" || parked[0].PreparedTransactionOffset != later.CommitLogOffset {
		t.Fatalf("parked %v", parked)
	}
	// The routed copy is still the decision's companion: a restart redoes nothing.
	e.crash()
	e.open()
	if got := e.queue(park, 0); len(got) != 1 {
		t.Fatalf("after a restart %d parked copies, want 1", len(got))
	}
}

func TestRouterErrorLeavesTheHalfPending(t *testing.T) {
	e := newEnv(t, nil)
	e.route = func(*message.Message) error { return errors.New("delivery too far ahead") }
	e.restart()
	p := e.prepare("orders", 0, "o-1", nil)
	if _, err := e.svc.End(context.Background(), endReq(p, DecisionCommit)); err == nil {
		t.Fatal("commit succeeded though the router refused")
	}
	if n := e.svc.PendingCount(); n != 1 {
		t.Fatalf("pending %d, want the half message kept for check-back", n)
	}
	if got := e.queue(OpTopic, 0); len(got) != 0 {
		t.Fatalf("an op was written for a refused commit")
	}
}

// TestConcurrentTransactionsAreCountedExactly runs prepares, decisions (some repeated and
// concurrent) and check rounds at once; -race checks the locking, the counts check the rest.
func TestConcurrentTransactionsAreCountedExactly(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPending = 100000 })
	ctx := context.Background()
	const workers, per = 8, 150
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wantCommitted, unknown []string
	stop := make(chan struct{})
	checksDone := make(chan struct{})
	go func() {
		defer close(checksDone)
		for {
			select {
			case <-stop:
				return
			default:
				e.svc.checkRound(ctx)
			}
		}
	}()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				body := fmt.Sprintf("w%d-%d", w, i)
				p, err := e.svc.Prepare(ctx, e.message("orders", int32(i%4), body, nil), testGroup)
				if err != nil {
					t.Error(err)
					return
				}
				var d Decision
				switch i % 3 {
				case 0:
					d = DecisionCommit
				case 1:
					d = DecisionRollback
				default:
					mu.Lock()
					unknown = append(unknown, body)
					mu.Unlock()
					continue
				}
				var inner sync.WaitGroup
				for k := 0; k < 2; k++ { // the same decision twice at once
					inner.Add(1)
					go func() {
						defer inner.Done()
						if _, err := e.svc.End(ctx, endReq(p, d)); err != nil {
							t.Error(err)
						}
					}()
				}
				inner.Wait()
				if d == DecisionCommit {
					mu.Lock()
					wantCommitted = append(wantCommitted, body)
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	<-checksDone
	if n := e.svc.PendingCount(); n != len(unknown) {
		t.Fatalf("pending %d, want %d", n, len(unknown))
	}
	var got []string
	for q := int32(0); q < 4; q++ {
		got = append(got, bodiesOf(e.queue("orders", q))...)
	}
	slices.Sort(got)
	slices.Sort(wantCommitted)
	if !slices.Equal(got, wantCommitted) {
		t.Fatalf("delivered %d messages, want exactly the %d committed once each", len(got), len(wantCommitted))
	}
}

// TestCrashDuringTheRedoNeitherLosesNorRepeatsTheCommit cuts the log again inside the
// decision recovery made again, at each record of it.
func TestCrashDuringTheRedoNeitherLosesNorRepeatsTheCommit(t *testing.T) {
	e := newEnv(t, nil)
	p := e.prepare("orders", 0, "o-1", nil)
	e.end(p, DecisionCommit)
	first := e.queue("orders", 0)[0]
	e.crash()
	e.cutLog(first.CommitLogOffset + 10)
	e.open() // redoes: void, op, copy
	ops := e.queue(OpTopic, 0)
	if len(ops) != 3 {
		t.Fatalf("op records after the redo: %d, want commit, void, commit", len(ops))
	}
	if got, _ := decodeOpBody(ops[1].Body); len(got) != 1 || got[0].kind != opVoid || got[0].halfPos != p.CommitLogOffset {
		t.Fatalf("second op record %v, want a void of the half message", got)
	}
	redone := e.queue("orders", 0)
	if len(redone) != 1 {
		t.Fatalf("%d copies after the redo", len(redone))
	}

	// Cut the redo's copy: the next start redoes it again.
	e.crash()
	e.cutLog(redone[0].CommitLogOffset + 10)
	e.open()
	if got := e.queue("orders", 0); len(got) != 1 || got[0].UniqKey() != "UNIQ-o-1" {
		t.Fatalf("after a crash inside the redo: %d copies, want 1", len(got))
	}
	if n := e.svc.PendingCount(); n != 0 {
		t.Fatalf("pending %d", n)
	}

	// Keep only the void of the latest redo: the half message is pending again and the
	// check-back decides it.
	ops = e.queue(OpTopic, 0)
	e.crash()
	e.cutLog(ops[len(ops)-1].CommitLogOffset)
	e.open()
	if got := e.queue("orders", 0); len(got) != 0 {
		t.Fatalf("%d copies with only a void kept", len(got))
	}
	if n := e.svc.PendingCount(); n != 1 {
		t.Fatalf("pending %d, want the voided half message back", n)
	}
	e.at(p, 7*time.Second)
	e.svc.checkRound(context.Background())
	if got := e.check.take(); len(got) != 1 {
		t.Fatalf("%d check-backs for the voided half message", len(got))
	}
	e.end(p, DecisionCommit)
	for i := 0; i < 2; i++ {
		e.crash()
		e.open()
	}
	if got := e.queue("orders", 0); len(got) != 1 {
		t.Fatalf("delivered %d times in the end, want once", len(got))
	}
}

// TestAHalfMessageBackFromAFailedDecisionIsCheckedAtOnce covers a round that skips a half
// message while its decision is being stored: when that decision fails, the next round must
// not wait for the due times it saw.
func TestAHalfMessageBackFromAFailedDecisionIsCheckedAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	p := e.prepare("orders", 0, "o-1", nil)
	e.at(p, 7*time.Second)
	e.svc.mu.Lock()
	i, _ := e.svc.t.find(p.CommitLogOffset)
	e.svc.t.entries[i].state = stateDeciding // an End is storing its decision
	e.svc.mu.Unlock()
	if next := e.svc.checkRound(ctx); !next.After(e.clock.Now()) {
		t.Fatalf("next round at %v with nothing else pending", next)
	}
	if got := e.check.take(); len(got) != 0 {
		t.Fatal("checked back a half message being decided")
	}
	e.svc.finish(p.CommitLogOffset, false) // the decision failed
	e.svc.checkRound(ctx)
	if got := e.check.take(); len(got) != 1 {
		t.Fatalf("%d check-backs after the failed decision, want 1", len(got))
	}
}
