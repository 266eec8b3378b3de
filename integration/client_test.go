package integration

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker/client"
)

// These tests drive `strata dev` with the unmodified official Go client.

func createTopic(t testing.TB, namesrv, topic string, queues int) {
	t.Helper()
	runCLI(t, "", "topic", "create", "--namesrv", namesrv, "--topic", topic, "--queues", fmt.Sprint(queues))
}

func TestSendModesAndBatch(t *testing.T) {
	dev := startDev(t, t.TempDir())
	const topic = "send-modes"
	createTopic(t, dev.Namesrv, topic, 4)
	p := newProducer(t, dev.Namesrv)
	ctx := context.Background()

	var want []string
	for _, b := range bodies("sync", 10) {
		res, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(b)).WithKeys([]string{b}))
		if err != nil {
			t.Fatalf("SendSync: %v", err)
		}
		if res.Status != primitive.SendOK || len(res.OffsetMsgID) != 32 || res.MsgID == "" {
			t.Fatalf("SendSync result %+v", res)
		}
		want = append(want, b)
	}
	var wg sync.WaitGroup
	var asyncErr error
	var mu sync.Mutex
	for _, b := range bodies("async", 10) {
		wg.Add(1)
		err := p.SendAsync(ctx, func(_ context.Context, res *primitive.SendResult, err error) {
			defer wg.Done()
			if err == nil && res.Status != primitive.SendOK {
				err = fmt.Errorf("status %v", res.Status)
			}
			if err != nil {
				mu.Lock()
				asyncErr = errors.Join(asyncErr, err)
				mu.Unlock()
			}
		}, primitive.NewMessage(topic, []byte(b)))
		if err != nil {
			t.Fatalf("SendAsync: %v", err)
		}
		want = append(want, b)
	}
	wg.Wait()
	if asyncErr != nil {
		t.Fatalf("async sends: %v", asyncErr)
	}
	for _, b := range bodies("oneway", 10) {
		if err := p.SendOneWay(ctx, primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatalf("SendOneWay: %v", err)
		}
		want = append(want, b)
	}
	var batch []*primitive.Message
	for _, b := range bodies("batch", 10) {
		batch = append(batch, primitive.NewMessage(topic, []byte(b)))
		want = append(want, b)
	}
	res, err := p.SendSync(ctx, batch...)
	if err != nil {
		t.Fatalf("batch SendSync: %v", err)
	}
	if ids := strings.Split(res.OffsetMsgID, ","); len(ids) != 10 {
		t.Fatalf("batch result has %d offset ids: %q", len(ids), res.OffsetMsgID)
	}

	r := newReceived()
	startPushConsumer(t, dev.Namesrv, "cg-send-modes", topic, "*", "c1", r)
	r.waitFor(t, want, 60*time.Second)
	if d := r.duplicates(); len(d) > 0 {
		t.Fatalf("duplicates: %v", d)
	}
	if r.total() != len(want) {
		t.Fatalf("received %d distinct messages, sent %d", r.total(), len(want))
	}
}

func TestClusteringSharesQueuesAndRebalances(t *testing.T) {
	dev := startDev(t, t.TempDir())
	const topic, group = "clustering", "cg-clustering"
	createTopic(t, dev.Namesrv, topic, 4)
	r := newReceived()
	c1, assigned1 := startPushConsumer(t, dev.Namesrv, group, topic, "*", "c1", r)
	_, assigned2 := startPushConsumer(t, dev.Namesrv, group, topic, "*", "c2", r)
	waitUntil(t, 60*time.Second, "both consumers to hold two queues each", func() bool {
		return assigned1() == 2 && assigned2() == 2
	})

	p := newProducer(t, dev.Namesrv)
	first := bodies("first", 100)
	for _, b := range first {
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor(t, first, 60*time.Second)
	if d := r.duplicates(); len(d) > 0 {
		t.Fatalf("clustering delivered %d messages twice: %v", len(d), d[:min(5, len(d))])
	}
	if len(r.by["c1"]) == 0 || len(r.by["c2"]) == 0 {
		t.Fatalf("queues not shared: c1 got %d, c2 got %d", len(r.by["c1"]), len(r.by["c2"]))
	}

	// One consumer leaves: the other takes over every queue and receives everything new.
	if err := c1.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "c2 to take all four queues", func() bool { return assigned2() == 4 })
	second := bodies("second", 50)
	for _, b := range second {
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatal(err)
		}
	}
	r.waitFor(t, second, 60*time.Second)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range second {
		if r.by["c1"][b] {
			t.Fatalf("%s delivered to the consumer that left", b)
		}
	}
}

func TestBroadcastingDeliversToEveryConsumer(t *testing.T) {
	dev := startDev(t, t.TempDir())
	const topic, group = "broadcast", "cg-broadcast"
	createTopic(t, dev.Namesrv, topic, 2)
	r1, r2 := newReceived(), newReceived()
	opt := consumer.WithConsumerModel(consumer.BroadCasting)
	_, a1 := startPushConsumer(t, dev.Namesrv, group, topic, "*", "b1", r1, opt)
	_, a2 := startPushConsumer(t, dev.Namesrv, group, topic, "*", "b2", r2, opt)
	waitUntil(t, 60*time.Second, "both broadcasting consumers to hold every queue", func() bool { return a1() == 2 && a2() == 2 })
	p := newProducer(t, dev.Namesrv)
	want := bodies("bc", 40)
	for _, b := range want {
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatal(err)
		}
	}
	r1.waitFor(t, want, 60*time.Second)
	r2.waitFor(t, want, 60*time.Second)
}

func TestTagFiltering(t *testing.T) {
	dev := startDev(t, t.TempDir())
	const topic = "tags"
	createTopic(t, dev.Namesrv, topic, 2)
	p := newProducer(t, dev.Namesrv)
	var wantA, wantC []string
	for i := 0; i < 60; i++ {
		tag := []string{"TagA", "TagB", "TagC"}[i%3]
		b := fmt.Sprintf("%s-%d", tag, i)
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(b)).WithTag(tag)); err != nil {
			t.Fatal(err)
		}
		switch tag {
		case "TagA":
			wantA = append(wantA, b)
		case "TagC":
			wantC = append(wantC, b)
		}
	}
	r := newReceived()
	startPushConsumer(t, dev.Namesrv, "cg-tags", topic, "TagA || TagC", "t1", r)
	r.waitFor(t, append(wantA, wantC...), 60*time.Second)
	// A sentinel sent after everything else arrives last per queue; once it is in, every
	// message that could have been delivered has been.
	for q := 0; q < 2; q++ {
		s := fmt.Sprintf("TagA-sentinel-%d", q)
		msg := primitive.NewMessage(topic, []byte(s)).WithTag("TagA")
		msg.WithShardingKey(s)
		if _, err := p.SendSync(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 30*time.Second, "sentinels", func() bool { return r.total() >= len(wantA)+len(wantC)+1 })
	r.mu.Lock()
	defer r.mu.Unlock()
	for b, tag := range r.tags {
		if tag != "TagA" && tag != "TagC" {
			t.Fatalf("message %s with tag %q passed the filter", b, tag)
		}
	}
}

func TestPullConsumerExplicitOffsets(t *testing.T) {
	dev := startDev(t, t.TempDir())
	const topic = "pull"
	createTopic(t, dev.Namesrv, topic, 1)
	p := newProducer(t, dev.Namesrv)
	want := bodies("pull", 30)
	for _, b := range want {
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := consumer.NewPullConsumer(
		consumer.WithNameServer(primitive.NamesrvAddr{dev.Namesrv}),
		consumer.WithGroupName("cg-pull"),
		consumer.WithInstance("pull"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"}); err != nil {
		t.Fatal(err)
	}
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Shutdown() })
	mq := &primitive.MessageQueue{Topic: topic, BrokerName: "broker-a", QueueId: 0}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, start := range []int64{0, 10, 25} {
		res, err := pc.PullFrom(ctx, mq, start, 5)
		if err != nil {
			t.Fatalf("PullFrom %d: %v", start, err)
		}
		if res.Status != primitive.PullFound {
			t.Fatalf("PullFrom %d: status %v", start, res.Status)
		}
		msgs := res.GetMessageExts()
		if len(msgs) != 5 || res.NextBeginOffset != start+5 || res.MaxOffset != 30 {
			t.Fatalf("PullFrom %d: %d messages, next %d, max %d", start, len(msgs), res.NextBeginOffset, res.MaxOffset)
		}
		for i, m := range msgs {
			if m.QueueOffset != start+int64(i) || string(m.Body) != want[start+int64(i)] {
				t.Fatalf("PullFrom %d: message %d is offset %d body %q", start, i, m.QueueOffset, m.Body)
			}
		}
	}
	res, err := pc.PullFrom(ctx, mq, 30, 5)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status == primitive.PullFound {
		t.Fatalf("pull past the end found %d messages", len(res.GetMessageExts()))
	}
}

func TestOffsetsResumeAfterBrokerRestart(t *testing.T) {
	data := t.TempDir()
	dev := startDev(t, data)
	const topic, group = "resume", "cg-resume"
	createTopic(t, dev.Namesrv, topic, 2)
	p := newProducer(t, dev.Namesrv)
	first := bodies("before", 40)
	for _, b := range first {
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatal(err)
		}
	}
	r1 := newReceived()
	c1, _ := startPushConsumer(t, dev.Namesrv, group, topic, "*", "r1", r1)
	r1.waitFor(t, first, 60*time.Second)
	if err := c1.Shutdown(); err != nil { // persists the group's offsets to the broker
		t.Fatal(err)
	}
	_ = p.Shutdown()
	// The client persists them oneway: wait until the broker has them, or a restart racing
	// the request would be what the test sees.
	cl, err := client.Dial(context.Background(), dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the group's offsets committed", func() bool {
		qs, err := cl.ConsumeStats(context.Background(), group, topic)
		var sum int64
		for _, q := range qs {
			sum += max(q.ConsumerOffset, 0)
		}
		return err == nil && sum == int64(len(first))
	})
	cl.Close()

	dev.Restart()
	p2 := newProducer(t, dev.Namesrv)
	second := bodies("after", 20)
	for _, b := range second {
		if _, err := p2.SendSync(context.Background(), primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatal(err)
		}
	}
	r2 := newReceived()
	startPushConsumer(t, dev.Namesrv, group, topic, "*", "r2", r2)
	r2.waitFor(t, second, 60*time.Second)
	r2.mu.Lock()
	defer r2.mu.Unlock()
	var again []string
	for _, b := range first {
		if r2.counts[b] > 0 {
			again = append(again, b)
		}
	}
	sort.Strings(again)
	if len(again) > 0 {
		t.Fatalf("after restart the group re-received %d committed messages: %v", len(again), again[:min(5, len(again))])
	}
}

func TestAdminTopicCreation(t *testing.T) {
	dev := startDev(t, t.TempDir(), "--auto-create-topics=false")
	const topic = "admin-made"
	p := newProducer(t, dev.Namesrv)
	_, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte("x")))
	if err == nil {
		t.Fatal("send to a missing topic succeeded with auto-creation off")
	}

	adm, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{dev.Namesrv})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adm.Close() })
	ctx := context.Background()
	if err := adm.CreateTopic(ctx, admin.WithTopicCreate(topic), admin.WithBrokerAddrCreate(dev.Broker),
		admin.WithReadQueueNums(3), admin.WithWriteQueueNums(3)); err != nil {
		t.Fatalf("admin CreateTopic: %v", err)
	}
	list, err := adm.FetchAllTopicList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, name := range list.TopicList {
		found = found || name == topic
	}
	if !found {
		t.Fatalf("topic list %v lacks %s", list.TopicList, topic)
	}
	queues, err := adm.FetchPublishMessageQueues(ctx, topic)
	if err != nil || len(queues) != 3 {
		t.Fatalf("publish queues %v, %v", queues, err)
	}
	out := runCLI(t, "", "topic", "describe", "--namesrv", dev.Namesrv, "--topic", topic)
	if !strings.Contains(out, topic) {
		t.Fatalf("describe output lacks the topic:\n%s", out)
	}
	// The producer caches the failed route for a while; a fresh one sees the topic at once.
	p2 := newProducer(t, dev.Namesrv)
	if _, err := p2.SendSync(ctx, primitive.NewMessage(topic, []byte("y"))); err != nil {
		t.Fatalf("send after admin creation: %v", err)
	}
}
