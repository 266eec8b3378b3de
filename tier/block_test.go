package tier

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stratamq/strata/broker/message"
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
	if want := int64(len(raw)) + int64(cap(blk.entries))*blockEntryBytes; blk.cost() != want {
		t.Fatalf("cost %d, want %d", blk.cost(), want)
	}

	bad := bytes.Clone(raw)
	second := len(seg.recs[0])
	binary.BigEndian.PutUint32(bad[second+4:], 0xdeadbeef) // the second record's magic code
	if blk := newDecodedBlock(bad); blk.split() {
		t.Fatal("a block with a bad record was split")
	}
}
