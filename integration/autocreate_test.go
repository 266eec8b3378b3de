package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// TestAutoCreateOnFirstSend drives strata dev (auto-creation on) with the official client: a
// producer sends to a topic that does not exist yet, so the client falls back to the TBW102
// route and the broker creates the topic on the first send; a push consumer then receives
// every message. (It lived in the broker package, but the race detector that package runs
// under reports data races inside rocketmq-client-go v2.1.2 itself.)
func TestAutoCreateOnFirstSend(t *testing.T) {
	dev := startDev(t, t.TempDir())
	const topic, n = "GoE2E", 20
	p := newProducer(t, dev.Namesrv)
	var want []string
	for i := range n {
		body := fmt.Sprintf("m-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(body)).WithTag("TagA"))
		cancel()
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if res.Status != primitive.SendOK || len(res.OffsetMsgID) != 32 {
			t.Fatalf("send %d: %+v", i, res)
		}
		want = append(want, body)
	}
	r := newReceived()
	startPushConsumer(t, dev.Namesrv, "e2e-cg", topic, "TagA || TagB", "e2e-consumer", r)
	r.waitFor(t, want, 60*time.Second)
}
