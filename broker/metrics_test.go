package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
)

// series finds the metric of family name whose labels include want; ok is false if none.
func series(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) (*dto.Metric, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return m, true
		}
	}
	return nil, false
}

// mustSeries is series that fails the test when the series is missing, listing what exists.
func mustSeries(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) *dto.Metric {
	t.Helper()
	if m, ok := series(t, reg, name, want); ok {
		return m
	}
	mfs, _ := reg.Gather()
	var have []string
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				have = append(have, fmt.Sprint(m.GetLabel()))
			}
		}
	}
	t.Fatalf("no series %s%v; the family has %v", name, want, have)
	return nil
}

func gaugeValue(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	return mustSeries(t, reg, name, want).GetGauge().GetValue()
}

func commitOffset(t *testing.T, env *testEnv, group, topic string, queue int, off int64) {
	t.Helper()
	wantCode(t, invoke(t, env.bk, remoting.CodeUpdateConsumerOffset, remoting.ExtFields{
		"consumerGroup": group, "topic": topic, "queueId": strconv.Itoa(queue), "commitOffset": strconv.FormatInt(off, 10)}, nil), remoting.RespSuccess)
}

func TestRequestDurationByNameAndResult(t *testing.T) {
	env := startBroker(t, nil)
	reg := env.b.Registry()
	createTopic(t, env, "R", 1)
	wantCode(t, send(t, env, "R", 0, "", "x"), remoting.RespSuccess)
	wantCode(t, send(t, env, "R", 0, "", "y"), remoting.RespSuccess)
	wantCode(t, invoke(t, env.bk, remoting.CodePullMessage, pullExt("R", 0, 0, "*", 0), nil), remoting.RespSuccess)
	wantCode(t, invoke(t, env.bk, 9999, nil, nil), remoting.RespRequestCodeNotSupported)
	wantCode(t, invoke(t, env.ns, remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "R"}, nil), remoting.RespSuccess)
	wantCode(t, invoke(t, env.bk, remoting.CodeSendMessage, remoting.ExtFields{"producerGroup": "pg"}, []byte("x")), remoting.RespInvalidParameter)

	for _, c := range []struct {
		role, request, result string
		count                 uint64
	}{
		{"broker", "send", "ok", 2},
		{"broker", "pull", "ok", 1},
		{"broker", "other", "request_code_not_supported", 1},
		{"broker", "send", "invalid_parameter", 1},
		{"namesrv", "get_route", "ok", 1},
		{"namesrv", "create_topic", "ok", 1},
	} {
		m := mustSeries(t, reg, "strata_broker_request_duration_seconds", map[string]string{"role": c.role, "request": c.request, "result": c.result})
		if got := m.GetHistogram().GetSampleCount(); got != c.count {
			t.Errorf("%s/%s/%s: %d requests observed, want %d", c.role, c.request, c.result, got, c.count)
		}
	}
	if _, ok := series(t, reg, "strata_broker_requests_total", nil); ok {
		t.Error("the counter by raw code is still exported")
	}
}

// A long-polling pull's held time is the client's suspend time, not service time.
func TestRequestDurationLeavesOutHeldTime(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "H", 1)
	const hold = time.Second
	start := time.Now()
	wantCode(t, invoke(t, env.bk, remoting.CodePullMessage, pullExt("H", 0, 0, "*", hold), nil), remoting.RespPullNotFound)
	if waited := time.Since(start); waited < hold {
		t.Fatalf("the pull came back after %v, before its suspend time %v: it was not held", waited, hold)
	}
	h := mustSeries(t, env.b.Registry(), "strata_broker_request_duration_seconds",
		map[string]string{"role": "broker", "request": "pull", "result": "pull_not_found"}).GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() >= hold.Seconds()/2 {
		t.Fatalf("held pull observed as %d samples summing %.3fs; want 1 sample without the %v held", h.GetSampleCount(), h.GetSampleSum(), hold)
	}
}

func TestTopicLabelsAreBounded(t *testing.T) {
	m := newMetrics(MetricsConfig{MaxTopics: 2, MaxLagQueues: 1})
	for _, topic := range []string{"a", "b", "c", "d", "a"} {
		m.messagesIn.WithLabelValues(topic).Inc()
	}
	for topic, want := range map[string]float64{"a": 2, "b": 1, otherTopics: 2} {
		if got := mustSeries(t, m.reg, "strata_broker_messages_in_total", map[string]string{"topic": topic}).GetCounter().GetValue(); got != want {
			t.Errorf("topic %q counted %v, want %v", topic, got, want)
		}
	}
	for _, topic := range []string{"c", "d"} {
		if _, ok := series(t, m.reg, "strata_broker_messages_in_total", map[string]string{"topic": topic}); ok {
			t.Errorf("topic %q has its own series past the limit of 2", topic)
		}
	}
	// Topics share the admitted set across the four families.
	m.bytesOut.WithLabelValues("c").Add(3)
	if got := mustSeries(t, m.reg, "strata_broker_bytes_out_total", map[string]string{"topic": otherTopics}).GetCounter().GetValue(); got != 3 {
		t.Errorf("bytes out of a topic past the limit: %v under (other), want 3", got)
	}
}

func TestConsumerLagMetrics(t *testing.T) {
	env := startBroker(t, func(c *Config) { c.Metrics.MaxLagQueues = 3 })
	reg := env.b.Registry()
	createTopic(t, env, "L", 2)
	createTopic(t, env, "M", 2)
	for i := 0; i < 3; i++ {
		wantCode(t, send(t, env, "L", 0, "", fmt.Sprint(i)), remoting.RespSuccess)
	}
	wantCode(t, send(t, env, "L", 1, "", "z"), remoting.RespSuccess)
	wantCode(t, send(t, env, "M", 0, "", "m"), remoting.RespSuccess)
	commitOffset(t, env, "g", "L", 0, 1)
	commitOffset(t, env, "g", "L", 1, 1)
	commitOffset(t, env, "g", "M", 0, 0)
	commitOffset(t, env, "g", "M", 1, 0)

	firstUnconsumed, ok := env.b.store.StoreTimeAt("L", 0, 1)
	if !ok {
		t.Fatal("L/0 offset 1 is not in the store")
	}
	env.b.metrics.state.now = func() time.Time { return time.UnixMilli(firstUnconsumed + 4500) }

	want := func(topic, queue string, msgs, secs float64) {
		t.Helper()
		l := map[string]string{"group": "g", "topic": topic, "queue": queue}
		if got := gaugeValue(t, reg, "strata_broker_consumer_lag_messages", l); got != msgs {
			t.Errorf("lag of g on %s/%s: %v messages, want %v", topic, queue, got, msgs)
		}
		if got := gaugeValue(t, reg, "strata_broker_consumer_lag_seconds", l); got != secs {
			t.Errorf("lag of g on %s/%s: %v seconds, want %v", topic, queue, got, secs)
		}
	}
	want("L", "0", 2, 4.5)
	want("L", "1", 0, 0) // caught up
	// M's two queues would pass the limit of 3 per-queue series: one series for the topic.
	mTime, _ := env.b.store.StoreTimeAt("M", 0, 0)
	want("M", lagAllQueues, 1, float64(firstUnconsumed+4500-mTime)/1000)
	if _, ok := series(t, reg, "strata_broker_consumer_lag_messages", map[string]string{"topic": "M", "queue": "0"}); ok {
		t.Error("M/0 has a per-queue series past the limit")
	}
	if got := gaugeValue(t, reg, "strata_broker_consumer_lag_aggregated_topics", nil); got != 1 {
		t.Errorf("%v topics reported as (all), want 1", got)
	}
	// Consuming catches the group up.
	commitOffset(t, env, "g", "L", 0, 3)
	want("L", "0", 0, 0)
}

func TestFlushMetrics(t *testing.T) {
	env := startBroker(t, func(c *Config) { c.Store.FlushMode = store.FlushSync })
	createTopic(t, env, "F", 1)
	before := mustSeries(t, env.b.Registry(), "strata_store_flush_duration_seconds", nil).GetHistogram().GetSampleCount()
	for i := 0; i < 3; i++ {
		wantCode(t, send(t, env, "F", 0, "", "x"), remoting.RespSuccess)
	}
	after := mustSeries(t, env.b.Registry(), "strata_store_flush_duration_seconds", nil).GetHistogram().GetSampleCount()
	if after-before < 3 {
		t.Fatalf("%d fsyncs observed for 3 sends under sync flush, want at least 3", after-before)
	}
	if got := mustSeries(t, env.b.Registry(), "strata_store_flush_failures_total", nil).GetCounter().GetValue(); got != 0 {
		t.Fatalf("%v flush failures on a healthy disk", got)
	}
}

func TestTierBacklogMetrics(t *testing.T) {
	e := newTierEnv(t)
	e.bucket.failing.Store(true) // offload fails: everything sent stays in the backlog
	env := e.start(t, t.TempDir(), nil)
	reg := env.b.Registry()
	createTopic(t, env, "B", 1)
	for i := 0; i < 20; i++ {
		wantCode(t, send(t, env, "B", 0, "", strings.Repeat("b", 4000)), remoting.RespSuccess)
	}
	first, ok := env.b.store.StoreTimeAt("B", 0, 0)
	if !ok {
		t.Fatal("B/0 offset 0 is not in the store")
	}
	env.b.metrics.state.now = func() time.Time { return time.UnixMilli(first + 7000) }
	if got := gaugeValue(t, reg, "strata_tier_backlog_bytes", nil); got < 20*4000 {
		t.Errorf("backlog %v bytes with 20 messages of 4000 bytes not offloaded", got)
	}
	// Nothing was ever offloaded, so the oldest byte not offloaded is the first message.
	if got := gaugeValue(t, reg, "strata_tier_backlog_seconds", nil); got != 7 {
		t.Errorf("backlog age %vs, want 7s (now − the first message's store time)", got)
	}

	e.bucket.failing.Store(false)
	env.b.metrics.state.now = time.Now
	deadline := time.Now().Add(30 * time.Second)
	for gaugeValue(t, reg, "strata_tier_backlog_bytes", nil) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("backlog still %v bytes 30s after the bucket came back (watermark %d, log end %d)",
				gaugeValue(t, reg, "strata_tier_backlog_bytes", nil), env.b.tier.OffloadWatermark(), env.b.store.MaxCommitLogOffset())
		}
		waitCtx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_ = env.b.tier.WaitOffloaded(waitCtx, env.b.store.MaxCommitLogOffset())
		cancel()
	}
	if got := gaugeValue(t, reg, "strata_tier_backlog_seconds", nil); got != 0 {
		t.Errorf("backlog age %vs with nothing left to offload, want 0", got)
	}
}

// BenchmarkTopicCounter is one counter lookup of a send: a topic within the label limit
// (cached) beside one past it (the shared (other) counter).
func BenchmarkTopicCounter(b *testing.B) {
	m := newMetrics(MetricsConfig{MaxTopics: 1, MaxLagQueues: 1})
	m.messagesIn.WithLabelValues("admitted").Inc()
	for _, topic := range []string{"admitted", "past-the-limit"} {
		b.Run(topic, func(b *testing.B) {
			for range b.N {
				m.messagesIn.WithLabelValues(topic).Inc()
			}
		})
	}
}
