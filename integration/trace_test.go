package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/stratamq/strata/query"
)

// TestMessageTrace: with topic auto-creation off, RMQ_SYS_TRACE_TOPIC still exists, so the
// official client's trace records (WithTrace on producer and consumer) are stored, and
// `strata trace` reads back the publish and the consumer group's delivery.
func TestMessageTrace(t *testing.T) {
	dev := startDev(t, t.TempDir(), "--auto-create-topics=false")
	const topic, key = "traced", "order-42"
	createTopic(t, dev.Namesrv, topic, 2)
	traceCfg := func(group string) *primitive.TraceConfig { return traceConfig(t, dev.Namesrv, group) }
	p := newProducer(t, dev.Namesrv, producer.WithGroupName("pg-traced"), producer.WithTrace(traceCfg("pg-traced")))
	res, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte("traced body")).WithKeys([]string{key}).WithTag("paid"))
	if err != nil {
		t.Fatal(err)
	}
	r := newReceived()
	startPushConsumer(t, dev.Namesrv, "cg-traced", topic, "*", "tracer", r, consumer.WithTrace(traceCfg("cg-traced")))
	r.waitFor(t, []string{"traced body"}, 60*time.Second)

	var recs []query.TraceRecord
	waitUntil(t, 60*time.Second, "publish and delivery traces readable", func() bool {
		out, err := exec.Command(strataBin, "trace", "--namesrv", dev.Namesrv, "--id", res.MsgID, "--json").Output()
		if err != nil {
			return false
		}
		recs = recs[:0]
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var rec query.TraceRecord
			if dec.Decode(&rec) != nil {
				break
			}
			recs = append(recs, rec)
		}
		types := map[string]bool{}
		for _, rec := range recs {
			types[rec.Type] = true
		}
		return types[query.TracePub] && types[query.TraceSubBefore] && types[query.TraceSubAfter]
	})
	for _, rec := range recs {
		switch rec.Type {
		case query.TracePub:
			if rec.Group != "pg-traced" || rec.Topic != topic || rec.Keys != key || rec.Tags != "paid" || !rec.Success || rec.StoreHost == "" {
				t.Errorf("publish record %+v", rec)
			}
		case query.TraceSubBefore, query.TraceSubAfter:
			if rec.Group != "cg-traced" {
				t.Errorf("delivery record of group %q, want cg-traced: %+v", rec.Group, rec)
			}
			if rec.Type == query.TraceSubAfter && !rec.Success {
				t.Errorf("consume result %+v, want success", rec)
			}
		}
	}
	out := runCLI(t, "", "trace", "--namesrv", dev.Namesrv, "--key", key)
	if !strings.Contains(out, "publish") || !strings.Contains(out, "group pg-traced") || !strings.Contains(out, "deliver") ||
		!strings.Contains(out, "group cg-traced") || !strings.Contains(out, "success true") {
		t.Fatalf("strata trace --key output:\n%s", out)
	}
}
