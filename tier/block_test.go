package tier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/tier/objstore"
)

// TestDecodedBlockSplit: a block's split names every record as splitRecordsFrom walks them,
// and a block with a record that does not parse is not split, so its readers take the walk
// that reports the record where they meet it.
func TestDecodedBlockSplit(t *testing.T) {
	g := newLogGen()
	seg := g.segment(t, 50, []queueKey{{"T", 0}}, 300)
	var raw []byte
	for _, rec := range seg.recs {
		raw = append(raw, rec...)
	}
	blk := newDecodedBlock(raw)
	if !blk.split() || len(blk.entries) != len(seg.recs) {
		t.Fatalf("split %v into %d entries, want %d", blk.split(), len(blk.entries), len(seg.recs))
	}
	i := 0
	err := splitRecordsFrom(raw, 0, false, func(rec []byte, e message.RecordEntry, _ *message.RecordHeader) (bool, error) {
		if blk.entries[i] != e || !bytes.Equal(blk.record(i), rec) || &blk.record(i)[0] != &rec[0] || cap(blk.record(i)) != cap(rec) {
			t.Fatalf("record %d: entry %+v, walk says %+v", i, blk.entries[i], e)
		}
		i++
		return true, nil
	})
	if err != nil || i != len(seg.recs) {
		t.Fatalf("walk: %d records, %v", i, err)
	}
	if want := int64(cap(raw)) + int64(cap(blk.entries))*blockEntryBytes; blk.cost() != want {
		t.Fatalf("cost %d, want %d", blk.cost(), want)
	}

	bad := bytes.Clone(raw)
	second := len(seg.recs[0])
	binary.BigEndian.PutUint32(bad[second+4:], 0xdeadbeef) // the second record's magic code
	if blk := newDecodedBlock(bad); blk.split() {
		t.Fatal("a block with a bad record was split")
	}
}

// TestReadHoldsBlocksUntilRelease: the records of a Read stay as they were while the block
// cache evicts their blocks and later reads decode into recycled buffers, until the Read is
// released; then their buffers are recycled (and, here, overwritten at once), which is what
// a release before the records were sent would have done to a pull response being written.
func TestReadHoldsBlocksUntilRelease(t *testing.T) {
	poisonReleased.Store(true)
	t.Cleanup(func() { poisonReleased.Store(false) })
	mem := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	k := queueKey{"Topic0", 0}
	g := offloadQueues(t, mem, ptrs, []queueKey{k}, 400, 300)
	// A cache of a few 4 KiB blocks: reading on evicts the first read's blocks.
	tr := openTier(t, Config{Bucket: mem, Pointers: ptrs, ReadOnly: true, CacheBytes: 64 << 10})
	held, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, MaxCount: 30})
	if err != nil || len(held.Records) != 30 {
		t.Fatalf("first read: %d records, %v", len(held.Records), err)
	}
	want := make([][]byte, len(held.Records))
	for i, rec := range held.Records {
		want[i] = bytes.Clone(rec)
	}
	for off := held.NextOffset; ; {
		res, err := tr.Read(waitCtx(t), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: off, MaxCount: 20})
		if errors.Is(err, ErrNotInTier) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, rec := range res.Records {
			if wantRec := g.want[k][off+int64(i)]; !bytes.Equal(rec, wantRec) {
				t.Fatalf("record %d: read %d bytes unlike the %d offloaded", off+int64(i), len(rec), len(wantRec))
			}
		}
		res.Release()
		off = res.NextOffset
	}
	for i, rec := range held.Records {
		if !bytes.Equal(rec, want[i]) {
			t.Fatalf("held record %d changed before its read was released", i)
		}
	}
	held.Release()
	held.Release() // a second call does nothing
	changed := 0
	for i, rec := range held.Records {
		if !bytes.Equal(rec, want[i]) {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("released records' buffers were not recycled: this test would not see a release too early")
	}
}
