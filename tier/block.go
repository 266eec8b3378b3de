package tier

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/stratamq/strata/broker/message"
)

// decodedBlock is a block as the block cache holds it: its decompressed, checksum-verified
// records and, split once when it was decoded, where each record starts and its entry.
//
// The split is made where the block is decoded (a read-ahead goroutine, for a replay), while
// its bytes are still in the CPU's cache; a pull then takes records from the entries alone
// and touches the block's bytes only to send them. A block whose records do not all split
// has no entries, and its readers walk its bytes themselves (splitRecordsFrom), which
// reports the bad record where the read meets it, as before.
//
// Buffers: a block fetched by the tier is decoded into a buffer of blockBufs, which goes
// back there for the next block once nothing references it. refs counts the references:
// the block cache's, while it holds the block, and one per reader handed the block (runBlock)
// that has not released it. A Read keeps the references of the blocks its records are in
// until ReadResult.Release; the broker releases once the pull response that sends those
// records has been written to the socket (remoting.Command.Written). A reference that is
// never released only keeps the buffer from being recycled, and the garbage collector frees
// it: a missed release costs an allocation, never a record. Releasing early would be the
// bug, which is why every reader but Read's callers keeps its reference.
type decodedBlock struct {
	raw     []byte
	entries []message.RecordEntry // nil: not split
	starts  []int32               // starts[i] is where entries[i]'s record begins in raw
	refs    atomic.Int32
	// recycle: raw came from blockBufs and goes back when refs drops to zero. Set before
	// the block is published, never after.
	recycle bool
}

// blockEntryBytes is what one record's split costs the block cache.
const blockEntryBytes = int64(unsafe.Sizeof(message.RecordEntry{}) + unsafe.Sizeof(int32(0)))

// newDecodedBlock splits raw into its records. Records before a V2 one or a bad one are
// not kept either: such a block is read the slow way throughout.
func newDecodedBlock(raw []byte) *decodedBlock {
	b := &decodedBlock{raw: raw}
	b.refs.Store(1)
	// About 1 KiB per record in a replay; the slices grow if records are smaller.
	entries := make([]message.RecordEntry, 0, len(raw)/1024+1)
	starts := make([]int32, 0, cap(entries))
	for off := 0; off < len(raw); {
		e, ok := message.PeekRecordEntry(raw[off:])
		if !ok {
			h, err := message.ParseRecordHeader(raw[off:])
			if err != nil {
				return b
			}
			e = message.RecordEntry{TotalSize: h.TotalSize, QueueOffset: h.QueueOffset, CommitLogOffset: h.CommitLogOffset, StoreTimestamp: h.StoreTimestamp}
		}
		entries = append(entries, e)
		starts = append(starts, int32(off))
		off += int(e.TotalSize)
	}
	b.entries, b.starts = entries, starts
	return b
}

// cost is what the block takes from the block cache's budget.
func (b *decodedBlock) cost() int64 {
	return int64(cap(b.raw)) + int64(cap(b.entries))*blockEntryBytes
}

// acquire takes a reference. The caller holds one already, or the cache's lock while the
// cache holds the block.
func (b *decodedBlock) acquire() { b.refs.Add(1) }

// release drops a reference; the last one sends a recyclable buffer back to blockBufs.
func (b *decodedBlock) release() {
	if b.refs.Add(-1) == 0 && b.recycle {
		putBlockBuf(b.raw)
	}
}

// blockBufs holds decode buffers that no block references any more (*[]byte).
var blockBufs sync.Pool

// getBlockBuf returns a buffer of n bytes with unspecified contents, for a decoder that
// writes every byte. Capacities are rounded up by at most 1/16 of n, so blocks of about the
// same size (a block closes once it passes the writer's block size) share buffers: a
// 1 MiB block and one of 1 MiB and a record both take 1 MiB + 64 KiB.
func getBlockBuf(n int) []byte { return getPooledBuf(&blockBufs, n) }

// getPooledBuf is getBlockBuf from pool.
func getPooledBuf(pool *sync.Pool, n int) []byte {
	if p, _ := pool.Get().(*[]byte); p != nil && cap(*p) >= n && cap(*p) <= 2*n {
		return (*p)[:n]
	}
	round := 1 << max(9, bits.Len(uint(n))-5)
	return make([]byte, n, (n+round-1)/round*round)
}

// windowFrames holds the buffers fetchWindow reads compressed frames into (*[]byte), apart
// from blockBufs: a frame of compressible records is smaller than the block it decodes
// to, and the two would evict each other's buffers.
var windowFrames sync.Pool

// getWindowFrame returns a buffer of n bytes with unspecified contents, for io.ReadFull.
func getWindowFrame(n int) []byte { return getPooledBuf(&windowFrames, n) }

// putWindowFrame hands back a frame buffer once its last block is decoded: decoding copies
// out of it, so nothing references it.
func putWindowFrame(b []byte) {
	b = b[:cap(b)]
	windowFrames.Put(&b)
}

// poisonReleased, set by tests, overwrites buffers as they are recycled, so a record read
// after its block's release shows.
var poisonReleased atomic.Bool

func putBlockBuf(b []byte) {
	b = b[:cap(b)]
	if poisonReleased.Load() {
		for i := range b {
			b[i] = 0xEE
		}
	}
	blockBufs.Put(&b)
}

// split reports whether the block's records were split.
func (b *decodedBlock) split() bool { return b.entries != nil }

// record returns record i of a split block. Its capacity runs on to the block's end, as
// splitRecordsFrom's records' do, so adjacent records can be sent as one slice.
func (b *decodedBlock) record(i int) []byte {
	s := int(b.starts[i])
	return b.raw[s : s+int(b.entries[i].TotalSize)]
}
