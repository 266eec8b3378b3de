package remoting

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Recycled frame buffers, on the dialling side.
//
// A Client reads every frame longer than minPooledFrameBytes into a buffer taken from
// frameBufs, not a fresh zeroed one: a replay pulls 256 records of 1 KiB per response, and
// allocating (and clearing) a quarter of a MiB per pull was a fifth of the client's CPU and
// most of its garbage. A buffer goes back only when its owner says so, with
// Command.Release; a command that is never released leaves its buffer to the garbage
// collector, as before. So the buffers are reused exactly where a caller has said that
// nothing points into the frame any more (Body and whatever was sliced from it), and
// nowhere else.
//
// Buffers are kept by size class, four to an octave (capacities 5/4, 6/4, 7/4 and 8/4 of
// a power of two), so a frame takes at most a quarter more than its length and frames of
// about the same size share buffers.

// Frames of more than minPooledFrameBytes and at most maxPooledFrameBytes are read into
// recycled buffers: smaller ones are cheap to allocate, larger ones (beyond the default
// frame limit) rare. A tailing consumer's pulls answer with one message of about a KiB each,
// which makes most of its garbage at a high rate, so the bound sits below them.
const (
	minPooledFrameOctave  = 10
	maxPooledFrameOctave  = 24
	minPooledFrameBytes   = 1 << minPooledFrameOctave // 1 KiB
	maxPooledFrameBytes   = 1 << maxPooledFrameOctave // 16 MiB, DefaultMaxFrameBytes
	frameClassesPerOctave = 4
)

var frameBufs [(maxPooledFrameOctave - minPooledFrameOctave) * frameClassesPerOctave]sync.Pool // *[]byte

// frameClass returns the pool of a frame of n bytes (minPooledFrameBytes < n ≤
// maxPooledFrameBytes) and the capacity of the buffers it holds.
func frameClass(n int) (idx, capacity int) {
	k := bits.Len(uint(n - 1)) // 2^(k-1) < n ≤ 2^k
	shift := k - 3
	c := (n-1)>>shift + 1 // in 5..8
	return (k-minPooledFrameOctave-1)*frameClassesPerOctave + c - 5, c << shift
}

// getFrameBuf returns a buffer of n bytes with unspecified contents, for a reader that
// fills every byte, recycled when one of its size is free.
func getFrameBuf(n int) []byte {
	if n <= minPooledFrameBytes || n > maxPooledFrameBytes {
		return make([]byte, n)
	}
	idx, capacity := frameClass(n)
	if p, _ := frameBufs[idx].Get().(*[]byte); p != nil {
		return (*p)[:n]
	}
	return make([]byte, n, capacity)
}

// poisonReleasedFrames, set by tests, overwrites frame buffers as they are released, so a
// read of a released frame shows.
var poisonReleasedFrames atomic.Bool

// putFrameBuf hands back a buffer that getFrameBuf returned and nothing references any more.
func putFrameBuf(b []byte) {
	n := len(b)
	if n <= minPooledFrameBytes || n > maxPooledFrameBytes {
		return
	}
	idx, capacity := frameClass(n)
	if cap(b) != capacity {
		return // not one of ours
	}
	b = b[:capacity]
	if poisonReleasedFrames.Load() {
		for i := range b {
			b[i] = 0xEE
		}
	}
	frameBufs[idx].Put(&b)
}
