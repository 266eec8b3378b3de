package tier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/tier/objstore"
)

// twoRunQueue offloads one queue over two segment objects into a filesystem bucket and
// returns the bucket, the pointers, the generator and the queue's two runs with their
// objects.
func twoRunQueue(t *testing.T) (*objstore.FSBucket, *MemoryPointers, *logGen, []*QueueRun, []string) {
	t.Helper()
	fs, err := objstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ptrs := NewMemoryPointers()
	k := queueKey{"Topic0", 0}
	g := offloadQueues(t, fs, ptrs, []queueKey{k}, 300, 100)
	probe := openTier(t, Config{Bucket: fs, Pointers: ptrs, ReadOnly: true})
	runs := runsOf(t, probe, k)
	spans := probe.cat.Load().queues[k]
	if len(runs) != 2 || len(runs[0].Blocks) < 8 || len(runs[1].Blocks) < 8 {
		t.Fatalf("want two runs of 8 blocks or more, have %d runs", len(runs))
	}
	return fs, ptrs, g, runs, []string{runObject(spans[0], runs[0]), runObject(spans[1], runs[1])}
}

func wantRecords(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs", i)
		}
	}
}

// TestReadAheadCrossesIntoNextObject: a read within half a window of the end of a run
// fetches the queue's next run (another object: its index and its first window) in the
// background, so the replay does not stall at the object boundary; the rest of the queue
// is then served in order without another GET.
func TestReadAheadCrossesIntoNextObject(t *testing.T) {
	fs, ptrs, g, runs, objs := twoRunQueue(t)
	k := queueKey{"Topic0", 0}
	rl := &rangeLog{Bucket: fs}
	tr := openTier(t, Config{Bucket: rl, Pointers: ptrs, ReadOnly: true, ReadAheadBytes: 1 << 20})
	res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: 0, MaxCount: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, res.Records, g.want[k][:10])
	tr.wg.Wait() // the read-ahead it started; a read-only tier runs nothing else
	first := runs[1].Blocks[0]
	if !tr.blocks.contains(blockKey(objs[1], first.Offset)) {
		t.Fatalf("the next object's first block was not read ahead; GETs %+v", rl.log())
	}
	window := false
	for _, r := range rl.log() {
		if r.name == objs[1] && r.off == first.Offset && r.n > first.Size {
			window = true
		}
	}
	if !window {
		t.Fatalf("no window GET of the next object; GETs %+v", rl.log())
	}
	gets := len(rl.log())
	wantRecords(t, readQueue(t, tr, k, 10), g.want[k])
	if n := len(rl.log()) - gets; n != 0 {
		t.Fatalf("replay after the read-ahead made %d GETs, want 0", n)
	}
}

// TestReadAheadStaysWithinWindow: while more than half a window of the current run is
// ahead of the reader, nothing of the next object is fetched, so read-ahead memory stays
// bounded by the window.
func TestReadAheadStaysWithinWindow(t *testing.T) {
	fs, ptrs, g, runs, objs := twoRunQueue(t)
	k := queueKey{"Topic0", 0}
	var window int64
	for _, b := range runs[0].Blocks[:3] {
		window += b.Size
	}
	rl := &rangeLog{Bucket: fs}
	tr := openTier(t, Config{Bucket: rl, Pointers: ptrs, ReadOnly: true, ReadAheadBytes: window})
	if _, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: 0, MaxCount: 2}); err != nil {
		t.Fatal(err)
	}
	tr.wg.Wait()
	for _, r := range rl.log() {
		if r.name == objs[1] {
			t.Fatalf("read the next object %v with most of the current run ahead", r)
		}
	}
	wantRecords(t, readQueue(t, tr, k, 7), g.want[k])
}

// TestCorruptBlockAheadSurfacesAtItsOffset: a corrupt first block of the next object,
// fetched inside a multi-block window, is neither served nor skipped: the replay gets every record
// before it, in order, then ErrCorrupt at exactly that block, again on a retry, while the
// block after it (its own checksum) reads fine.
func TestCorruptBlockAheadSurfacesAtItsOffset(t *testing.T) {
	fs, ptrs, g, runs, objs := twoRunQueue(t)
	k := queueKey{"Topic0", 0}
	data, err := readAll(context.Background(), fs, objs[1], 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	bad := runs[1].Blocks[0]
	data[bad.Offset+bad.Size/2] ^= 0xff
	if err := fs.Put(context.Background(), objs[1], bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	rl := &rangeLog{Bucket: fs}
	tr := openTier(t, Config{Bucket: rl, Pointers: ptrs, ReadOnly: true})
	var got [][]byte
	off := int64(0)
	for {
		res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: off, MaxCount: 10})
		got = append(got, res.Records...)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), objs[1]) {
				t.Fatalf("at %d: err %v, want ErrCorrupt naming %s", off, err, objs[1])
			}
			break
		}
		off = res.NextOffset
	}
	if off != bad.FirstOffset {
		t.Fatalf("replay failed at offset %d, the corrupt block starts at %d", off, bad.FirstOffset)
	}
	wantRecords(t, got, g.want[k][:bad.FirstOffset])
	inWindow := false
	for _, r := range rl.log() {
		if r.name == objs[1] && r.off == bad.Offset && r.n > bad.Size {
			inWindow = true
		}
	}
	if !inWindow {
		t.Fatalf("the corrupt block was not fetched inside a window; GETs %+v", rl.log())
	}
	if _, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: bad.FirstOffset, MaxCount: 10}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("retry of the corrupt block: %v, want ErrCorrupt", err)
	}
	next := runs[1].Blocks[1]
	res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: next.FirstOffset, MaxCount: int(next.Count)})
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, res.Records, g.want[k][next.FirstOffset:next.FirstOffset+next.Count])
}

// stallBucket holds the body of the GET of one range open until the GET's context ends.
type stallBucket struct {
	objstore.Bucket
	name    string
	off     int64
	started chan struct{} // closed when the stalled GET begins
	once    sync.Once
	mu      sync.Mutex
	ended   error // the stalled body's error
}

func (b *stallBucket) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	rc, err := b.Bucket.GetRange(ctx, name, off, n)
	if err != nil || name != b.name || off != b.off {
		return rc, err
	}
	b.once.Do(func() { close(b.started) })
	return &stalledBody{ctx: ctx, rc: rc, b: b}, nil
}

type stalledBody struct {
	ctx context.Context
	rc  io.ReadCloser
	b   *stallBucket
}

func (s *stalledBody) Read([]byte) (int, error) {
	<-s.ctx.Done()
	s.b.mu.Lock()
	s.b.ended = s.ctx.Err()
	s.b.mu.Unlock()
	return 0, s.ctx.Err()
}

func (s *stalledBody) Close() error { return s.rc.Close() }

// TestCloseStopsReadAheadInFlight: Close returns while a read-ahead GET is stalled in the
// middle of its body, cancels it, and leaves no goroutine of the tier behind.
func TestCloseStopsReadAheadInFlight(t *testing.T) {
	fs, ptrs, g, runs, objs := twoRunQueue(t)
	k := queueKey{"Topic0", 0}
	sb := &stallBucket{Bucket: fs, name: objs[1], off: runs[1].Blocks[0].Offset, started: make(chan struct{})}
	tr := openTier(t, Config{Bucket: sb, Pointers: ptrs, ReadOnly: true, ReadAheadBytes: 1 << 20})
	res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: 0, MaxCount: 10})
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, res.Records, g.want[k][:10])
	ctx := waitCtx(t)
	select {
	case <-sb.started:
	case <-ctx.Done():
		t.Fatal("the next object was never read ahead")
	}
	closed := make(chan struct{})
	go func() {
		tr.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close hung on a stalled read-ahead")
	}
	sb.mu.Lock()
	ended := sb.ended
	sb.mu.Unlock()
	if !errors.Is(ended, context.Canceled) {
		t.Fatalf("stalled read-ahead GET ended with %v, want context.Canceled", ended)
	}
	// Close waited for every read-ahead goroutine's work; the goroutines themselves end
	// just after signalling it, so give them the processor until they are gone.
	if stacks := readAheadGoroutines(ctx); stacks != "" {
		t.Fatalf("read-ahead goroutines outlived Close:\n%s", stacks)
	}
	if tr.goBackground(func() {}) {
		t.Fatal("a closed tier started background work")
	}
	// A read after Close does not wait for read-ahead that will never come.
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tr.Read(rctx, ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: runs[1].Blocks[0].FirstOffset, MaxCount: 10}); err == nil || rctx.Err() != nil {
		t.Fatalf("read after Close: %v (context %v), want a prompt error", err, rctx.Err())
	}
}

// readAheadGoroutines returns the stacks of goroutines the tier's read-ahead started that
// are still alive, yielding the processor until there are none or ctx ends.
func readAheadGoroutines(ctx context.Context) string {
	buf := make([]byte, 1<<20)
	for {
		var alive []string
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "created by github.com/stratamq/strata/tier.(*Tier).goBackground") {
				alive = append(alive, g)
			}
		}
		if len(alive) == 0 || ctx.Err() != nil {
			return strings.Join(alive, "\n\n")
		}
		runtime.Gosched()
	}
}
