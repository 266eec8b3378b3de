package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/timer"
)

// Scheduled delivery, driven with the official Go client and Strata's raw client against
// `strata dev`.

// delivery is one message as a push consumer saw it.
type delivery struct {
	at        time.Time
	storeMs   int64
	reconsume int32
	msg       *primitive.MessageExt
}

// deliveries records what a push consumer receives, by body.
type deliveries struct {
	mu     sync.Mutex
	by     map[string][]delivery
	notify chan struct{}
}

func newDeliveries() *deliveries {
	return &deliveries{by: map[string][]delivery{}, notify: make(chan struct{}, 1)}
}

func (d *deliveries) add(m *primitive.MessageExt) int {
	d.mu.Lock()
	d.by[string(m.Body)] = append(d.by[string(m.Body)], delivery{at: time.Now(), storeMs: m.StoreTimestamp, reconsume: m.ReconsumeTimes, msg: m})
	n := len(d.by[string(m.Body)])
	d.mu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
	return n
}

func (d *deliveries) get(body string) []delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]delivery(nil), d.by[body]...)
}

// waitN waits until body has been delivered n times.
func (d *deliveries) waitN(t testing.TB, body string, n int, timeout time.Duration) []delivery {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if got := d.get(body); len(got) >= n {
			return got
		}
		select {
		case <-d.notify:
		case <-deadline:
			t.Fatalf("%q delivered %d times within %v, want %d", body, len(d.get(body)), timeout, n)
		}
	}
}

// startTimerConsumer subscribes group to topic; handle decides each delivery's result from
// the delivery count of its body.
func startTimerConsumer(t testing.TB, namesrv, group, topic string, d *deliveries, handle func(n int) consumer.ConsumeResult, opts ...consumer.Option) {
	t.Helper()
	opts = append([]consumer.Option{
		consumer.WithNameServer(primitive.NamesrvAddr{namesrv}),
		consumer.WithGroupName(group),
		consumer.WithInstance(group + "-c"),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		consumer.WithConsumeMessageBatchMaxSize(1),
	}, opts...)
	// The retry topic exists before the consumer starts, so its first rebalance takes the
	// retry queue too (otherwise the first retry waits for the next one, 20s later).
	createTopic(t, namesrv, "%RETRY%"+group, 1)
	c, err := consumer.NewPushConsumer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			res := consumer.ConsumeSuccess
			for _, m := range msgs {
				if handle(d.add(m)) == consumer.ConsumeRetryLater {
					res = consumer.ConsumeRetryLater
				}
			}
			return res, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("start consumer %s: %v", group, err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	waitUntil(t, 30*time.Second, "consumer "+group+" holds its queues", func() bool {
		held := map[string]bool{}
		for mq := range c.GetConsumerRunningInfo(false).MQTable {
			held[mq.Topic] = true
		}
		return held[topic] && held["%RETRY%"+group]
	})
}

func succeed(int) consumer.ConsumeResult { return consumer.ConsumeSuccess }

// checkDelay asserts a delivery came no earlier than want after sentMs, and not much later.
func checkDelay(t *testing.T, what string, sentMs int64, d delivery, want time.Duration) {
	t.Helper()
	stored := time.Duration(d.storeMs-sentMs) * time.Millisecond
	seen := d.at.Sub(time.UnixMilli(sentMs))
	if stored < want || seen < want-time.Millisecond {
		t.Fatalf("%s: stored %v and received %v after the send, before its %v", what, stored, seen, want)
	}
	if seen > want+1500*time.Millisecond {
		t.Fatalf("%s: received %v after the send, %v late", what, seen, seen-want)
	}
	t.Logf("%s: stored %v, received %v after the send (%v late)", what, stored, seen, seen-want)
}

func TestDelayLevelsAndDeliveryTimeWithTheOfficialClient(t *testing.T) {
	dev := startDev(t, t.TempDir())
	const topic = "delayed"
	createTopic(t, dev.Namesrv, topic, 2)
	d := newDeliveries()
	startTimerConsumer(t, dev.Namesrv, "cg-delayed", topic, d, succeed)
	p := newProducer(t, dev.Namesrv)
	ctx := context.Background()

	type sent struct {
		body string
		at   int64
		want time.Duration
		res  *primitive.SendResult
	}
	var all []sent
	send := func(body string, want time.Duration, m *primitive.Message) {
		at := time.Now().UnixMilli()
		m.WithTag("TagD").WithKeys([]string{"key-" + body}).WithProperty("app", "v1")
		res, err := p.SendSync(ctx, m)
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send %s: %v %+v", body, err, res)
		}
		all = append(all, sent{body, at, want, res})
	}
	send("level-2", 5*time.Second, primitive.NewMessage(topic, []byte("level-2")).WithDelayTimeLevel(2))
	send("level-3", 10*time.Second, primitive.NewMessage(topic, []byte("level-3")).WithDelayTimeLevel(3))
	send("timestamp", 3*time.Second, primitive.NewMessage(topic, []byte("timestamp")).WithDelayTimestamp(time.Now().Add(3*time.Second)))

	st := timerStatus(t, dev)
	if st.Pending != 3 || st.Scheduled != 3 {
		t.Fatalf("timer status after the sends: %+v", st)
	}
	out := runCLI(t, "", "timer", "status", "--http", dev.HTTP)
	if !strings.Contains(out, "3 pending") {
		t.Fatalf("strata timer status:\n%s", out)
	}
	for _, s := range all {
		got := d.waitN(t, s.body, 1, s.want+10*time.Second)
		checkDelay(t, s.body, s.at, got[0], s.want)
		m := got[0].msg
		if m.MsgId != s.res.MsgID || m.GetTags() != "TagD" || m.GetKeys() != "key-"+s.body || m.GetProperty("app") != "v1" || m.Topic != topic {
			t.Fatalf("%s delivered as %+v (sent as %s)", s.body, m, s.res.MsgID)
		}
		if m.GetProperty("DELAY") != "" {
			t.Fatalf("%s keeps DELAY=%s", s.body, m.GetProperty("DELAY"))
		}
		// Lookups by unique key and by key find the delivered message on its topic.
		if out := runCLI(t, "", "message", "get", "--namesrv", dev.Namesrv, "--id", m.MsgId, "--topic", topic); !strings.Contains(out, "topic="+topic) {
			t.Fatalf("message get %s:\n%s", m.MsgId, out)
		}
		if out := runCLI(t, "", "message", "find", "--namesrv", dev.Namesrv, "--topic", topic, "--key", "key-"+s.body); !strings.Contains(out, "uniqKey="+m.MsgId) {
			t.Fatalf("message find key-%s:\n%s", s.body, out)
		}
	}
	if st := timerStatus(t, dev); st.Pending != 0 || st.Fired != 3 {
		t.Fatalf("timer status after delivery: %+v", st)
	}
}

func timerStatus(t testing.TB, p *strataProc) timer.Status {
	t.Helper()
	resp, err := http.Get("http://" + p.HTTP + "/timer/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st timer.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRetriesBackOffThenDeadLetter uses a short delay-level table: the k-th retry waits
// level 2+k, so 1s then 2s here, and a group with MaxReconsumeTimes 2 sends the message to
// its DLQ on the third failure.
func TestRetriesBackOffThenDeadLetter(t *testing.T) {
	levels := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, time.Second, 2 * time.Second}
	dev := startDev(t, t.TempDir(), "--message-delay-level", "100ms 200ms 1s 2s")
	createTopic(t, dev.Namesrv, "retried", 1)
	createTopic(t, dev.Namesrv, "doomed", 1)
	retried, doomed := newDeliveries(), newDeliveries()
	startTimerConsumer(t, dev.Namesrv, "cg-retry", "retried", retried, func(n int) consumer.ConsumeResult {
		if n <= 2 {
			return consumer.ConsumeRetryLater
		}
		return consumer.ConsumeSuccess
	})
	startTimerConsumer(t, dev.Namesrv, "cg-doomed", "doomed", doomed, func(int) consumer.ConsumeResult { return consumer.ConsumeRetryLater },
		consumer.WithMaxReconsumeTimes(2))
	p := newProducer(t, dev.Namesrv)
	for _, topic := range []string{"retried", "doomed"} {
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(topic))); err != nil {
			t.Fatal(err)
		}
	}
	got := retried.waitN(t, "retried", 3, 30*time.Second)
	for k := 1; k < 3; k++ {
		gap := got[k].at.Sub(got[k-1].at)
		want := levels[2+k-1] // level 3 + (k-1)
		if gap < want || gap > want+1500*time.Millisecond {
			t.Fatalf("retry %d came %v after attempt %d, want the %v of level %d", k, gap, k, want, 2+k)
		}
		if got[k].reconsume != int32(k) {
			t.Fatalf("retry %d has reconsumeTimes %d", k, got[k].reconsume)
		}
		t.Logf("retry %d: %v after the previous attempt (level %d = %v)", k, gap, 2+k, want)
	}

	dead := doomed.waitN(t, "doomed", 3, 30*time.Second)
	c, err := client.Dial(context.Background(), dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var dlq []*message.Message
	waitUntil(t, 20*time.Second, "the message in %DLQ%cg-doomed", func() bool {
		r, err := c.Route(context.Background(), "%DLQ%cg-doomed")
		if err != nil {
			return false
		}
		res, err := c.Pull(context.Background(), "dlq-reader", r.Queues("%DLQ%cg-doomed")[0], 0, 32, 0, "")
		dlq = res.Messages
		return err == nil && len(dlq) > 0
	})
	if len(dlq) != 1 || string(dlq[0].Body) != "doomed" || dlq[0].ReconsumeTimes != 3 {
		t.Fatalf("DLQ holds %d messages: %+v", len(dlq), dlq)
	}
	if n := len(doomed.get("doomed")); n != 3 {
		t.Fatalf("the doomed message was delivered %d times, want 3 (first attempt and 2 retries)", n)
	}
	t.Logf("doomed: attempts at %v, %v, %v", dead[0].at.Format(time.StampMilli), dead[1].at.Format(time.StampMilli), dead[2].at.Format(time.StampMilli))
}

// TestFarTimerFiresFromTheBucket parks a timer, lets its segment seal, offload and be
// deleted locally, and sees it fire from the bucket.
func TestFarTimerFiresFromTheBucket(t *testing.T) {
	dev := startDev(t, t.TempDir(), "--segment-size", "64KiB", "--seal-after", "500ms", "--local-retention", "0s")
	createTopic(t, dev.Namesrv, "far", 1)
	createTopic(t, dev.Namesrv, "filler", 1)
	ctx := context.Background()
	c, err := client.Dial(ctx, dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	route := func(topic string) client.Queue {
		r, err := c.Route(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		return r.Queues(topic)[0]
	}
	far, filler := route("far"), route("filler")
	due := time.Now().Add(12 * time.Second).UnixMilli()
	res, err := c.Send(ctx, "pg", far, []byte("from the bucket"), map[string]string{
		timer.PropertyTimerDeliverMs: strconv.FormatInt(due, 10), message.PropertyKeys: "far-key"})
	if err != nil {
		t.Fatal(err)
	}
	_, pos, err := message.ParseOffsetMsgID(res.OffsetMsgID)
	if err != nil {
		t.Fatal(err)
	}
	// Fill segments so the parked record's segment seals, offloads and is deleted locally.
	body := make([]byte, 4<<10)
	for i := 0; tierStatus(t, dev).LocalMinOffset <= pos; i++ {
		if time.Now().UnixMilli() > due-2000 {
			t.Fatalf("the parked record's segment (at %d) was not deleted locally within 10s: %+v", pos, tierStatus(t, dev))
		}
		if _, err := c.Send(ctx, "pg", filler, body, nil); err != nil {
			t.Fatal(err)
		}
		if i%16 == 15 {
			time.Sleep(50 * time.Millisecond) // let sealing and offload run
		}
	}
	ts := tierStatus(t, dev)
	if st := timerStatus(t, dev); st.Pending != 1 {
		t.Fatalf("timer pending %d after its segment left local disk", st.Pending)
	}
	t.Logf("parked record at %d, local log now starts at %d (watermark %d)", pos, ts.LocalMinOffset, ts.OffloadWatermark)
	pr, err := c.Pull(ctx, "far-reader", far, 0, 32, 20000, "")
	if err != nil || len(pr.Messages) != 1 {
		t.Fatalf("pull: %v, %d messages", err, len(pr.Messages))
	}
	m := pr.Messages[0]
	if string(m.Body) != "from the bucket" || m.Properties[message.PropertyKeys] != "far-key" || m.StoreTimestamp < due {
		t.Fatalf("delivered %+v (due %d)", m, due)
	}
	t.Logf("delivered %dms after its due time", m.StoreTimestamp-due)
}

// TestTimersSurviveKill9 parks 100,000 timers due over a minute under sync flush, kills the
// broker with SIGKILL half-way and restarts it: every timer fires, none early; duplicates
// (timers that fired after the last checkpoint before the kill) are counted.
func TestTimersSurviveKill9(t *testing.T) {
	const (
		n      = 100_000
		spread = 60 * time.Second
	)
	dev := startDev(t, t.TempDir(), "--flush", "sync")
	const topic = "crash-timers"
	createTopic(t, dev.Namesrv, topic, 4)
	ctx := context.Background()
	c, err := client.Dial(ctx, dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Route(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	queues := r.Queues(topic)
	// Parking takes 3-15s on a shared 2-core machine; the first timer is due after 25s.
	const conns, workers = 4, 256
	start := time.Now().Add(25 * time.Second)
	dueOf := func(i int) int64 { return start.Add(time.Duration(i) * spread / n).UnixMilli() }
	senders := []*client.Client{c}
	for range conns - 1 {
		sc, err := client.Dial(ctx, dev.Namesrv)
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		senders = append(senders, sc)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := senders[w%conns]
			for i := w; i < n; i += workers {
				props := map[string]string{timer.PropertyTimerDeliverMs: strconv.FormatInt(dueOf(i), 10)}
				if _, err := sc.Send(ctx, "pg", queues[i%len(queues)], []byte(strconv.Itoa(i)), props); err != nil {
					errs <- fmt.Errorf("send %d: %w", i, err)
					return
				}
			}
		}()
	}
	sendStart := time.Now()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sendTook := time.Since(sendStart)
	c.Close()
	t.Logf("parked %d timers in %v (%.0f/s)", n, sendTook, n/sendTook.Seconds())
	if time.Now().After(start) {
		t.Fatalf("parking took %v, past the first due time", sendTook)
	}
	// Kill half-way through the firing.
	time.Sleep(time.Until(start.Add(spread / 2)))
	before := timerStatus(t, dev)
	dev.Kill()
	t.Logf("killed with %d fired, %d pending", before.Fired, before.Pending)
	dev.start()

	c, err = client.Dial(ctx, dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := make([]int, n)
	distinct, dups, early := 0, 0, 0
	var maxLate int64
	deadline := start.Add(spread + 30*time.Second)
	offsets := make([]int64, len(queues))
	for distinct < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d timers fired by 30s after the last due time", distinct, n)
		}
		for qi, q := range queues {
			pr, err := c.Pull(ctx, "crash-reader", q, offsets[qi], 256, 1000, "")
			if err != nil {
				t.Fatal(err)
			}
			offsets[qi] = pr.NextOffset
			for _, m := range pr.Messages {
				i, err := strconv.Atoi(string(m.Body))
				if err != nil || i < 0 || i >= n {
					t.Fatalf("unexpected message %q", m.Body)
				}
				if seen[i]++; seen[i] == 1 {
					distinct++
				} else {
					dups++
				}
				if m.StoreTimestamp < dueOf(i) {
					early++
				}
				maxLate = max(maxLate, m.StoreTimestamp-dueOf(i))
			}
		}
	}
	if early > 0 {
		t.Fatalf("%d deliveries were stored before their due time", early)
	}
	st := timerStatus(t, dev)
	t.Logf("all %d timers fired, none early; %d duplicates (fired before the kill, after its last checkpoint); max lateness %dms (the restart included); status after: pending %d, index rebuilt from %d",
		n, dups, maxLate, st.Pending, st.Index.RebuiltFrom)
	if st.Pending != 0 {
		t.Fatalf("%d timers still pending after all fired", st.Pending)
	}
}
