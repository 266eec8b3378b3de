package timer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

// BenchmarkPendingTimers parks N timers a year out (N from STRATA_TIMER_BENCH_PENDING,
// comma-separated; default 1000000) and reports, per pending timer, the timer index's heap
// and disk and, as the baseline measured in the same run, the hot store's own heap and
// commit-log bytes for the same records. Run it alone:
//
//	STRATA_TIMER_BENCH_PENDING=1000000,10000000 go test -run=NONE -bench=PendingTimers -benchtime=1x ./broker/timer/
func BenchmarkPendingTimers(b *testing.B) {
	sizes := []int{1_000_000}
	if v := os.Getenv("STRATA_TIMER_BENCH_PENDING"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("STRATA_TIMER_BENCH_PENDING=%q: want counts such as 1000000,10000000", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			for range b.N {
				benchPending(b, n)
			}
		})
	}
}

func heapAlloc() int64 {
	time.Sleep(200 * time.Millisecond) // two store index checkpoints
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// fillStore appends n records like parked ones (128-byte body, a unique key, REAL_TOPIC,
// REAL_QID, TIMER_OUT_MS) to topic/0, in appends of 1000.
func fillStore(b *testing.B, st *store.Store, topic string, n int, dueMs int64) time.Duration {
	body := []byte(strings.Repeat("b", 128))
	recs := make([][]byte, 0, 1000)
	start := time.Now()
	for i := range n {
		m := &message.Message{Topic: topic, Body: body, StoreHost: testHost, BornHost: testHost, Properties: map[string]string{
			message.PropertyUniqKey: fmt.Sprintf("0A0000010000%020d", i), message.PropertyRealTopic: "orders",
			message.PropertyRealQueueID: "0", PropertyTimerOutMs: strconv.FormatInt(dueMs+int64(i%86_400_000), 10)}}
		rec, err := m.Encode()
		if err != nil {
			b.Fatal(err)
		}
		if recs = append(recs, rec); len(recs) == cap(recs) || i == n-1 {
			if _, err := st.Append(context.Background(), recs...); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	return time.Since(start)
}

func benchPending(b *testing.B, n int) {
	b.StopTimer()
	dir := b.TempDir()
	due := time.Now().Add(365 * 24 * time.Hour).UnixMilli()
	openStore := func(sub string) *store.Store {
		// A short checkpoint interval, so the store's buffer of index entries not yet written
		// does not make its heap depend on when it is measured.
		st, err := store.Open(store.Config{Dir: filepath.Join(dir, sub), SegmentBytes: 1 << 30, CheckpointInterval: 20 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	h0 := heapAlloc()

	// Baseline: the same records in a plain store, no timer service.
	base := openStore("baseline")
	fillStore(b, base, "plain", n, due)
	storeHeap := heapAlloc() - h0
	logBytes := dirBytes(b, filepath.Join(dir, "baseline"))
	if err := base.Close(); err != nil {
		b.Fatal(err)
	}
	base = nil
	h0 = heapAlloc()

	st := openStore("timed")
	defer st.Close()
	svc, err := Open(context.Background(), Config{Dir: filepath.Join(dir, "timed", "timer"), StoreHost: testHost}, StoreLog{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	took := fillStore(b, st, ParkTopic, n, due)
	for svc.Status().Index.IndexedOffset < int64(n) {
		time.Sleep(time.Millisecond)
	}
	indexed := time.Since(time.Now().Add(-took))
	b.StopTimer()
	if err := svc.Sync(); err != nil {
		b.Fatal(err)
	}
	live := heapAlloc() - h0
	st0 := svc.Status()
	if st0.Pending != int64(n) {
		b.Fatalf("pending %d, want %d", st0.Pending, n)
	}
	indexBytes := dirBytes(b, filepath.Join(dir, "timed", "timer"))
	// After a restart nothing of the far-future runs is loaded.
	if err := svc.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	svc, err = Open(context.Background(), Config{Dir: filepath.Join(dir, "timed", "timer"), StoreHost: testHost}, StoreLog{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	reopened := heapAlloc() - h0
	if p := svc.Status().Pending; p != int64(n) {
		b.Fatalf("pending %d after reopening, want %d", p, n)
	}
	if err := svc.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	per := func(v int64) float64 { return float64(v) / float64(n) }
	b.ReportMetric(per(live-storeHeap), "timer-heap-B/timer")
	b.ReportMetric(per(reopened-storeHeap), "timer-heap-reopened-B/timer")
	b.ReportMetric(per(storeHeap), "store-heap-B/record")
	b.ReportMetric(per(indexBytes), "index-disk-B/timer")
	b.ReportMetric(per(logBytes), "log-disk-B/record")
	b.ReportMetric(float64(n)/indexed.Seconds(), "parked+indexed/s")
	b.Logf("%d timers: %d index runs; store heap %d MiB, with timers %d MiB (%d MiB after reopening)",
		n, st0.Index.Runs, storeHeap>>20, live>>20, reopened>>20)
}
