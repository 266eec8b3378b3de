package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// TestGoClientEndToEnd drives the broker with the official RocketMQ Go client v2.1.2: a
// producer sends with SendSync to an auto-created topic (TBW102 fallback) and a push consumer
// receives every message.
func TestGoClientEndToEnd(t *testing.T) {
	rlog.SetLogLevel("error")
	env := startBroker(t, func(c *Config) { c.AutoCreateTopics = true })
	ns := primitive.NamesrvAddr{env.b.NameServerAddr()}
	const topic, n = "GoE2E", 20

	// Distinct instance names give the producer and the consumer their own client objects:
	// v2.1.2 shares one per instance name and then races on it (a data race inside the client,
	// in GetOrNewRocketMQClient and route refresh, that -race reports).
	p, err := producer.NewDefaultProducer(producer.WithNameServer(ns), producer.WithGroupName("e2e-pg"), producer.WithRetry(2),
		producer.WithInstanceName("e2e-producer"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()
	sent := map[string]bool{}
	for i := range n {
		msg := primitive.NewMessage(topic, []byte(fmt.Sprintf("m-%d", i)))
		msg.WithTag("TagA")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := p.SendSync(ctx, msg)
		cancel()
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if res.Status != primitive.SendOK || len(res.OffsetMsgID) != 32 {
			t.Fatalf("send %d: %+v", i, res)
		}
		sent[fmt.Sprintf("m-%d", i)] = true
	}

	c, err := consumer.NewPushConsumer(consumer.WithNameServer(ns), consumer.WithGroupName("e2e-cg"),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset), consumer.WithInstance("e2e-consumer"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]bool{}
	all := make(chan struct{})
	err = c.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: "TagA || TagB"},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				got[string(m.Body)] = true
			}
			if len(got) == n {
				select {
				case <-all:
				default:
					close(all)
				}
			}
			return consumer.ConsumeSuccess, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("received %d of %d messages", len(got), n)
	}
	for k := range sent {
		if !got[k] {
			t.Errorf("message %s not received", k)
		}
	}
}
