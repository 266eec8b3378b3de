package query

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// genSegment is a synthetic sealed segment whose records are generated as they are read.
type genSegment struct {
	base, end int64
	first     int64 // queue offset of the first record (one queue)
	n         int
	body      []byte
}

func (s *genSegment) Base() int64 { return s.base }
func (s *genSegment) End() int64  { return s.end }
func (s *genSegment) Records(ctx context.Context, fn func([]byte) error) error {
	pos := s.base + 64
	host := netip.MustParseAddrPort("10.0.0.1:10911")
	var buf []byte
	for i := 0; i < s.n; i++ {
		m := message.Message{Topic: testTopic, QueueID: 0, QueueOffset: s.first + int64(i), CommitLogOffset: pos,
			BornTimestamp: 1_700_000_000_000 + s.first + int64(i), StoreTimestamp: 1_700_000_000_000 + s.first + int64(i),
			BornHost: host, StoreHost: host, Body: s.body,
			Properties: map[string]string{message.PropertyTags: "TagA", message.PropertyKeys: "k" + strconv.Itoa(i),
				message.PropertyUniqKey: fmt.Sprintf("U%020d", s.first+int64(i))}}
		var err error
		if buf, err = m.AppendEncoded(buf[:0]); err != nil {
			return err
		}
		if err := fn(buf); err != nil {
			return err
		}
		pos += int64(len(buf)) + 8
	}
	return nil
}

// BenchmarkExportCold exports a range held only in the bucket (filesystem) to an Arrow file
// and reports message MB/s and the peak Go heap. STRATA_EXPORT_BENCH_MB sets the range size
// (default 64).
func BenchmarkExportCold(b *testing.B) {
	mb := 64
	if v, err := strconv.Atoi(os.Getenv("STRATA_EXPORT_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	ctx := context.Background()
	bucket, err := objstore.NewFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ptrs := tier.NewMemoryPointers()
	wt, err := tier.Open(ctx, tier.Config{Bucket: bucket, Pointers: ptrs, Prefix: testPrefix})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := wt.Lead(ctx, ptrs.Elect()); err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 1024)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	const segMsgs = 32 << 10 // ~36 MiB per segment
	var pos, off int64
	var total int64
	for total < int64(mb)<<20 {
		s := &genSegment{base: pos, first: off, n: segMsgs, body: body}
		size := int64(0)
		if err := s.Records(ctx, func(r []byte) error { size += int64(len(r)) + 8; return nil }); err != nil {
			b.Fatal(err)
		}
		s.end = pos + 64 + size
		wt.Submit(s)
		pos, off, total = s.end, off+segMsgs, total+size
	}
	if err := wt.WaitOffloaded(ctx, pos); err != nil {
		b.Fatal(err)
	}
	wt.Close()
	b.ResetTimer()
	for range b.N {
		rt, err := tier.Open(ctx, tier.Config{Bucket: bucket, Pointers: ptrs, Prefix: testPrefix, ReadOnly: true, CacheBytes: 32 << 20})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ms runtime.MemStats
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()
		start := time.Now()
		ranges, err := Plan(ctx, []Queue{{Group: testGroup, Topic: testTopic, QueueID: 0, Cold: rt}}, Bound{}, Bound{})
		if err != nil {
			b.Fatal(err)
		}
		w, err := NewFileWriter(io.Discard, WriterOptions{})
		if err != nil {
			b.Fatal(err)
		}
		st, err := (&Exporter{}).Run(ctx, ranges, w)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		secs := time.Since(start).Seconds()
		close(stop)
		wg.Wait()
		rt.Close()
		if st.Rows != off {
			b.Fatalf("exported %d rows, want %d", st.Rows, off)
		}
		b.SetBytes(st.Bytes)
		b.ReportMetric(float64(st.Bytes)/1e6/secs, "msgMB/s")
		b.ReportMetric(float64(peak.Load())/(1<<20), "peakHeapMiB")
	}
}
