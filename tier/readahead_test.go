package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier/objstore"
)

// rangeLog records the ranged GETs of block frames (index and keys reads included).
type rangeLog struct {
	objstore.Bucket
	mu     sync.Mutex
	ranges []getRange
	// gate, when set, makes ranged GETs longer than gateAfter bytes stall after their
	// first gateAfter bytes until it is closed.
	gate      chan struct{}
	gateAfter int64
}

type getRange struct {
	name   string
	off, n int64
}

func (b *rangeLog) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	b.mu.Lock()
	b.ranges = append(b.ranges, getRange{name, off, n})
	b.mu.Unlock()
	rc, err := b.Bucket.GetRange(ctx, name, off, n)
	if err != nil || b.gate == nil || n <= b.gateAfter {
		return rc, err
	}
	return &gatedReader{ctx: ctx, r: rc, left: b.gateAfter, gate: b.gate}, nil
}

func (b *rangeLog) log() []getRange {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]getRange(nil), b.ranges...)
}

type gatedReader struct {
	ctx  context.Context
	r    io.ReadCloser
	left int64
	gate chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		select {
		case <-g.gate:
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
		return g.r.Read(p)
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, err := g.r.Read(p)
	g.left -= int64(n)
	return n, err
}

func (g *gatedReader) Close() error { return g.r.Close() }

// offloadQueues offloads two segments of n records of bodyBytes over keys, in 4 KiB blocks.
func offloadQueues(t *testing.T, b objstore.Bucket, ptrs *MemoryPointers, keys []queueKey, n, bodyBytes int) *logGen {
	t.Helper()
	w := openTier(t, Config{Bucket: b, Pointers: ptrs, BlockBytes: 4 << 10})
	g := newLogGen()
	for range 2 {
		w.Submit(g.segment(t, n, keys, bodyBytes))
	}
	if err := w.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return g
}

// runsOf returns the index entries of queue k in every segment of the tier.
func runsOf(t *testing.T, tr *Tier, k queueKey) []*QueueRun {
	t.Helper()
	var runs []*QueueRun
	for _, sp := range tr.cat.Load().queues[k] {
		run, err := tr.queueRun(waitCtx(t), sp)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, run)
	}
	return runs
}

func TestCoalescedReadsReplayInOrder(t *testing.T) {
	mem := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	keys := queueKeys(1, 3)
	g := offloadQueues(t, mem, ptrs, keys, 900, 200)
	rl := &rangeLog{Bucket: mem}
	tr := openTier(t, Config{Bucket: rl, Pointers: ptrs, ReadOnly: true, ReadAheadBytes: 24 << 10, CacheBytes: 1 << 20})
	blocks := 0
	for _, k := range keys {
		for _, run := range runsOf(t, tr, k) {
			blocks += len(run.Blocks)
		}
	}
	before := len(rl.log())
	for i, k := range keys {
		got := readQueue(t, tr, k, 7+i*50)
		if len(got) != len(g.want[k]) {
			t.Fatalf("%v: %d records, want %d", k, len(got), len(g.want[k]))
		}
		for j := range got {
			if !bytes.Equal(got[j], g.want[k][j]) {
				t.Fatalf("%v: record %d differs", k, j)
			}
		}
	}
	gets := len(rl.log()) - before
	if blocks < 30 || gets*3 > blocks {
		t.Fatalf("replay of %d blocks took %d GETs; want coalesced windows (≤ a third)", blocks, gets)
	}

	// Tag filtering over coalesced blocks, on a fresh cache.
	tr2 := openTier(t, Config{Bucket: mem, Pointers: ptrs, ReadOnly: true, ReadAheadBytes: 24 << 10})
	k := keys[1]
	want := message.TagHashCode("tag1")
	var wantRecs [][]byte
	for _, rec := range g.want[k] {
		h, _ := message.ParseRecordHeader(rec)
		if message.TagHashCode(h.Tags) == want {
			wantRecs = append(wantRecs, rec)
		}
	}
	var got [][]byte
	for off := int64(0); ; {
		res, err := tr2.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: off, MaxCount: 10,
			TagFilter: func(c int64) bool { return c == want }})
		if errors.Is(err, ErrNotInTier) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if res.NextOffset <= off {
			t.Fatalf("no progress at %d", off)
		}
		got = append(got, res.Records...)
		off = res.NextOffset
	}
	if len(got) != len(wantRecs) || len(wantRecs) == 0 {
		t.Fatalf("tag filter: %d records, want %d", len(got), len(wantRecs))
	}
	for i := range got {
		if !bytes.Equal(got[i], wantRecs[i]) {
			t.Fatalf("tag filter: record %d differs", i)
		}
	}
}

func TestCorruptBlockInsideWindow(t *testing.T) {
	mem := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	k := queueKey{"Topic0", 0}
	offloadQueues(t, mem, ptrs, []queueKey{k}, 300, 100)
	probe := openTier(t, Config{Bucket: mem, Pointers: ptrs, ReadOnly: true})
	name := probe.Manifest().Segments[0].Object
	run := runsOf(t, probe, k)[0]
	if len(run.Blocks) < 6 {
		t.Fatalf("run has %d blocks; the test needs 6", len(run.Blocks))
	}
	data, err := readAll(context.Background(), mem, name, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	bad := run.Blocks[3]
	data[bad.Offset+bad.Size/2] ^= 0xff
	if err := mem.Put(context.Background(), name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}

	rl := &rangeLog{Bucket: mem}
	tr := openTier(t, Config{Bucket: rl, Pointers: ptrs, ReadOnly: true})
	res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: 0, MaxCount: 100000, MaxBytes: 64 << 20})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read across a corrupt block: err %v, want ErrCorrupt", err)
	}
	if int64(len(res.Records)) != bad.FirstOffset {
		t.Fatalf("served %d records before the corrupt block, want %d", len(res.Records), bad.FirstOffset)
	}
	for i, rec := range res.Records {
		if h, err := message.ParseRecordHeader(rec); err != nil || h.QueueOffset != int64(i) {
			t.Fatalf("record %d: offset %d, %v", i, h.QueueOffset, err)
		}
	}
	// One GET covered the good blocks, the corrupt one and those after it.
	var window *getRange
	for _, r := range rl.log() {
		if r.name == name && r.off == run.Blocks[0].Offset {
			window = &r
		}
	}
	if window == nil || window.off+window.n < run.Blocks[5].Offset+run.Blocks[5].Size {
		t.Fatalf("no coalesced GET from block 0 past block 5: %+v", rl.log())
	}
	// The corrupt block is never served, again; the block after it has its own checksum.
	if res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: bad.FirstOffset, MaxCount: 1}); !errors.Is(err, ErrCorrupt) || len(res.Records) != 0 {
		t.Fatalf("read of the corrupt block: %d records, err %v", len(res.Records), err)
	}
	next := run.Blocks[4]
	res, err = tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: next.FirstOffset, MaxCount: int(next.Count)})
	if err != nil || int64(len(res.Records)) != next.Count {
		t.Fatalf("block after the corrupt one: %d records, %v", len(res.Records), err)
	}
}

func TestReadAheadWindowWithinBudgets(t *testing.T) {
	mem := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	k := queueKey{"Topic0", 0}
	g := offloadQueues(t, mem, ptrs, []queueKey{k}, 600, 300)
	for _, c := range []struct {
		name              string
		cache, readAhead  int64
		wantRaw, wantComp int64 // bounds of one multi-block GET
	}{
		{"cache-bound", 64 << 10, 1 << 20, 16 << 10, 1 << 20},
		{"read-ahead-bound", 8 << 20, 12 << 10, 2 << 20, 12 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			rl := &rangeLog{Bucket: mem}
			tr := openTier(t, Config{Bucket: rl, Pointers: ptrs, ReadOnly: true, CacheBytes: c.cache, ReadAheadBytes: c.readAhead})
			runs := runsOf(t, tr, k)
			byOff := map[string]map[int64]BlockRef{}
			for si, run := range runs {
				obj := runObject(tr.cat.Load().queues[k][si], run)
				byOff[obj] = map[int64]BlockRef{}
				for _, b := range run.Blocks {
					byOff[obj][b.Offset] = b
				}
			}
			if got := readQueue(t, tr, k, 25); len(got) != len(g.want[k]) {
				t.Fatalf("%d records, want %d", len(got), len(g.want[k]))
			}
			multi := 0
			for _, r := range rl.log() {
				blocks := byOff[r.name]
				if _, ok := blocks[r.off]; !ok {
					continue // index read
				}
				var raw, nb int64
				for off := r.off; off < r.off+r.n; nb++ {
					b, ok := blocks[off]
					if !ok {
						t.Fatalf("GET %+v does not end on a block boundary", r)
					}
					raw += b.RawSize
					off += b.Size
				}
				if nb > 1 {
					multi++
					if raw > c.wantRaw || r.n > c.wantComp {
						t.Fatalf("window of %d blocks: %d bytes, %d decoded; bounds %d, %d", nb, r.n, raw, c.wantComp, c.wantRaw)
					}
				}
			}
			if multi == 0 {
				t.Fatal("no coalesced GET")
			}
			tr.blocks.mu.Lock()
			used := tr.blocks.bytes
			tr.blocks.mu.Unlock()
			if used > c.cache {
				t.Fatalf("block cache holds %d bytes, budget %d", used, c.cache)
			}
		})
	}
}

// TestFirstRecordBeforeWindowArrives: after a seek, Read returns once the first block of
// its window is in, while the rest of the window is still on its way.
func TestFirstRecordBeforeWindowArrives(t *testing.T) {
	mem := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	k := queueKey{"Topic0", 0}
	g := offloadQueues(t, mem, ptrs, []queueKey{k}, 300, 100)
	probe := openTier(t, Config{Bucket: mem, Pointers: ptrs, ReadOnly: true})
	run := runsOf(t, probe, k)[0]
	at := run.Blocks[2]
	gate := make(chan struct{})
	rl := &rangeLog{Bucket: mem, gate: gate, gateAfter: at.Size}
	tr := openTier(t, Config{Bucket: rl, Pointers: ptrs, ReadOnly: true})
	res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: at.FirstOffset, MaxCount: int(at.Count)})
	if err != nil || len(res.Records) != int(at.Count) || !bytes.Equal(res.Records[0], g.want[k][at.FirstOffset]) {
		t.Fatalf("first read after a seek: %d records, %v", len(res.Records), err)
	}
	// The block after it belongs to the stalled window: a reader waits for it, not a GET.
	// (GETs of the next segment's object are read-ahead past this run; they do not count.)
	runGets := func() int {
		n := 0
		for _, r := range rl.log() {
			if r.name == probe.Manifest().Segments[0].Object {
				n++
			}
		}
		return n
	}
	gets := runGets()
	done := make(chan error, 1)
	go func() {
		nb := run.Blocks[3]
		res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: nb.FirstOffset, MaxCount: 1})
		if err == nil && !bytes.Equal(res.Records[0], g.want[k][nb.FirstOffset]) {
			err = fmt.Errorf("wrong record at %d", nb.FirstOffset)
		}
		done <- err
	}()
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := runGets(); n != gets {
		t.Fatalf("reading the rest of the window made %d more GETs", n-gets)
	}
}
