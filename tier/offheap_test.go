package tier

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

// The offloader's encoding off the Go heap gives the same objects as on it, and allocates a
// fraction of the segment on the heap: keys, the index and parsed headers (about 40% of a
// segment of 1 KiB records with three keys each; the heap encoding allocates 170%).
func TestOffHeapEncodingMatchesTheHeapAndStaysOffIt(t *testing.T) {
	g := newLogGen()
	seg := g.segment(t, 20000, queueKeys(500, 4), 1024)
	var raw int
	for _, r := range seg.recs {
		raw += len(r)
	}
	heapAllocs := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var onHeap, offHeapEnc *EncodedSegment
	var err error
	heapCost := heapAllocs(func() {
		onHeap, err = encodeSegment(waitCtx(t), "c/g", 3, seg, 0, 0, nil, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	var mem offHeap
	defer mem.free()
	offCost := heapAllocs(func() {
		offHeapEnc, err = encodeSegment(waitCtx(t), "c/g", 3, seg, 0, 0, nil, &mem)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onHeap.Main.Data, offHeapEnc.Main.Data) || onHeap.Main.Name != offHeapEnc.Main.Name {
		t.Fatal("the off-heap encoding differs from the heap's")
	}
	if heapCost < uint64(raw) {
		t.Fatalf("on the heap the encoding allocated %d bytes for a %d-byte segment: this check measures nothing", heapCost, raw)
	}
	if offHeapSupported && offCost > uint64(raw)/2 {
		t.Fatalf("off the heap the encoding still allocated %d heap bytes for a %d-byte segment (on the heap: %d)", offCost, raw, heapCost)
	}
}

func TestOffHeapCarvesSmallAllocationsAndMapsLargeOnes(t *testing.T) {
	var mem offHeap
	defer mem.free()
	a, b := mem.bytes(100), mem.bytes(200)
	a, b = append(a, bytes.Repeat([]byte{1}, 100)...), append(b, bytes.Repeat([]byte{2}, 200)...)
	if len(a) != 100 || cap(a) != 100 || cap(b) != 200 || a[99] != 1 || b[0] != 2 {
		t.Fatalf("allocations overlap or are mis-sized: len %d cap %d, cap %d", len(a), cap(a), cap(b))
	}
	big := mem.bytes(offHeapChunk)
	if cap(big) != offHeapChunk {
		t.Fatalf("a chunk-sized allocation has capacity %d", cap(big))
	}
	if offHeapSupported && len(mem.chunks) != 2 {
		t.Fatalf("%d mappings for two small and one large allocation, want 2", len(mem.chunks))
	}
	var none *offHeap
	if h := none.bytes(10); cap(h) != 10 {
		t.Fatalf("a nil offHeap gave capacity %d", cap(h))
	}
}

func TestGuardedReaderRefusesReadsOnceRevoked(t *testing.T) {
	r := &guardedReader{data: []byte("segment object")}
	head := make([]byte, 7)
	if _, err := io.ReadFull(r, head); err != nil || string(head) != "segment" {
		t.Fatalf("read %q: %v", head, err)
	}
	if rest, err := io.ReadAll(r); err != nil || string(rest) != " object" {
		t.Fatalf("read the rest %q: %v", rest, err)
	}
	r.revoke()
	if n, err := r.Read(head); n != 0 || !errors.Is(err, errRevoked) {
		t.Fatalf("read after revoke: %d bytes, %v", n, err)
	}
}
