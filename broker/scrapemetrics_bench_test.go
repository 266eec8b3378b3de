package broker

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/meta"
)

// BenchmarkStateCollector measures a /metrics scrape of a broker whose consumer group has
// committed offsets on 10,000 queues (10 topics × 1,000 queues, each one message behind), the
// lag series included, against the same scrape without them (the baseline: runtime, request
// and throughput series) in the same run.
// go test -run '^$' -bench StateCollector -benchtime 20x ./broker/
func BenchmarkStateCollector(b *testing.B) {
	const topics, queues = 10, 1000
	e := newTierEnv(b)
	br := e.startBroker(b, b.TempDir(), func(c *Config) { c.Store.SegmentBytes, c.Store.SealAfter = 16<<20, 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	batch := make([][]byte, 0, queues)
	for ti := range topics {
		name := fmt.Sprintf("Lag%d", ti)
		if err := br.meta.putTopic(ctx, topicInfo{Name: name, ReadQueueNums: queues, WriteQueueNums: queues, Perm: permRW}, []string{br.cfg.BrokerName}); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
		for q := range queues {
			m := &message.Message{Topic: name, QueueID: int32(q), BornTimestamp: time.Now().UnixMilli(),
				BornHost: br.storeHost, StoreHost: br.storeHost, Body: []byte("x")}
			rec, err := m.AppendEncoded(nil)
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, rec)
		}
		if _, err := br.store.Append(ctx, batch...); err != nil {
			b.Fatal(err)
		}
		for q := range queues {
			br.meta.offsets.Commit(meta.QueueKey{Group: "bench", Topic: name, QueueID: int32(q)}, 0)
		}
	}
	h := br.HTTPHandler()
	scrape := func(b *testing.B) {
		var bytes int
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if rec.Code != 200 {
				b.Fatalf("scrape: %d", rec.Code)
			}
			bytes = rec.Body.Len()
		}
		b.ReportMetric(float64(bytes), "bytes/scrape")
	}
	b.Run("without-lag", func(b *testing.B) {
		if !br.metrics.reg.Unregister(br.metrics.state) {
			b.Fatal("state collector not registered")
		}
		defer br.metrics.reg.MustRegister(br.metrics.state)
		scrape(b)
	})
	b.Run("lag-10000-queues", func(b *testing.B) {
		if got := gaugeValueTB(b, br, "bench", "Lag9", "999"); got != 1 {
			b.Fatalf("lag of Lag9/999 is %v, want 1", got)
		}
		scrape(b)
	})
}

func gaugeValueTB(b *testing.B, br *Broker, group, topic, queue string) float64 {
	mfs, err := br.metrics.reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "strata_broker_consumer_lag_messages" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["group"] == group && l["topic"] == topic && l["queue"] == queue {
				return m.GetGauge().GetValue()
			}
		}
	}
	b.Fatalf("no lag series for %s %s/%s", group, topic, queue)
	return 0
}
