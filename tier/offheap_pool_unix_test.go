//go:build unix

package tier

import (
	"bytes"
	"testing"
	"time"
)

// kept is the number of chunks the pool holds.
func (p *chunkPool) kept() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// A chunk back in the pool still holds the last segment's bytes: encoding the next segment
// into it must give exactly the objects the heap encoding gives.
func TestPooledChunksCarryOldBytesYetEncodeTheSame(t *testing.T) {
	pool := chunkPool{max: encoderChunksKept, idle: time.Hour}
	defer pool.close()
	g := newLogGen()
	first := g.segment(t, 20000, queueKeys(500, 4), 1024)
	second := g.segment(t, 15000, queueKeys(300, 4), 700)
	var hints sizeHints
	encode := func(seg *testSegment) {
		mem := offHeap{pool: &pool}
		defer mem.free()
		onHeap, err := encodeSegment(waitCtx(t), "c/g", 3, seg, 0, 0, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		pooled, err := encodeSegment(waitCtx(t), "c/g", 3, seg, 0, 0, &hints, &mem)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onHeap.Main.Data, pooled.Main.Data) {
			t.Fatal("the encoding into pooled chunks differs from the heap's")
		}
	}
	encode(first)
	kept := pool.kept()
	if kept == 0 {
		t.Fatal("the pool kept no chunk of the first segment's encoding")
	}
	// Fill the kept chunks with bytes no encoding writes, so that a read of anything not
	// written first shows.
	var dirty [][]byte
	for m := pool.get(); m != nil; m = pool.get() {
		for i := range m {
			m[i] = 0xA5
		}
		dirty = append(dirty, m)
	}
	pool.put(dirty)
	encode(second)
	if got := pool.kept(); got < kept {
		t.Fatalf("the pool holds %d chunks after the second segment, %d after the first: chunks were not given back", got, kept)
	}
}

func TestChunkPoolKeepsAtMostItsMaxAndDrains(t *testing.T) {
	pool := chunkPool{max: 2, idle: time.Hour}
	defer pool.close()
	mem := offHeap{pool: &pool}
	for i := 0; i < 12; i++ {
		mem.bytes(offHeapChunk / 4) // carved: four to a chunk
	}
	mem.bytes(offHeapChunk/4 + 1) // a mapping of its own, unmapped at free
	mapped := len(mem.chunks)
	mem.free()
	if mapped != 4 || pool.kept() != 2 {
		t.Fatalf("%d mappings freed into a pool of at most 2: it keeps %d", mapped, pool.kept())
	}
	again := offHeap{pool: &pool}
	again.bytes(100)
	if pool.kept() != 1 {
		t.Fatalf("an allocation from a pool of 2 chunks left %d in it, want 1", pool.kept())
	}
	again.free()
	pool.drain()
	if pool.kept() != 0 {
		t.Fatalf("a drained pool keeps %d chunks", pool.kept())
	}
}
