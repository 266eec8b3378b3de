package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stratamq/strata/broker/store"
)

// BenchmarkSendTopicLookup measures what a send looks up per topic before it appends (the
// route, the write permission, the incarnation, the queue and the two topic counters), over
// 1,000 topics sent to in turn.
//
//	go test -run=NONE -bench=BenchmarkSendTopicLookup -benchmem ./broker/
func BenchmarkSendTopicLookup(b *testing.B) {
	const topics = 1000
	cfg := Config{DataDir: b.TempDir(), NameServerListen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", HTTPListen: "-",
		Store: store.Config{SegmentBytes: 16 << 20}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	br := startBenchBroker(b, cfg)
	ctx := context.Background()
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("lookup-%d", i)
		if _, err := br.ensureTopic(ctx, names[i], 4); err != nil {
			b.Fatal(err)
		}
	}
	lookup := func(topic string) error {
		t, _, err := br.writableQueue(ctx, topic, -1, false)
		if err != nil {
			return err
		}
		t.countIn(br.metrics, 1, 1024)
		return nil
	}
	for _, t := range names {
		if err := lookup(t); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := lookup(names[i%topics]); err != nil {
				b.Error(err)
				return
			}
			i += 7
		}
	})
}
