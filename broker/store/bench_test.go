package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const benchBody = 1024

// BenchmarkDiskSequentialWrite is the baseline: the disk's own sequential write speed with an
// fsync per 4 MiB chunk, in the same temp dir the store benchmarks use.
func BenchmarkDiskSequentialWrite(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "baseline"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4<<20)
	b.SetBytes(int64(len(chunk)))
	var off int64
	for i := 0; i < b.N; i++ {
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		off += int64(len(chunk))
		if off >= 1<<30 { // keep the file bounded
			off = 0
		}
	}
}

// BenchmarkAppend measures append throughput of 1 KiB messages spread over many topics, with
// 32 concurrent appenders and async flush.
func BenchmarkAppend(b *testing.B) {
	for _, topics := range []int{1, 1000, 10000} {
		b.Run(fmt.Sprintf("topics=%d", topics), func(b *testing.B) {
			s := openStore(b, Config{SegmentBytes: 256 << 20, FlushMode: FlushAsync})
			recs := make([][]byte, topics)
			body := strings.Repeat("x", benchBody)
			for i := range recs {
				recs[i] = encode(b, fmt.Sprintf("topic-%05d", i), 0, body, map[string]string{"TAGS": "TagA"})
			}
			b.SetBytes(int64(len(recs[0])))
			var next sync.Mutex
			n := 0
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					next.Lock()
					rec := recs[n%topics]
					n++
					next.Unlock()
					if _, err := s.Append(ctx, rec); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSyncLatency measures acknowledgement latency under sync flush with 64 concurrent
// appenders; it reports p50 and p99 in milliseconds.
func BenchmarkSyncLatency(b *testing.B) {
	s := openStore(b, Config{SegmentBytes: 256 << 20, FlushMode: FlushSync})
	rec := encode(b, "latency", 0, strings.Repeat("x", benchBody), nil)
	b.SetBytes(int64(len(rec)))
	const appenders = 64
	lat := make([][]time.Duration, appenders)
	var wg sync.WaitGroup
	per := (b.N + appenders - 1) / appenders
	b.ResetTimer()
	for w := 0; w < appenders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := 0; i < per; i++ {
				t0 := time.Now()
				if _, err := s.Append(ctx, rec); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkReadQueue measures reading one queue in pulls of 32 messages.
func BenchmarkReadQueue(b *testing.B) {
	s := openStore(b, Config{SegmentBytes: 256 << 20})
	rec := encode(b, "read", 0, strings.Repeat("x", benchBody), nil)
	const msgs = 20000
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = rec
	}
	for i := 0; i < msgs/len(batch); i++ {
		mustAppend(b, s, batch...)
	}
	b.SetBytes(int64(32 * len(rec)))
	b.ResetTimer()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		r, err := s.Read(context.Background(), ReadRequest{Topic: "read", Offset: off, MaxMessages: 32, MaxBytes: 1 << 20})
		if err != nil || r.Status != ReadFound || len(r.Entries) != 32 {
			b.Fatalf("read at %d: %v %v %d", off, err, r.Status, len(r.Entries))
		}
		off = r.NextOffset
		if off+32 > msgs {
			off = 0
		}
	}
}

// BenchmarkDiskFsyncLatency is the baseline for BenchmarkSyncLatency: one goroutine writing
// 64 KiB then fsyncing, as the group commit does; it reports p50 and p99 in milliseconds.
func BenchmarkDiskFsyncLatency(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "baseline"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	lat := make([]time.Duration, 0, b.N)
	var off int64
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		off += int64(len(chunk))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
