package broker

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/broker/timer"
)

func sendWithProps(t *testing.T, env *testEnv, topic string, queue int, props map[string]string, body string) *remoting.Command {
	t.Helper()
	return invoke(t, env.bk, remoting.CodeSendMessage, remoting.ExtFields{
		"producerGroup": "pg", "topic": topic, "queueId": strconv.Itoa(queue), "sysFlag": "0",
		"bornTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "flag": "0",
		"properties": message.EncodeProperties(props), "reconsumeTimes": "0", "unitMode": "false",
		"maxReconsumeTimes": "0", "batch": "false", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
	}, []byte(body))
}

func TestScheduledSendIsParkedThenDelivered(t *testing.T) {
	env := startBroker(t, func(c *Config) { c.MessageDelayLevel = "100ms 300ms"; c.TimerMaxDelay = time.Hour })
	createTopic(t, env, "D", 2)
	sent := time.Now()
	resp := sendWithProps(t, env, "D", 1, map[string]string{message.PropertyDelayLevel: "2", message.PropertyKeys: "order-7"}, "later")
	wantCode(t, resp, remoting.RespSuccess)
	// RocketMQ answers with the parked record's offset id and queue offset, and the real
	// queue id.
	if resp.ExtFields["queueId"] != "1" || resp.ExtFields["queueOffset"] != "0" {
		t.Fatalf("send response %v", resp.ExtFields)
	}
	_, pos, err := message.ParseOffsetMsgID(resp.ExtFields["msgId"])
	if err != nil {
		t.Fatal(err)
	}
	view := invoke(t, env.bk, remoting.CodeViewMessageByID, remoting.ExtFields{"offset": strconv.FormatInt(pos, 10)}, nil)
	wantCode(t, view, remoting.RespSuccess)
	if parked, _, err := message.Decode(view.Body); err != nil || parked.Topic != timer.ParkTopic {
		t.Fatalf("msgId points at %+v (%v), want the parked record", parked, err)
	}
	resp = invoke(t, env.bk, remoting.CodePullMessage, pullExt("D", 1, 0, "*", 10*time.Second), nil)
	wantCode(t, resp, remoting.RespSuccess)
	msgs, err := message.DecodeAll(resp.Body)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("pulled %d messages: %v", len(msgs), err)
	}
	got := msgs[0]
	if wait := got.StoreTimestamp - sent.UnixMilli(); wait < 300 {
		t.Fatalf("delivered %dms after the send, before level 2's 300ms", wait)
	}
	if string(got.Body) != "later" || got.Properties[message.PropertyKeys] != "order-7" || got.Properties[message.PropertyDelayLevel] != "" {
		t.Fatalf("delivered %+v", got)
	}

	// A delivery time in the past is delivered at once; one beyond the limit is refused.
	resp = sendWithProps(t, env, "D", 0, map[string]string{timer.PropertyTimerDeliverMs: "1"}, "now")
	wantCode(t, resp, remoting.RespSuccess)
	if resp.ExtFields["queueOffset"] != "0" || env.b.store.MaxOffset("D", 0) != 1 {
		t.Fatalf("past delivery time was not delivered at once: %v", resp.ExtFields)
	}
	resp = sendWithProps(t, env, "D", 0, map[string]string{timer.PropertyTimerDelaySec: "7200"}, "too far")
	wantCode(t, resp, remoting.RespMessageIllegal)
	// The timer's own topics take no sends and cannot be deleted.
	wantCode(t, sendWithProps(t, env, timer.ParkTopic, 0, nil, "x"), remoting.RespNoPermission)
	wantCode(t, invoke(t, env.bk, remoting.CodeDeleteTopicInBroker, remoting.ExtFields{"topic": timer.ParkTopic}, nil), remoting.RespInvalidParameter)

	// The timer counts a fire once its append returns, which can be after the pull above
	// was answered with the delivered message.
	waitFor(t, "the fire counted", func() bool { return env.b.timerService().Status().Fired == 1 })
	r, err := http.Get("http://" + env.b.HTTPAddr() + "/timer/status")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	raw, _ := io.ReadAll(r.Body)
	var st timer.Status
	if err := json.Unmarshal(raw, &st); err != nil || st.Scheduled != 1 || st.Fired != 1 || st.Pending != 0 || len(st.DelayLevels) != 2 {
		t.Fatalf("/timer/status: %v %s", err, raw)
	}
	r, err = http.Get("http://" + env.b.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	raw, _ = io.ReadAll(r.Body)
	for _, series := range []string{`strata_timer_pending_messages{horizon="1m"} 0`, `strata_timer_pending_messages{horizon="+Inf"} 0`,
		"strata_timer_fired_messages_total 1", "strata_timer_scheduled_messages_total 1", `strata_timer_lateness_seconds_bucket{le="0.1"}`} {
		if !strings.Contains(string(raw), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

// Without a cold tier nothing is deleted locally, so a pending timer's segment stays.
func TestPendingTimerSegmentStaysWithoutTier(t *testing.T) {
	env := startBroker(t, func(c *Config) {
		c.Store = store.Config{SegmentBytes: 64 << 10, SealAfter: 20 * time.Millisecond, MaxMessageBytes: 32 << 10}
		c.MaxMessageBytes = 16 << 10
	})
	createTopic(t, env, "S", 1)
	resp := sendWithProps(t, env, "S", 0, map[string]string{timer.PropertyTimerDelayMs: "1500"}, "kept")
	wantCode(t, resp, remoting.RespSuccess)
	_, pos, _ := message.ParseOffsetMsgID(resp.ExtFields["msgId"])
	for i := 0; len(env.b.store.SealedSegments()) < 3; i++ {
		wantCode(t, send(t, env, "S", 0, "", strconv.Itoa(i)), remoting.RespSuccess)
	}
	if sealed := env.b.store.SealedSegments(); sealed[0].BaseOffset > pos || sealed[0].EndOffset <= pos {
		t.Fatalf("the parked record at %d is not in the first sealed segment %+v", pos, sealed[0])
	}
	waitFor(t, "the timer to fire", func() bool { return env.b.TimerStatus().Fired == 1 })
	if min := env.b.store.MinCommitLogOffset(); min > pos {
		t.Fatalf("local min offset %d passed the parked record at %d", min, pos)
	}
}
