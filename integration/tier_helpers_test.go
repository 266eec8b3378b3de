package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/message"
)

// Helpers of the cold-tier tests (tier_test.go).

var tierHTTP = &http.Client{Timeout: 10 * time.Second}

// newTaggedMessage builds message i of produceTagged's layout.
func tierTaggedMessage(topic, body string, i, pad int) *primitive.Message {
	m := primitive.NewMessage(topic, []byte(body+"|"+strings.Repeat("p", pad)))
	if i%2 == 0 {
		m.WithTag("A")
	} else {
		m.WithTag("B")
	}
	return m
}

// sentFrom records an acknowledged send.
func tierSentFrom(t testing.TB, body, tag string, r *primitive.SendResult) tierSent {
	t.Helper()
	_, pos, err := message.ParseOffsetMsgID(r.OffsetMsgID)
	if err != nil {
		t.Fatalf("send %s: offset msg id %q: %v", body, r.OffsetMsgID, err)
	}
	return tierSent{body: body, tag: tag, msgID: r.MsgID, offsetMsgID: r.OffsetMsgID, queueOffset: r.QueueOffset, commitLogOffset: pos}
}

// tierDevArgs are `strata dev` flags for a demo that offloads within a second and keeps no
// offloaded segment on local disk.
var tierDevArgs = []string{"--segment-size", "64KiB", "--seal-after", "200ms", "--local-retention", "0s"}

// tierStatus reads the broker's GET /tier/status.
func tierStatus(t testing.TB, p *strataProc) broker.TierStatus {
	t.Helper()
	resp, err := tierHTTP.Get("http://" + p.HTTP + "/tier/status")
	if err != nil {
		t.Fatalf("GET /tier/status: %v", err)
	}
	defer resp.Body.Close()
	var st broker.TierStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decode /tier/status: %v", err)
	}
	return st
}

// waitAllOffloaded waits until every byte up to the commit-log position end is in the
// bucket and gone from local disk.
func tierWaitOffloaded(t testing.TB, p *strataProc, end int64, timeout time.Duration) broker.TierStatus {
	t.Helper()
	var st broker.TierStatus
	waitUntil(t, timeout, fmt.Sprintf("commit log up to %d offloaded and deleted locally", end), func() bool {
		st = tierStatus(t, p)
		return st.OffloadWatermark > end && st.LocalMinOffset > end
	})
	return st
}

// tierSent is one acknowledged send.
type tierSent struct {
	body, tag, msgID, offsetMsgID string
	queueOffset                   int64
	commitLogOffset               int64
}

// produceTagged sends n messages with bodies prefix-0000.. and tags alternating A and B
// (A at even i), padded to pad bytes, and returns the acknowledged ones.
func tierProduceTagged(t testing.TB, namesrv, topic, prefix string, from, n, pad int) []tierSent {
	t.Helper()
	p := newProducer(t, namesrv)
	var out []tierSent
	for i := from; i < from+n; i++ {
		body := fmt.Sprintf("%s-%04d", prefix, i)
		m := tierTaggedMessage(topic, body, i, pad)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := p.SendSync(ctx, m)
		cancel()
		if err != nil {
			t.Fatalf("send %s: %v", body, err)
		}
		out = append(out, tierSentFrom(t, body, m.GetTags(), r))
	}
	return out
}

// tierGot is one message a consumer received.
type tierGot struct {
	body, tag, msgID, offsetMsgID string
	queueOffset                   int64
}

// tierCollector gathers what a consumer receives, in arrival order.
type tierCollector struct {
	mu   sync.Mutex
	msgs []tierGot
}

func (c *tierCollector) add(msgs ...*primitive.MessageExt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		body, _, _ := strings.Cut(string(m.Body), "|")
		c.msgs = append(c.msgs, tierGot{body: body, tag: m.GetTags(), msgID: m.MsgId, offsetMsgID: m.OffsetMsgId, queueOffset: m.QueueOffset})
	}
}

func (c *tierCollector) snapshot() []tierGot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]tierGot(nil), c.msgs...)
}

// consumeAll runs an orderly push consumer of the official Go client from the first offset
// and returns what it received once want messages arrived.
func tierConsumeAll(t testing.TB, namesrv, group, topic, expr string, want int, timeout time.Duration) []tierGot {
	t.Helper()
	c, err := consumer.NewPushConsumer(
		consumer.WithNameServer(primitive.NamesrvAddr{namesrv}),
		consumer.WithGroupName(group),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		consumer.WithConsumerOrder(true),
		consumer.WithInstance(group),
	)
	if err != nil {
		t.Fatal(err)
	}
	col := &tierCollector{}
	if err := c.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: expr},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			col.add(msgs...)
			return consumer.ConsumeSuccess, nil
		}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("start consumer: %v", err)
	}
	defer c.Shutdown()
	waitUntil(t, timeout, fmt.Sprintf("%d messages for %s", want, group), func() bool { return len(col.snapshot()) >= want })
	time.Sleep(300 * time.Millisecond) // a grace period to notice extra deliveries
	return col.snapshot()
}

// checkReceived asserts got is exactly want, in queue order, with the same offsets and ids.
func tierCheckReceived(t testing.TB, got []tierGot, want []tierSent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("received %d messages, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.body != w.body || g.queueOffset != w.queueOffset || g.msgID != w.msgID || g.offsetMsgID != w.offsetMsgID || g.tag != w.tag {
			t.Fatalf("message %d: got %+v, want %+v", i, g, w)
		}
	}
}

// pullAllFrom pulls one queue with the protocol client from offset 0 until maxOffset,
// returning the messages; a pull error is returned as is.
func tierPullAllFrom(ctx context.Context, namesrv, topic string) ([]*message.Message, error) {
	c, err := client.Dial(ctx, namesrv)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	r, err := c.Route(ctx, topic)
	if err != nil {
		return nil, err
	}
	q := r.Queues(topic)[0]
	maxOff, err := c.MaxOffset(ctx, q)
	if err != nil {
		return nil, err
	}
	var out []*message.Message
	for off := int64(0); off < maxOff; {
		pr, err := c.Pull(ctx, "tier-check", q, off, 64, 0, "*")
		if err != nil {
			return out, err
		}
		out = append(out, pr.Messages...)
		if pr.NextOffset <= off {
			return out, fmt.Errorf("pull at %d made no progress", off)
		}
		off = pr.NextOffset
	}
	sort.Slice(out, func(i, j int) bool { return out[i].QueueOffset < out[j].QueueOffset })
	return out, nil
}

// tierWait is waitUntil with a short poll, for conditions that turn true quickly.
func tierWait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
