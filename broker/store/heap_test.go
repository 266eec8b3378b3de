package store

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// heapBoundBytes is what the Go heap may hold, live after a GC, with heapTestRecords
// records on local disk: the default caches (24 MiB), write buffers and per-queue state. The
// previous design (every consume-queue entry and key in memory) held about 130 bytes per
// record: 260 MiB at two million.
const (
	heapBoundBytes  = 64 << 20
	heapTestRecords = 2_000_000
)

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The Go heap does not grow with the data held locally: two million 64-byte messages, each
// with a unique key, leave it under a fixed bound, while appending, after reading the queues
// and looking keys up, and after a reopen.
func TestHeapStaysBoundedWithLocalData(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 64 << 20}
	s := openStore(t, cfg)
	const batchSize, queues = 2000, 4
	batch := make([][]byte, batchSize)
	keyAt := make([]int, batchSize)
	for j := range batch {
		batch[j] = encode(t, "heap", int32(j%queues), string(bytes.Repeat([]byte{'b'}, 64)),
			map[string]string{"UNIQ_KEY": fmt.Sprintf("K%015d", j)})
		keyAt[j] = bytes.Index(batch[j], []byte("K000"))
	}
	ctx := context.Background()
	for i := 0; i < heapTestRecords/batchSize; i++ {
		for j := range batch { // a fresh unique key per record
			copy(batch[j][keyAt[j]+1:], fmt.Sprintf("%015d", i*batchSize+j))
		}
		if _, err := s.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if h := liveHeap(); h > heapBoundBytes {
		t.Fatalf("live heap %d MiB after %d records, bound %d MiB", h>>20, heapTestRecords, heapBoundBytes>>20)
	} else {
		t.Logf("live heap after appending %d records: %.1f MiB", heapTestRecords, float64(h)/(1<<20))
	}
	check := func(s *Store) {
		t.Helper()
		for q := int32(0); q < queues; q++ {
			if max := s.MaxOffset("heap", q); max != heapTestRecords/queues {
				t.Fatalf("queue %d holds %d offsets, want %d", q, max, heapTestRecords/queues)
			}
			for off := int64(0); off < heapTestRecords/queues; off += 997 { // touch pages all over
				r, err := s.Read(ctx, ReadRequest{Topic: "heap", QueueID: q, Offset: off, MaxMessages: 1})
				if err != nil || r.Status != ReadFound || r.Entries[0].QueueOffset != off {
					t.Fatalf("read %d/%d: %v %v", q, off, r.Status, err)
				}
			}
		}
		for _, n := range []int{0, 77_777, heapTestRecords - 1} {
			hits, err := s.LookupKey("heap", fmt.Sprintf("K%015d", n), 0, 1<<62, 2)
			if err != nil || len(hits) != 1 || hits[0].QueueID != int32(n%queues) || hits[0].QueueOffset != int64(n/queues) {
				t.Fatalf("key %d: %d hits, %v", n, len(hits), err)
			}
		}
		if c := s.idx.cqCache.bytes() + s.idx.keys.cache.bytes(); c > DefaultConsumeQueueCacheBytes+DefaultKeyIndexCacheBytes {
			t.Fatalf("caches hold %d bytes, above their configured bound", c)
		}
		if h := liveHeap(); h > heapBoundBytes {
			t.Fatalf("live heap %d MiB with %d records on disk, bound %d MiB", h>>20, heapTestRecords, heapBoundBytes>>20)
		} else {
			t.Logf("live heap after reads and key lookups: %.1f MiB", float64(h)/(1<<20))
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = nil
	check(openStore(t, cfg))
}

// Index files the store no longer appends to — the consume-queue files of past segments and
// sealed key files — hold no write buffers, checkpoint or not, so the heap does not grow with
// the number of segments and key files written since the start.
func TestFinishedIndexFilesHoldNoBuffers(t *testing.T) {
	s := openStore(t, Config{SegmentBytes: 1 << 20, MaxMessageBytes: 1024, KeyIndexFileKeys: 1024, CheckpointInterval: time.Hour})
	const batchSize = 500
	batch := make([][]byte, batchSize)
	for i := 0; i < 70; i++ {
		for j := range batch {
			batch[j] = encode(t, "buffers", int32(j%2), string(bytes.Repeat([]byte{'b'}, 200)),
				map[string]string{"UNIQ_KEY": fmt.Sprintf("K%09d", i*batchSize+j)})
		}
		mustAppend(t, s, batch...)
	}
	x := &s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.cq) < 5 {
		t.Fatalf("consume-queue files of %d segments, want at least 5", len(x.cq))
	}
	for _, f := range x.cq[:len(x.cq)-1] {
		if n := f.pages.bufferedBytes() + f.maps.bufferedBytes(); n != 0 {
			t.Errorf("consume-queue files of past segment %d hold %d bytes of buffers", f.seg, n)
		}
	}
	sealed := 0
	for _, kf := range x.keys.files {
		if kf.heads.Load() != nil {
			continue
		}
		sealed++
		if n := kf.af.bufferedBytes(); n != 0 {
			t.Errorf("sealed key index file %d holds %d bytes of buffers", kf.firstPos, n)
		}
	}
	if sealed < 5 {
		t.Fatalf("%d sealed key index files, want at least 5", sealed)
	}
}
