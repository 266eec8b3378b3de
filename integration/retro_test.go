package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker/client"
)

// Rewinding across the tiers (issue 6): a queue whose older part is only in the cold tier and
// whose newer part is only on the broker's disk, rewound by time and by offset with the
// official Go client (push consumer with ConsumeFromTimestamp, pull consumer after a time
// search) and by `strata group reset` while a push consumer runs.

const retroTopic = "retro"

// storedMsg is a message as the broker stored it.
type storedMsg struct {
	offset, ts int64
	body       string
}

// retroLog is the test's view of the queue: every message with its store time, and the
// first hot offset (offsets below it are cold only).
type retroLog struct {
	msgs     []storedMsg
	boundary int64
	// batchStart are the offsets where a batch begins; every batch starts in a new wall-clock
	// second, so second-resolution times (ConsumeFromTimestamp) can name them.
	batchStart []int64
}

// lower is the first offset whose store time is at or after tsMs (PROTOCOL.md §8, LOWER).
func (l *retroLog) lower(tsMs int64) int64 {
	for _, m := range l.msgs {
		if m.ts >= tsMs {
			return m.offset
		}
	}
	return int64(len(l.msgs))
}

// waitNextSecond sleeps until just after the next wall-clock second begins.
func waitNextSecond() {
	now := time.Now()
	time.Sleep(now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond).Sub(now))
}

func retroQueue(t testing.TB, c *client.Client) client.Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Route(ctx, retroTopic)
	if err != nil {
		t.Fatal(err)
	}
	qs := r.Queues(retroTopic)
	if len(qs) != 1 {
		t.Fatalf("route of %s has %d queues, want 1", retroTopic, len(qs))
	}
	return qs[0]
}

func queueStats(t testing.TB, c *client.Client, group string) client.QueueStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.ConsumeStats(ctx, group, retroTopic)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 {
		t.Fatalf("consume stats of %s: %d queues, want 1", group, len(st))
	}
	return st[0]
}

// buildRetroLog runs strata dev with tiny segments and immediate offload, produces three
// batches that end up in the cold tier only, restarts the broker so that segments seal only
// when full, and produces two batches that stay hot.
func buildRetroLog(t *testing.T) (*strataProc, *retroLog) {
	dev := startDev(t, t.TempDir(), "--segment-size", "64KiB", "--seal-after", "200ms", "--local-retention", "0s")
	createTopic(t, dev.Namesrv, retroTopic, 1)
	p := newProducer(t, dev.Namesrv)
	pad := strings.Repeat("x", 400)
	send := func(prefix string, n int) {
		waitNextSecond()
		for i := 0; i < n; i++ {
			body := fmt.Sprintf("%s-%03d-%s", prefix, i, pad)
			if _, err := p.SendSync(context.Background(), primitive.NewMessage(retroTopic, []byte(body))); err != nil {
				t.Fatal(err)
			}
		}
	}
	const perBatch = 25
	for b := 0; b < 3; b++ {
		send(fmt.Sprintf("cold%d", b), perBatch)
	}
	cold := int64(3 * perBatch)
	c, err := client.Dial(context.Background(), dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the first batches to be offloaded and dropped locally", func() bool {
		s := queueStats(t, c, "probe")
		return s.MinOffset == 0 && s.HotMinOffset == cold && s.MaxOffset == cold
	})
	c.Close()

	// Restart with size-only sealing: what comes next stays on local disk.
	for i, a := range dev.args {
		if a == "--seal-after" {
			dev.args[i+1] = "0s"
		}
	}
	dev.Restart()
	p = newProducer(t, dev.Namesrv)
	for b := 0; b < 2; b++ {
		send(fmt.Sprintf("hot%d", b), perBatch)
	}
	total := cold + 2*perBatch

	c, err = client.Dial(context.Background(), dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := queueStats(t, c, "probe")
	if s.MinOffset != 0 || s.HotMinOffset != cold || s.MaxOffset != total {
		t.Fatalf("queue bounds %+v; want min 0, hot min %d, max %d", s, cold, total)
	}

	// Read every message back (cold ones through the broker's cold reads) for store times.
	l := &retroLog{boundary: cold}
	for b := int64(0); b < 5; b++ {
		l.batchStart = append(l.batchStart, b*perBatch)
	}
	q := retroQueue(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for off := int64(0); off < total; {
		r, err := c.Pull(ctx, "reader", q, off, 32, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if !r.Found || len(r.Messages) == 0 {
			t.Fatalf("pull at %d found nothing (next %d, min %d, max %d)", off, r.NextOffset, r.MinOffset, r.MaxOffset)
		}
		for _, m := range r.Messages {
			if m.QueueOffset != off {
				t.Fatalf("pull returned offset %d, want %d", m.QueueOffset, off)
			}
			l.msgs = append(l.msgs, storedMsg{m.QueueOffset, m.StoreTimestamp, string(m.Body)})
			off++
		}
	}
	if l.msgs[cold-1].ts >= l.msgs[cold].ts {
		t.Fatalf("last cold message stored at %d, first hot at %d: want a gap", l.msgs[cold-1].ts, l.msgs[cold].ts)
	}
	return dev, l
}

// offsetsCollector records what a push consumer received, by queue offset.
type offsetsCollector struct {
	mu     sync.Mutex
	counts map[int64]int
	bodies map[int64]string
	order  []int64
}

func newOffsetsCollector() *offsetsCollector {
	return &offsetsCollector{counts: map[int64]int{}, bodies: map[int64]string{}}
}

func (o *offsetsCollector) add(msgs ...*primitive.MessageExt) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range msgs {
		o.counts[m.QueueOffset]++
		o.bodies[m.QueueOffset] = string(m.Body)
		o.order = append(o.order, m.QueueOffset)
	}
}

func (o *offsetsCollector) snapshot() (map[int64]int, []int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := make(map[int64]int, len(o.counts))
	for k, v := range o.counts {
		c[k] = v
	}
	return c, append([]int64(nil), o.order...)
}

func startRetroConsumer(t *testing.T, namesrv, group string, o *offsetsCollector, opts ...consumer.Option) pushConsumer {
	t.Helper()
	opts = append([]consumer.Option{
		consumer.WithNameServer(primitive.NamesrvAddr{namesrv}),
		consumer.WithGroupName(group),
		consumer.WithInstance(group),
	}, opts...)
	c, err := consumer.NewPushConsumer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(retroTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			o.add(msgs...)
			return consumer.ConsumeSuccess, nil
		}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

// checkExactlyFrom asserts that the collector holds exactly offsets first..total-1, once each,
// with the stored bodies, so first is the first message delivered.
func checkExactlyFrom(t *testing.T, name string, l *retroLog, o *offsetsCollector, first int64) {
	t.Helper()
	total := int64(len(l.msgs))
	counts, order := o.snapshot()
	if len(order) == 0 {
		t.Fatalf("%s: nothing delivered", name)
	}
	// Concurrent consumption may run callbacks out of order: the first message is the
	// lowest offset delivered.
	lowest := order[0]
	for _, off := range order {
		lowest = min(lowest, off)
	}
	if lowest != first {
		t.Fatalf("%s: first delivered offset %d, want %d", name, lowest, first)
	}
	for off := int64(0); off < total; off++ {
		want := 0
		if off >= first {
			want = 1
		}
		if counts[off] != want {
			t.Fatalf("%s: offset %d delivered %d times, want %d (rewound to %d of %d)", name, off, counts[off], want, first, total)
		}
		if want == 1 && o.bodies[off] != l.msgs[off].body {
			t.Fatalf("%s: offset %d has body %.12q, want %.12q", name, off, o.bodies[off], l.msgs[off].body)
		}
	}
}

func TestRetroAcrossTiers(t *testing.T) {
	dev, l := buildRetroLog(t)
	total := int64(len(l.msgs))
	c, err := client.Dial(context.Background(), dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := retroQueue(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	t.Run("offset queries", func(t *testing.T) {
		if got, err := c.MinOffset(ctx, q); err != nil || got != 0 {
			t.Fatalf("GET_MIN_OFFSET = %d, %v; want 0 (cold)", got, err)
		}
		if got, err := c.MaxOffset(ctx, q); err != nil || got != total {
			t.Fatalf("GET_MAX_OFFSET = %d, %v; want %d", got, err, total)
		}
		b := l.boundary
		for _, ts := range []int64{l.msgs[0].ts - 1000, l.msgs[0].ts, l.msgs[b/2].ts, l.msgs[b-1].ts, l.msgs[b-1].ts + 1,
			l.msgs[b].ts, l.msgs[b].ts + 1, l.msgs[total-2].ts, l.msgs[total-1].ts + 1} {
			got, err := c.OffsetForTime(ctx, q, ts)
			if err != nil || got != l.lower(ts) {
				t.Fatalf("SEARCH_OFFSET_BY_TIMESTAMP(%d) = %d, %v; want %d", ts, got, err, l.lower(ts))
			}
		}
	})

	// The pull consumer's seek: search by time, then PullFrom the offset to the end.
	t.Run("pull consumer seek", func(t *testing.T) {
		pc, err := consumer.NewPullConsumer(consumer.WithNameServer(primitive.NamesrvAddr{dev.Namesrv}), consumer.WithGroupName("cg-retro-pull"),
			consumer.WithInstance("retro-pull"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pc.Subscribe(retroTopic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"}); err != nil {
			t.Fatal(err)
		}
		if err := pc.Start(); err != nil {
			t.Fatal(err)
		}
		defer pc.Shutdown()
		mq := &primitive.MessageQueue{Topic: retroTopic, BrokerName: q.BrokerName, QueueId: int(q.QueueID)}
		b := l.boundary
		for name, ts := range map[string]int64{"cold": l.msgs[b/2].ts, "last cold": l.msgs[b-1].ts,
			"boundary": l.msgs[b-1].ts + 1, "first hot": l.msgs[b].ts, "hot": l.msgs[b+10].ts} {
			start, err := c.OffsetForTime(ctx, q, ts)
			if err != nil {
				t.Fatal(err)
			}
			if start != l.lower(ts) {
				t.Fatalf("%s: search(%d) = %d, want %d", name, ts, start, l.lower(ts))
			}
			next := start
			for next < total {
				res, err := pc.PullFrom(ctx, mq, next, 16)
				if err != nil {
					t.Fatalf("%s: PullFrom %d: %v", name, next, err)
				}
				msgs := res.GetMessageExts()
				if res.Status != primitive.PullFound || len(msgs) == 0 {
					t.Fatalf("%s: PullFrom %d: status %v, %d messages", name, next, res.Status, len(msgs))
				}
				for _, m := range msgs {
					if m.QueueOffset != next || string(m.Body) != l.msgs[next].body {
						t.Fatalf("%s: PullFrom got offset %d, want %d (gap or duplicate at the tier boundary?)", name, m.QueueOffset, next)
					}
					if next == start && m.StoreTimestamp < ts {
						t.Fatalf("%s: first message stored at %d, before %d", name, m.StoreTimestamp, ts)
					}
					next++
				}
			}
		}
	})

	// `strata consume --from-time` replays from the cold tier into the hot tier.
	t.Run("strata consume from time", func(t *testing.T) {
		start := l.boundary - 5
		ts := time.UnixMilli(l.msgs[start].ts).UTC().Format(time.RFC3339Nano)
		out := runCLI(t, "", "consume", "--namesrv", dev.Namesrv, "--topic", retroTopic, "--from-time", ts,
			"--count", fmt.Sprint(total-l.lower(l.msgs[start].ts)))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		first := l.lower(l.msgs[start].ts)
		if int64(len(lines)) != total-first {
			t.Fatalf("consume printed %d lines, want %d:\n%s", len(lines), total-first, out)
		}
		for i, line := range lines {
			off := first + int64(i)
			if !strings.Contains(line, fmt.Sprintf("offset=%d ", off)) || !strings.HasSuffix(line, l.msgs[off].body) {
				t.Fatalf("consume line %d is %.60q, want offset %d", i, line, off)
			}
		}
	})

	// ConsumeFromTimestamp has second resolution; every batch starts in a new second, so the
	// second of a batch's first message names that batch's first offset.
	t.Run("push consumer from timestamp", func(t *testing.T) {
		cases := []struct {
			name  string
			batch int
		}{{"cold", 1}, {"boundary", 3}, {"hot", 4}}
		cols := make([]*offsetsCollector, len(cases))
		for i, tc := range cases {
			first := l.batchStart[tc.batch]
			sec := time.UnixMilli(l.msgs[first].ts).UTC().Truncate(time.Second)
			if want := l.lower(sec.UnixMilli()); want != first {
				t.Fatalf("%s: batch %d starts at %d but its second %v names offset %d", tc.name, tc.batch, first, sec, want)
			}
			cols[i] = newOffsetsCollector()
			startRetroConsumer(t, dev.Namesrv, "cg-retro-ts-"+tc.name, cols[i],
				consumer.WithConsumeFromWhere(consumer.ConsumeFromTimestamp),
				consumer.WithConsumeTimestamp(sec.Format("20060102150405")))
		}
		for i, tc := range cases {
			first := l.batchStart[tc.batch]
			waitUntil(t, 60*time.Second, tc.name+" consumer to reach the end", func() bool {
				counts, _ := cols[i].snapshot()
				return counts[total-1] > 0
			})
			checkExactlyFrom(t, tc.name, l, cols[i], first)
		}
	})

	// A running consumer group is reset to the last cold message's store time (ms precision):
	// the broker stores the offset and tells the client, which re-reads from there.
	t.Run("reset while consuming", func(t *testing.T) {
		const group = "cg-retro-reset"
		o := newOffsetsCollector()
		startRetroConsumer(t, dev.Namesrv, group, o, consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset))
		waitUntil(t, 60*time.Second, "the consumer to read everything", func() bool {
			counts, _ := o.snapshot()
			return len(counts) == int(total)
		})
		waitUntil(t, 30*time.Second, "the consumer to commit the end", func() bool {
			return queueStats(t, c, group).ConsumerOffset == total
		})
		checkExactlyFrom(t, "before reset", l, o, 0)
		_, before := o.snapshot()

		target := l.msgs[l.boundary-1].ts
		resetAt := l.lower(target)
		out := runCLI(t, "", "group", "reset", "--namesrv", dev.Namesrv, "--group", group, "--topic", retroTopic,
			"--to-time", time.UnixMilli(target).UTC().Format(time.RFC3339Nano))
		if !strings.Contains(out, fmt.Sprintf("%d", resetAt)) || !strings.Contains(out, "cold") {
			t.Fatalf("group reset output does not show offset %d in the cold tier:\n%s", resetAt, out)
		}
		s := queueStats(t, c, group)
		if s.ConsumerOffset != resetAt || s.Tier != "cold" {
			t.Fatalf("after reset: %+v; want consumer offset %d in the cold tier", s, resetAt)
		}
		// The client waits ~10 s after the notice before it re-reads (Go v2.1.2, like Java).
		waitUntil(t, 60*time.Second, "the consumer to re-read up to the end", func() bool {
			counts, _ := o.snapshot()
			return counts[total-1] == 2
		})
		counts, order := o.snapshot()
		again := order[len(before):]
		sort.Slice(again, func(i, j int) bool { return again[i] < again[j] })
		if len(again) == 0 || again[0] != resetAt {
			t.Fatalf("after reset the first re-delivered offset is %v, want %d", again[:min(1, len(again))], resetAt)
		}
		for off := int64(0); off < total; off++ {
			want := 1
			if off >= resetAt {
				want = 2
			}
			if counts[off] != want {
				t.Fatalf("offset %d delivered %d times, want %d (reset to %d)", off, counts[off], want, resetAt)
			}
		}
		waitUntil(t, 30*time.Second, "the consumer to commit the end again", func() bool {
			return queueStats(t, c, group).ConsumerOffset == total
		})
		out = runCLI(t, "", "group", "describe", "--namesrv", dev.Namesrv, "--group", group)
		if !strings.Contains(out, retroTopic) || !strings.Contains(out, "total lag 0") {
			t.Fatalf("group describe:\n%s", out)
		}
	})

	t.Run("reset to offset without consumers", func(t *testing.T) {
		const group = "cg-retro-idle"
		runCLI(t, "", "group", "reset", "--namesrv", dev.Namesrv, "--group", group, "--topic", retroTopic,
			"--to-offset", "5", "--queue", "0")
		s := queueStats(t, c, group)
		if s.ConsumerOffset != 5 || s.Tier != "cold" || s.Lag != total-5 {
			t.Fatalf("after reset to 5: %+v", s)
		}
		runCLI(t, "", "group", "reset", "--namesrv", dev.Namesrv, "--group", group, "--topic", retroTopic,
			"--to-offset", fmt.Sprint(l.boundary+3))
		if s := queueStats(t, c, group); s.ConsumerOffset != l.boundary+3 || s.Tier != "hot" {
			t.Fatalf("after reset to %d: %+v", l.boundary+3, s)
		}
		// A new consumer of the group starts where the reset put it.
		o := newOffsetsCollector()
		startRetroConsumer(t, dev.Namesrv, group, o)
		waitUntil(t, 60*time.Second, "the consumer to reach the end", func() bool {
			counts, _ := o.snapshot()
			return counts[total-1] > 0
		})
		checkExactlyFrom(t, "idle group", l, o, l.boundary+3)
	})
}
