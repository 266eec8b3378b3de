package tier

import (
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
type decodedBlock struct {
	raw     []byte
	entries []message.RecordEntry // nil: not split
	starts  []int32               // starts[i] is where entries[i]'s record begins in raw
}

// blockEntryBytes is what one record's split costs the block cache.
const blockEntryBytes = int64(unsafe.Sizeof(message.RecordEntry{}) + unsafe.Sizeof(int32(0)))

// newDecodedBlock splits raw into its records. Records before a V2 one or a bad one are
// not kept either: such a block is read the slow way throughout.
func newDecodedBlock(raw []byte) *decodedBlock {
	b := &decodedBlock{raw: raw}
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
	return int64(len(b.raw)) + int64(cap(b.entries))*blockEntryBytes
}

// split reports whether the block's records were split.
func (b *decodedBlock) split() bool { return b.entries != nil }

// record returns record i of a split block. Its capacity runs on to the block's end, as
// splitRecordsFrom's records' do, so adjacent records can be sent as one slice.
func (b *decodedBlock) record(i int) []byte {
	s := int(b.starts[i])
	return b.raw[s : s+int(b.entries[i].TotalSize)]
}
