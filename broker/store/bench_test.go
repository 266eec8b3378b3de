package store

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Every store benchmark reports its figure beside a baseline measured in the same run on the
// same disk: "disk-MB/s" is a plain file written with the same bytes and the same fsync
// policy, "vs-disk" the store's MB/s over it.

const (
	benchBody       = 1024
	benchAppenders  = 32
	baselineChunk   = 4 << 20
	benchRecordPool = 4096
)

var reopenMessages = flag.Int("store.reopen-messages", 1_000_000, "messages in the store BenchmarkReopen reopens")

// benchRecords encodes n records spread over topics (4 queues each), each with a tag and a
// unique key, as a producer's would be.
func benchRecords(b *testing.B, topics, n, bodyBytes int) [][]byte {
	body := strings.Repeat("x", bodyBytes)
	recs := make([][]byte, max(n, topics))
	for i := range recs {
		recs[i] = encode(b, fmt.Sprintf("topic-%05d", i%topics), int32(i/topics%4), body,
			map[string]string{"TAGS": "TagA", "UNIQ_KEY": fmt.Sprintf("7F0000010001%020d", i)})
	}
	return recs
}

// baselineWrite writes total bytes sequentially to a plain file in dir, in chunks of chunk
// bytes, fsyncing after each chunk (sync) or every FlushInterval (async), and returns MB/s.
func baselineWrite(b *testing.B, dir string, total int64, chunk int, sync bool) float64 {
	f, err := os.CreateTemp(dir, "baseline")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, chunk)
	start := time.Now()
	last := start
	var off int64
	for off < total {
		n := int(min(int64(chunk), total-off))
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			b.Fatal(err)
		}
		off += int64(n)
		if sync || time.Since(last) >= DefaultFlushInterval {
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			last = time.Now()
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return float64(total) / time.Since(start).Seconds() / 1e6
}

// baselineSyncWriters is the plain-file baseline for FlushSync: the same producers each
// write their records to a plain file at the next free offset and fsync before writing
// again — the same bytes under the same policy (a write is acknowledged once an fsync that
// covers it returned), with the kernel's own fsync batching and no store. It returns MB/s.
func baselineSyncWriters(b *testing.B, dir string, total int64, frame int64, writers int) float64 {
	f, err := os.CreateTemp(dir, "baseline")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	per := total / frame / int64(writers)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, frame)
			for i := int64(0); i < per; i++ {
				if _, err := f.WriteAt(buf, next.Add(frame)-frame); err != nil {
					b.Error(err)
					return
				}
				if err := f.Sync(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(per*int64(writers)*frame) / time.Since(start).Seconds() / 1e6
}

// BenchmarkAppend measures appends of 1 KiB messages from 32 concurrent producers, one
// record per Append (as SEND_MESSAGE does) or 32 per Append (a batch send), over 1, 1,000
// and 10,000 topics. The baseline writes the same bytes (records and their CRC trailers) to
// a plain file with the same fsync policy. Async: 4 MiB chunks, fsync every FlushInterval
// (the disk's sequential speed). Sync: the same 32 producers each writing and fsyncing
// their own records (baselineSyncWriters); "ideal-MB/s" is one write and fsync per 32
// records, a group commit that closed-loop producers cannot reach (each fsync can only
// cover what arrived while the previous one ran: see msgs/fsync).
func BenchmarkAppend(b *testing.B) {
	type tc struct {
		flush  FlushMode
		topics int
		batch  int
	}
	var cases []tc
	for _, topics := range []int{1, 1000, 10000} {
		cases = append(cases, tc{FlushAsync, topics, 1})
	}
	cases = append(cases, tc{FlushAsync, 1, 32}, tc{FlushSync, 1, 1}, tc{FlushSync, 1000, 1})
	for _, c := range cases {
		b.Run(fmt.Sprintf("flush=%v/topics=%d/batch=%d", c.flush, c.topics, c.batch), func(b *testing.B) {
			dir := b.TempDir()
			recs := benchRecords(b, c.topics, benchRecordPool, benchBody)
			frame := int64(len(recs[0]) + frameTrailerBytes)
			b.StopTimer()
			var disk float64
			if c.flush == FlushSync {
				ideal := baselineWrite(b, dir, int64(b.N)*frame, int(frame)*benchAppenders*c.batch, true)
				b.ReportMetric(ideal, "ideal-MB/s")
				disk = baselineSyncWriters(b, dir, int64(b.N)*frame, frame, benchAppenders)
			} else {
				disk = baselineWrite(b, dir, int64(b.N)*frame, baselineChunk, false)
			}
			s := openStore(b, Config{Dir: filepath.Join(dir, "store"), SegmentBytes: 256 << 20, FlushMode: c.flush})
			var fsyncs atomic.Int64
			s.syncFile = func(f *os.File) error { fsyncs.Add(1); return f.Sync() }
			b.SetBytes(frame)
			var next atomic.Int64
			var wg sync.WaitGroup
			per := (b.N + benchAppenders*c.batch - 1) / (benchAppenders * c.batch)
			runtime.GC()
			cpu0 := processCPU()
			b.StartTimer()
			start := time.Now()
			for w := 0; w < benchAppenders; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					batch := make([][]byte, c.batch)
					for i := 0; i < per; i++ {
						for j := range batch {
							batch[j] = recs[int(next.Add(1))%len(recs)]
						}
						if _, err := s.Append(ctx, batch...); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(per*benchAppenders*c.batch), "cpu-ns/msg")
			store := float64(int64(per*benchAppenders*c.batch)*frame) / elapsed.Seconds() / 1e6
			b.ReportMetric(disk, "disk-MB/s")
			b.ReportMetric(store/disk, "vs-disk")
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(per*benchAppenders*c.batch), "ns/msg")
			if c.flush == FlushSync {
				b.ReportMetric(float64(per*benchAppenders*c.batch)/float64(max(fsyncs.Load(), 1)), "msgs/fsync")
			}
		})
	}
}

// BenchmarkSyncLatency measures acknowledgement latency under sync flush with 64 concurrent
// appenders; it reports p50 and p99 in milliseconds (baseline: BenchmarkDiskFsyncLatency).
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
	reportLatency(b, lat...)
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var r syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &r); err != nil {
		return 0
	}
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

func reportLatency(b *testing.B, lats ...[]time.Duration) {
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
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
	reportLatency(b, lat)
}

// BenchmarkReadQueue reads one queue of 100,000 1 KiB messages in pulls of 32 from offsets
// spread over the queue (each pull reads a consume-queue page through the cache and the
// records from the log). The baseline is the same pulls as one pread of the 32 records' bytes
// from a plain copy of the log, with no index: what a pull costs at least. store+release
// hands each read's buffer back, as a pull does once its answer is written.
func BenchmarkReadQueue(b *testing.B) {
	dir := b.TempDir()
	s := openStore(b, Config{Dir: dir, SegmentBytes: 1 << 30})
	recs := benchRecords(b, 1, 100, benchBody)
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = recs[i*4%100] // queue 0 only
	}
	for i := 0; i < 1000; i++ {
		mustAppend(b, s, batch...)
	}
	const msgs = 100_000
	frame := int64(len(batch[0]) + frameTrailerBytes)
	ctx := context.Background()
	rng := rand.New(rand.NewSource(1))
	offsets := make([]int64, 4096)
	for i := range offsets {
		offsets[i] = rng.Int63n(msgs - 32)
	}
	log := s.activeSegment()
	for _, release := range []bool{false, true} {
		name := "store"
		if release {
			name = "store+release" // as a pull does once its answer is written
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(32 * frame)
			for i := 0; i < b.N; i++ {
				off := offsets[i%len(offsets)]
				r, err := s.Read(ctx, ReadRequest{Topic: "topic-00000", Offset: off, MaxMessages: 32, MaxBytes: 1 << 20})
				if err != nil || r.Status != ReadFound || len(r.Entries) != 32 || r.Entries[0].QueueOffset != off {
					b.Fatalf("read at %d: %v %v %d", off, err, r.Status, len(r.Entries))
				}
				if release {
					r.Release()
				}
			}
		})
	}
	b.Run("baseline=pread", func(b *testing.B) {
		b.SetBytes(32 * frame)
		buf := make([]byte, 32*frame)
		for i := 0; i < b.N; i++ {
			off := offsets[i%len(offsets)]
			if _, err := log.f.ReadAt(buf, segmentHeaderBytes+off*frame); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLookupKey looks up unique keys among 400,000 messages held in seven key-index
// files (64 Ki keys each), with no time range (every file is searched), through a 1 MiB
// cache that holds a small part of them and through the default cache. The baseline is the
// ReadAt of the record the lookup finds, which the lookup must do too.
func BenchmarkLookupKey(b *testing.B) {
	for _, cache := range []int64{1 << 20, DefaultKeyIndexCacheBytes} {
		s := openStore(b, Config{SegmentBytes: 1 << 30, KeyIndexFileKeys: 64 << 10, KeyIndexCacheBytes: cache})
		const msgs = 400_000
		var res []AppendResult
		batch := make([][]byte, 1000)
		for i := 0; i < msgs/len(batch); i++ {
			for j := range batch {
				batch[j] = encode(b, "topic-00000", 0, "x", map[string]string{"UNIQ_KEY": fmt.Sprintf("K%09d", i*len(batch)+j)})
			}
			res = append(res, mustAppend(b, s, batch...)...)
		}
		rng := rand.New(rand.NewSource(2))
		picks := make([]int, 4096)
		for i := range picks {
			picks[i] = rng.Intn(msgs)
		}
		b.Run(fmt.Sprintf("cache=%dMiB/store", cache>>20), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				k := picks[i%len(picks)]
				hits, err := s.LookupKey("topic-00000", fmt.Sprintf("K%09d", k), 0, 1<<62, 4)
				if err != nil || len(hits) != 1 || hits[0].CommitLogOffset != res[k].CommitLogOffset {
					b.Fatalf("key %d: %d hits, %v", k, len(hits), err)
				}
			}
		})
		b.Run(fmt.Sprintf("cache=%dMiB/baseline=ReadAt", cache>>20), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				k := picks[i%len(picks)]
				_ = fmt.Sprintf("K%09d", k)
				if _, err := s.ReadAt(res[k].CommitLogOffset, res[k].Size); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReopen opens a store holding -store.reopen-messages 128-byte messages (4 queues
// per topic, 100 topics, each message with a unique key): after a clean Close, and after a
// crash that left a tail to replay. It reports the open time, the records Open indexed from
// the log, and the live heap after the open; the baseline is reading the index files Open
// reads (page maps, queue table, key index) with os.ReadFile. With -v it also logs the fill
// rate, the bytes on disk and the live heap after the fill (the steady state of a writer).
// `make bench-restart` runs it; issue 12's figure is at 100,000,000 messages.
func BenchmarkReopen(b *testing.B) {
	dir := b.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 1 << 30, CheckpointInterval: time.Hour}
	s, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	n := *reopenMessages
	const batch = 1000
	recs := benchRecords(b, 100, batch, 128)
	keyAt := make([]int, batch)
	for j := range recs {
		keyAt[j] = strings.Index(string(recs[j]), "7F0000010001") + 12
	}
	ctx := context.Background()
	fillStart := time.Now()
	for i := 0; i < n/batch; i++ {
		for j := range recs {
			copy(recs[j][keyAt[j]:], fmt.Sprintf("%020d", i*batch+j))
		}
		if _, err := s.Append(ctx, recs...); err != nil {
			b.Fatal(err)
		}
	}
	fill := time.Since(fillStart)
	steady := liveHeap()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	logBytes, indexBytes := dirBytes(b, filepath.Join(dir, commitLogDir)), dirBytes(b, filepath.Join(dir, indexDir))
	b.Logf("filled %d messages in %v (%.0f msg/s); on disk: commit log %.2f GiB, index %.2f GiB; live heap after the fill %.1f MiB",
		n/batch*batch, fill.Round(time.Millisecond), float64(n/batch*batch)/fill.Seconds(),
		float64(logBytes)/(1<<30), float64(indexBytes)/(1<<30), float64(steady)/(1<<20))
	reopen := func(b *testing.B) {
		runtime.GC()
		b.StartTimer()
		s, err := Open(cfg)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.recoveredRecords), "replayed")
		b.ReportMetric(float64(liveHeap())/(1<<20), "heap-MiB")
		s.Close()
	}
	b.Run("clean", func(b *testing.B) {
		b.StopTimer()
		for i := 0; i < b.N; i++ {
			reopen(b)
		}
	})
	b.Run("crash", func(b *testing.B) {
		b.StopTimer()
		for i := 0; i < b.N; i++ {
			s, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			// A tail as long as RecoveryReplayBytes, past the last checkpoint.
			for k := int64(0); k < DefaultRecoveryReplayBytes/int64(len(recs[0])*batch); k++ {
				if _, err := s.Append(ctx, recs...); err != nil {
					b.Fatal(err)
				}
			}
			s.crash()
			reopen(b)
		}
	})
	b.Run("baseline=read-index-files", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var bytes int64
			for _, pat := range []string{"*" + cqMapExt, queueTableFile, "*" + keyFileExt} {
				m, _ := filepath.Glob(filepath.Join(dir, indexDir, pat))
				for _, p := range m {
					if strings.HasSuffix(p, keyFileExt) && p != m[len(m)-1] {
						continue // Open reads only the active key file in full
					}
					data, err := os.ReadFile(p)
					if err != nil {
						b.Fatal(err)
					}
					bytes += int64(len(data))
				}
			}
			b.ReportMetric(float64(bytes)/(1<<20), "index-MiB")
		}
	})
}

// dirBytes is the total size of the regular files in dir.
func dirBytes(b *testing.B, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
