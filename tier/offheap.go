package tier

import (
	"errors"
	"io"
	"sync"
)

// offHeap hands out byte slices carved from memory mapped outside the Go heap, and gives all
// of it back to the kernel at once (free). The offloader encodes each segment into one: a
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
}

// offHeapChunk is the size of the mappings small allocations are carved from; an allocation
// of more than a quarter of it gets a mapping of its own, so little is left unused.
const offHeapChunk = 64 << 20

// bytes returns a slice of length 0 and capacity n. Mapped memory comes zeroed from the
// kernel and is never reused, so nothing is cleared here.
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
		m, err := mapAnon(offHeapChunk)
		if err != nil {
			return make([]byte, 0, n)
		}
		h.chunks, h.tail = append(h.chunks, m), m
	}
	b := h.tail[:0:n]
	h.tail = h.tail[n:]
	return b
}

// free unmaps every chunk. Nothing carved from h may be used afterwards: readers handed to
// other code go through a guardedReader, revoked before free.
func (h *offHeap) free() {
	if h == nil {
		return
	}
	for _, m := range h.chunks {
		unmapAnon(m)
	}
	h.chunks, h.tail = nil, nil
}

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
