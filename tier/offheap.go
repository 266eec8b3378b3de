package tier

import (
	"errors"
	"io"
	"sync"
	"time"
)

// offHeap hands out byte slices carved from memory mapped outside the Go heap, and gives all
// of it back at once (free): to its chunkPool, if it has one, or to the kernel. The offloader encodes each segment into one: a
// segment spread over thousands of queues holds up to its raw size in open blocks, plus
// their frames and the objects laid out from them, and held in the Go heap that raised the
// collector's target by as much. The broker's ordinary garbage (request bodies, answers) then
// went to fresh pages until the heap reached it: with 1,000 topics the heap grew to 4.4 GB per
// 1 GiB segment and the kernel's zeroing of new pages was 45% of the broker's CPU.
//
// The memory is only ever read as bytes: it holds no Go pointers. A nil *offHeap allocates
// from the Go heap instead, so the encoder's other callers are unchanged.
type offHeap struct {
	chunks [][]byte // every mapping, freed together
	tail   []byte   // the unused end of the last chunk
	// pool, when not nil, lends chunks mapped for an earlier segment and takes them back
	// at free, so their pages are not faulted in and zeroed again (chunkPool).
	pool *chunkPool
}

// offHeapChunk is the size of the mappings small allocations are carved from; an allocation
// of more than a quarter of it gets a mapping of its own, so little is left unused.
const offHeapChunk = 64 << 20

// bytes returns a slice of length 0 and capacity n. Its contents are undefined (a pooled
// chunk holds an earlier segment's bytes): callers only append to it.
func (h *offHeap) bytes(n int) []byte {
	if h == nil || !offHeapSupported || n <= 0 {
		return make([]byte, 0, n)
	}
	if n > offHeapChunk/4 {
		m, err := mapAnon(n)
		if err != nil {
			return make([]byte, 0, n) // out of mappings: the heap still works
		}
		h.chunks = append(h.chunks, m)
		return m[:0:n]
	}
	if len(h.tail) < n {
		m := h.pool.get()
		if m == nil {
			var err error
			if m, err = mapAnon(offHeapChunk); err != nil {
				return make([]byte, 0, n)
			}
		}
		h.chunks, h.tail = append(h.chunks, m), m
	}
	b := h.tail[:0:n]
	h.tail = h.tail[n:]
	return b
}

// free unmaps every mapping, or gives the chunk-sized ones back to the pool. Nothing carved
// from h may be used afterwards: readers handed to other code go through a guardedReader,
// revoked before free.
func (h *offHeap) free() {
	if h == nil {
		return
	}
	var back [][]byte
	for _, m := range h.chunks {
		if h.pool != nil && len(m) == offHeapChunk {
			back = append(back, m)
		} else {
			unmapAnon(m)
		}
	}
	h.pool.put(back)
	h.chunks, h.tail = nil, nil
}

// chunkPool keeps the offloader's chunks from one segment to the next. Fresh anonymous
// memory costs a page fault and the kernel's zeroing per page, on this project's VMs more
// than the copy into it: writing a 1 GiB segment spread over 4,000 queues into fresh open
// blocks was a tenth of the broker's CPU (strata bench --topics 1000). At most max chunks
// are kept, and all are unmapped once the pool has been idle for idle, so a broker that
// stops writing gives the memory back. Safe for concurrent use.
type chunkPool struct {
	max  int
	idle time.Duration

	mu    sync.Mutex
	free  [][]byte
	timer *time.Timer
}

// get returns a kept chunk, or nil.
func (p *chunkPool) get() []byte {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return nil
	}
	m := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return m
}

// put takes chunks back, unmapping those over max, and restarts the idle countdown.
func (p *chunkPool) put(chunks [][]byte) {
	if p == nil || len(chunks) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range chunks {
		if len(p.free) < p.max {
			p.free = append(p.free, m)
		} else {
			unmapAnon(m)
		}
	}
	if p.timer == nil {
		p.timer = time.AfterFunc(p.idle, p.drain)
	} else {
		p.timer.Reset(p.idle)
	}
}

// drain unmaps every kept chunk (chunks lent out are unaffected).
func (p *chunkPool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.free {
		unmapAnon(m)
	}
	p.free = nil
}

// close stops the idle countdown and unmaps every kept chunk.
func (p *chunkPool) close() {
	p.mu.Lock()
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	p.drain()
}

// The offloader keeps up to 2 GiB of chunks between segments, enough for a 1 GiB segment's
// open blocks and frames, and gives them back after a minute without an offload.
const (
	encoderChunksKept = 32
	encoderChunksIdle = time.Minute
)

// errRevoked is what a guardedReader returns once the memory under it is about to be freed.
var errRevoked = errors.New("tier: read of an upload buffer after its upload ended")

// guardedReader reads an off-heap object and can be revoked: a bucket client that still held
// the reader after Put returned (an HTTP transport may finish sending a body in the
// background) gets errRevoked rather than reading unmapped memory.
type guardedReader struct {
	mu      sync.Mutex
	data    []byte
	off     int64
	revoked bool
}

func (g *guardedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.revoked {
		return 0, errRevoked
	}
	if g.off >= int64(len(g.data)) {
		return 0, io.EOF
	}
	n := copy(p, g.data[g.off:])
	g.off += int64(n)
	return n, nil
}

// revoke makes every later Read fail; it returns once no Read is running.
func (g *guardedReader) revoke() {
	g.mu.Lock()
	g.revoked, g.data = true, nil
	g.mu.Unlock()
}
