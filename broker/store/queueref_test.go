package store

import (
	"context"
	"fmt"
	"testing"
)

// A QueueRef follows its topic through a deletion: appends after it go to the new queue,
// whose offsets start at 0, and a record of another queue is not appended to the ref's.
func TestAppendViaQueueRef(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	var ref QueueRef
	for i := range 3 {
		res, err := s.AppendVia(ctx, &ref, encode(t, "orders", 1, body(i), nil))
		if err != nil {
			t.Fatal(err)
		}
		if res[0].QueueOffset != int64(i) {
			t.Fatalf("append %d: queue offset %d", i, res[0].QueueOffset)
		}
	}
	// A record of another queue through the same ref lands in its own queue.
	if res, err := s.AppendVia(ctx, &ref, encode(t, "orders", 2, body(9), nil)); err != nil || res[0].QueueOffset != 0 {
		t.Fatalf("other queue via the ref: %v %v", res, err)
	}
	if err := s.DeleteTopic(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	res, err := s.AppendVia(ctx, &ref, encode(t, "orders", 1, body(3), nil))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].QueueOffset != 0 {
		t.Fatalf("append after delete: queue offset %d, want 0", res[0].QueueOffset)
	}
	if got := readAll(t, s, "orders", 1); len(got) != 1 || string(got[0].Body) != body(3) {
		t.Fatalf("after delete read %d messages", len(got))
	}
}

// BenchmarkQueueResolve measures how an append finds its consume queue among 40,000 (10,000
// topics of 4 queues): by the store's lookup, or through the appender's QueueRef.
//
//	go test -run=NONE -bench=BenchmarkQueueResolve -benchmem ./broker/store/
func BenchmarkQueueResolve(b *testing.B) {
	s := openStore(b, Config{})
	const topics, queues = 10000, 4
	names := make([]string, topics)
	refs := make([]QueueRef, topics*queues)
	for i := range names {
		names[i] = fmt.Sprintf("topic-%05d", i)
		for q := range queues {
			refs[i*queues+q].keep(s.queue(names[i], int32(q), true))
		}
	}
	b.Run("lookup", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if s.queue(names[i%topics], int32(i%queues), true) == nil {
					b.Error("no queue")
				}
				i += 7
			}
		})
	})
	b.Run("ref", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				t := i % topics
				if refs[t*queues+i%queues].queue(names[t], int32(i%queues)) == nil {
					b.Error("no queue")
				}
				i += 7
			}
		})
	})
}
