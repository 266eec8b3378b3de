package tier

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stratamq/strata/broker/message"
)

func TestFormatRoundTrip(t *testing.T) {
	g := newLogGen()
	queues := queueKeys(5, 8)
	for range 40 { // one hot queue gets half of the records and an object of its own
		queues = append(queues, queues[0])
	}
	seg := g.segment(t, 3000, queues, 200)
	enc, err := EncodeSegmentFrom(waitCtx(t), "c/g", 7, seg, 16<<10, 120<<10)
	if err != nil {
		t.Fatal(err)
	}
	again, err := EncodeSegmentFrom(waitCtx(t), "c/g", 7, seg, 16<<10, 120<<10)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc.Main.Data, again.Main.Data) || len(enc.Companions) != len(again.Companions) {
		t.Fatal("encoding the same segment twice gave different bytes")
	}
	if enc.Main.Name != "c/g/segments/00000000000000000000-0000000000000007.seg" {
		t.Fatalf("object name %q", enc.Main.Name)
	}
	objects := map[string][]byte{enc.Main.Name: enc.Main.Data}
	for _, c := range enc.Companions {
		objects[c.Name] = c.Data
		if _, _, err := DecodeSegmentObject(c.Data); err != nil {
			t.Fatalf("companion %s: %v", c.Name, err)
		}
	}
	idx, keys, err := DecodeSegmentObject(enc.Main.Data)
	if err != nil {
		t.Fatal(err)
	}
	if idx.Base != seg.base || idx.End != seg.end || len(idx.Queues) != 40 {
		t.Fatalf("index covers [%d,%d) with %d queues", idx.Base, idx.End, len(idx.Queues))
	}
	ownObjects := 0
	for qi, q := range idx.Queues {
		if q.Object != "" {
			ownObjects++
		}
		var got [][]byte
		for _, b := range q.Blocks {
			obj := objects[enc.Main.Name]
			if q.Object != "" {
				obj = objects[q.Object]
			}
			raw, err := DecodeBlock(obj[b.Offset:b.Offset+b.Size], b.RawSize)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			if err := SplitRecords(raw, func(rec []byte, h *message.RecordHeader) (bool, error) {
				if h.QueueOffset != b.FirstOffset+int64(n) {
					t.Fatalf("block record %d has offset %d, block starts at %d", n, h.QueueOffset, b.FirstOffset)
				}
				n++
				got = append(got, append([]byte(nil), rec...))
				return true, nil
			}); err != nil {
				t.Fatal(err)
			}
			if int64(n) != b.Count {
				t.Fatalf("block holds %d records, index says %d", n, b.Count)
			}
		}
		want := g.want[queueKey{q.Topic, q.QueueID}]
		if len(got) != len(want) || int64(len(want)) != q.Count {
			t.Fatalf("%s/%d: %d records, want %d", q.Topic, q.QueueID, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s/%d record %d differs", q.Topic, q.QueueID, i)
			}
		}
		if len(keys[qi].UniqKeys) != len(want) || len(keys[qi].Keys) != 2*len(want) {
			t.Fatalf("%s/%d: %d uniq keys, %d keys for %d records", q.Topic, q.QueueID, len(keys[qi].UniqKeys), len(keys[qi].Keys), len(want))
		}
	}
	if ownObjects != 1 || len(enc.Companions) != 1 {
		t.Fatalf("%d runs point at own objects, %d companions written", ownObjects, len(enc.Companions))
	}
	// Objects are written at their final size, with no spare capacity held until the upload.
	for _, o := range append([]EncodedObject{enc.Main}, enc.Companions...) {
		if cap(o.Data) != len(o.Data) {
			t.Fatalf("%s: %d bytes in a buffer of %d", o.Name, len(o.Data), cap(o.Data))
		}
	}
}

// Sizing queues from the previous segment changes no byte of the objects, and no block
// passes the block size but by a record that alone is larger.
func TestSegmentEncoderSizeHints(t *testing.T) {
	g := newLogGen()
	const blockBytes = 16 << 10
	queues := queueKeys(30, 4)
	var hints sizeHints
	for i, n := range []int{400, 2000, 300} {
		seg := g.segment(t, n, queues, 50+i*400)
		plain, err := EncodeSegmentFrom(waitCtx(t), "c/g", 1, seg, blockBytes, 120<<10)
		if err != nil {
			t.Fatal(err)
		}
		hinted, err := encodeSegment(waitCtx(t), "c/g", 1, seg, blockBytes, 120<<10, &hints, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain.Main.Data, hinted.Main.Data) || len(plain.Companions) != len(hinted.Companions) {
			t.Fatalf("segment %d: sized from the previous segment, the encoding differs", i)
		}
		for j := range plain.Companions {
			if !bytes.Equal(plain.Companions[j].Data, hinted.Companions[j].Data) {
				t.Fatalf("segment %d: companion %d differs", i, j)
			}
		}
		if got := len(*hints.last.Load()); got != len(plain.Index.Queues) {
			t.Fatalf("segment %d: sizes of %d queues kept, want %d", i, got, len(plain.Index.Queues))
		}
		for _, q := range plain.Index.Queues {
			for _, b := range q.Blocks {
				if b.RawSize > blockBytes && b.Count > 1 {
					t.Fatalf("%s/%d: block of %d records holds %d bytes, over %d", q.Topic, q.QueueID, b.Count, b.RawSize, blockBytes)
				}
			}
		}
	}
}

// The first segment, with none before it, is sized by reading it once more: every queue at
// exactly the bytes it holds. A record it cannot place (malformed, or a queue id past
// maxSizedQueueID) is left for Add to judge, not counted.
func TestQueueRawBytesSizesEachQueue(t *testing.T) {
	g := newLogGen()
	seg := g.segment(t, 900, queueKeys(7, 3), 300)
	enc, err := EncodeSegmentFrom(waitCtx(t), "c/g", 1, seg, 16<<10, 120<<10)
	if err != nil {
		t.Fatal(err)
	}
	far := g.segment(t, 1, []queueKey{{"far", maxSizedQueueID}}, 10).recs[0]
	seg.recs = append(seg.recs, []byte("not a record"), far)
	sizes, err := queueRawBytes(waitCtx(t), seg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) != len(enc.Index.Queues) {
		t.Fatalf("sized %d queues, the segment has %d", len(sizes), len(enc.Index.Queues))
	}
	for _, q := range enc.Index.Queues {
		if got := sizes[queueKey{q.Topic, q.QueueID}].raw; int64(got) != q.RawBytes {
			t.Errorf("%s/%d: sized at %d bytes, holds %d", q.Topic, q.QueueID, got, q.RawBytes)
		}
	}
}

func TestDecodeBlockDetectsCorruption(t *testing.T) {
	raw := bytes.Repeat([]byte("records "), 1000)
	b := &runBuilder{raw: raw}
	b.cut(nil, nil)
	frame := b.frames[0]
	if got, err := DecodeBlock(frame, int64(len(raw))); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("clean block: %v", err)
	}
	for _, pos := range []int{0, len(frame) / 2, len(frame) - 1} {
		bad := append([]byte(nil), frame...)
		bad[pos] ^= 0x40
		if _, err := DecodeBlock(bad, int64(len(raw))); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: err %v, want ErrCorrupt", pos, err)
		}
	}
	if _, err := DecodeBlock(frame, int64(len(raw))+1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("wrong raw size: err %v", err)
	}
}

func TestDecodeFooterRejects(t *testing.T) {
	g := newLogGen()
	enc, err := EncodeSegmentFrom(waitCtx(t), "c/g", 1, g.segment(t, 10, queueKeys(1, 2), 10), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	obj := enc.Main.Data
	foot := obj[len(obj)-FooterBytes:]
	if _, err := DecodeFooter(foot, int64(len(obj))); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func([]byte){
		"magic":    func(b []byte) { b[47] = 'X' },
		"version":  func(b []byte) { b[39] = 9 },
		"reserved": func(b []byte) { b[33] = 1 },
		"offset":   func(b []byte) { b[0] = 0x7f },
	} {
		b := append([]byte(nil), foot...)
		mut(b)
		if _, err := DecodeFooter(b, int64(len(obj))); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
	// A flipped index byte fails the index checksum.
	bad := append([]byte(nil), obj...)
	bad[enc.Footer.IndexOffset+1] ^= 1
	if _, _, err := DecodeSegmentObject(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped index: err %v", err)
	}
}
