package txn

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

// benchEnv is a Service over a real store for benchmarks (no check loop).
func benchEnv(b *testing.B) (*Service, *store.Store) {
	b.Helper()
	st, err := store.Open(store.Config{Dir: b.TempDir(), SegmentBytes: 256 << 20})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := Open(context.Background(), Config{StoreHost: testStoreHost, noLoop: true, MaxPending: 10_000_000},
		Deps{Log: StoreLog{Store: st}, Checker: &recordingChecker{}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Close(); st.Close() })
	return svc, st
}

func benchMessage(i int) *message.Message {
	return &message.Message{Topic: "orders", QueueID: int32(i % 4), BornTimestamp: time.Now().UnixMilli(), BornHost: testBornHost, StoreHost: testStoreHost,
		Body: make([]byte, 100), Properties: map[string]string{message.PropertyUniqKey: fmt.Sprintf("%032d", i), message.PropertyTransactionPrep: "true",
			message.PropertyProducerGroup: testGroup}}
}

// BenchmarkPendingMemoryInService reports the heap a pending half message costs in the
// broker: the service's entry plus the store's consume-queue and key-index entries for the
// half message record (its bytes are on disk), at 200,000 pending.
// go test -run '^$' -bench PendingMemoryInService -benchtime 1x ./broker/txn/
func BenchmarkPendingMemoryInService(b *testing.B) {
	const n = 200_000
	for b.Loop() {
		svc, _ := benchEnv(b)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := 0; i < n; i++ {
			if _, err := svc.Prepare(context.Background(), benchMessage(i), testGroup); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if svc.PendingCount() != n {
			b.Fatalf("pending %d", svc.PendingCount())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-bytes/pending")
	}
}

// BenchmarkPrepareCommitVsAppend compares, over one store, a plain append of a message with
// a transaction through the service: Prepare then End commit (two appends, the second of
// two records). Async flush, one goroutine.
// go test -run '^$' -bench PrepareCommitVsAppend ./broker/txn/
func BenchmarkPrepareCommitVsAppend(b *testing.B) {
	svc, st := benchEnv(b)
	ctx := context.Background()
	b.Run("plain-append", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			rec, _ := benchMessage(i).AppendEncoded(nil)
			if _, err := st.Append(ctx, rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prepare-commit", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			p, err := svc.Prepare(ctx, benchMessage(i), testGroup)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := svc.End(ctx, EndRequest{ProducerGroup: testGroup, TranStateTableOffset: p.QueueOffset, CommitLogOffset: p.CommitLogOffset, Decision: DecisionCommit}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCheckRoundScan measures a check round over a million pending half messages of
// which none is due: before the earliest due time (what most rounds are), and a full scan of
// the table (what a round costs when something is due), taken in chunks of the lock.
// go test -run '^$' -bench CheckRoundScan ./broker/txn/
func BenchmarkCheckRoundScan(b *testing.B) {
	s := &Service{cfg: Config{Clock: systemClock{}, MaxChecksPerRound: DefaultMaxChecksPerRound, CheckInterval: DefaultCheckInterval}}
	s.m = newMetrics(nil, s)
	due := time.Now().Add(time.Hour).UnixMilli()
	for p := int64(0); p < 1_000_000; p++ {
		s.t.insert(entry{pos: p, dueMs: due}, testGroup)
	}
	ctx := context.Background()
	b.Run("before-due", func(b *testing.B) {
		s.checkRound(ctx)
		for b.Loop() {
			s.checkRound(ctx)
		}
	})
	b.Run("full-scan", func(b *testing.B) {
		for b.Loop() {
			s.mu.Lock()
			s.minDueMs = 0
			s.mu.Unlock()
			s.checkRound(ctx)
		}
	})
}
