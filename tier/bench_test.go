package tier

import (
	"fmt"
	"testing"

	"github.com/stratamq/strata/tier/objstore"
)

const benchSegmentRecords = 8192 // × ~1.1 KiB ≈ 9 MiB per segment

// BenchmarkOffload measures offload throughput of one queue into the filesystem bucket.
func BenchmarkOffload(b *testing.B) {
	g := newLogGen()
	seg := g.segment(b, benchSegmentRecords, queueKeys(1, 1), 1024)
	size := seg.end - seg.base
	bucket, err := objstore.NewFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	tr := openTier(b, Config{Bucket: bucket, Pointers: &memPointers{}, ReadOnly: true})
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.upload(waitCtx(b), seg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColdReplay measures replay of one queue from the filesystem bucket with a cold
// cache (a new tier per iteration).
func BenchmarkColdReplay(b *testing.B) {
	g := newLogGen()
	bucket, err := objstore.NewFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ptrs := &memPointers{}
	w := openTier(b, Config{Bucket: bucket, Pointers: ptrs})
	for range 2 {
		w.Submit(g.segment(b, benchSegmentRecords, queueKeys(1, 1), 1024))
	}
	if err := w.WaitOffloaded(waitCtx(b), g.pos); err != nil {
		b.Fatal(err)
	}
	w.Close()
	k := queueKeys(1, 1)[0]
	var total int64
	for _, r := range g.want[k] {
		total += int64(len(r))
	}
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		tr := openTier(b, Config{Bucket: bucket, Pointers: ptrs, ReadOnly: true})
		if got := readQueue(b, tr, k, 1024); len(got) != len(g.want[k]) {
			b.Fatalf("replayed %d records, want %d", len(got), len(g.want[k]))
		}
		tr.Close()
	}
}

// BenchmarkRequestsPerGiB reports PUTs per GiB ingested and GETs per GiB replayed (every
// queue read from offset 0 with a cold cache) for several numbers of active queues.
func BenchmarkRequestsPerGiB(b *testing.B) {
	for _, queues := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("queues=%d", queues), func(b *testing.B) {
			var putsPerGiB, getsPerGiB float64
			for b.Loop() {
				g := newLogGen()
				ptrs := &memPointers{}
				bucket := objstore.NewMemory()
				w := openTier(b, Config{Bucket: bucket, Pointers: ptrs})
				keys := queueKeys(1, queues)
				for range 4 {
					w.Submit(g.segment(b, benchSegmentRecords, keys, 1024))
				}
				if err := w.WaitOffloaded(waitCtx(b), g.pos); err != nil {
					b.Fatal(err)
				}
				w.Close()
				puts, _ := w.BucketRequests()
				gib := float64(g.pos) / (1 << 30)
				putsPerGiB = float64(puts) / gib
				r := openTier(b, Config{Bucket: bucket, Pointers: ptrs, ReadOnly: true, DisableReadAhead: true})
				_, gets0 := r.BucketRequests()
				for _, k := range keys {
					readQueue(b, r, k, 1024)
				}
				_, gets := r.BucketRequests()
				getsPerGiB = float64(gets-gets0) / gib
				r.Close()
			}
			b.ReportMetric(putsPerGiB, "PUTs/GiB")
			b.ReportMetric(getsPerGiB, "GETs/GiB")
		})
	}
}
