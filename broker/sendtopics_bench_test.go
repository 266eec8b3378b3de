package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
)

// BenchmarkSendTopicLookup measures what a send looks up per topic before it appends (the
// route, the write permission, the incarnation, the queue and the two topic counters), over
// 1, 1,000 and 10,000 topics sent to in turn.
//
//	go test -run=NONE -bench=BenchmarkSendTopicLookup -benchmem ./broker/
func BenchmarkSendTopicLookup(b *testing.B) {
	cfg := Config{DataDir: b.TempDir(), NameServerListen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", HTTPListen: "-",
		Store: store.Config{SegmentBytes: 16 << 20}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	br := startBenchBroker(b, cfg)
	ctx := context.Background()
	var names []string
	for _, topics := range []int{1, 1000, 10000} {
		for i := len(names); i < topics; i++ {
			names = append(names, fmt.Sprintf("lookup-%d", i))
			if _, err := br.ensureTopic(ctx, names[i], 4); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) { benchTopicLookup(b, br, names) })
	}
}

func benchTopicLookup(b *testing.B, br *Broker, names []string) {
	ctx := context.Background()
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
	topics := len(names)
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

// BenchmarkWritableTopicsCurrent measures the send path's lookup of a topic's entry alone,
// over 1 and 10,000 topics sent to in turn.
//
//	go test -run=NONE -bench=BenchmarkWritableTopicsCurrent ./broker/
func BenchmarkWritableTopicsCurrent(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("topics=%d", n), func(b *testing.B) {
			var w writableTopics
			snap := &meta.Snapshot{}
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("bench-%d", i)
				w.keep(&writableTopic{snap: snap, info: topicInfo{Name: names[i]}})
			}
			for _, t := range names { // publishes every topic to the read map
				w.current(t, snap, 0)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := w.current(names[i%n], snap, 0); !ok {
						b.Error("missing")
						return
					}
					i += 7
				}
			})
		})
	}
}
