package store

import (
	"encoding/binary"
	"testing"
)

// FuzzCheckFrame feeds arbitrary bytes to the commit-log frame check used by recovery and
// the segment iterator: it must return an error or a record header consistent with the bytes.
func FuzzCheckFrame(f *testing.F) {
	rec := encode(f, "fuzz", 1, "body", map[string]string{"KEYS": "a b", "UNIQ_KEY": "U1"})
	good := append(append([]byte(nil), rec...), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(good[len(rec):], crc32c(rec))
	f.Add(good, int64(0))
	f.Add(good[:len(good)-1], int64(0))
	f.Add([]byte{0, 0, 0, 91}, int64(16))
	f.Add([]byte{}, int64(5))
	f.Fuzz(func(t *testing.T, b []byte, pos int64) {
		h, err := checkFrame(b, pos, 1<<20)
		if err != nil {
			return
		}
		n := int(h.TotalSize)
		if n+frameTrailerBytes > len(b) || h.CommitLogOffset != pos || crc32c(b[:n]) != binary.BigEndian.Uint32(b[n:]) {
			t.Fatalf("accepted an inconsistent frame: size %d, len %d, pos %d/%d", n, len(b), h.CommitLogOffset, pos)
		}
	})
}

// FuzzDecodeIndexEntry checks the segment-index entry decoder (the on-disk consume-queue
// entry) against arbitrary bytes, and that what it accepts re-encodes identically.
func FuzzDecodeIndexEntry(f *testing.F) {
	e := indexEntry{pos: 16, size: 120, queueID: 3, queueOffset: 9, tag: -5, storeTs: 1700000000000,
		topic: "orders", uniqKey: "ABC", keys: []string{"k1", "k2"}}
	f.Add(appendIndexEntry(nil, &e))
	e2 := indexEntry{pos: 1 << 40, size: 91, topic: "t"}
	f.Add(appendIndexEntry(nil, &e2))
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, n, err := decodeIndexEntry(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		again := appendIndexEntry(nil, &got)
		if string(again) != string(b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
	})
}

func TestIndexEntryRoundTrip(t *testing.T) {
	e := indexEntry{pos: 1234, size: 200, queueID: 7, queueOffset: 99, tag: 2598919, storeTs: 42, sysFlag: 8,
		topic: "TopicTest", uniqKey: "7F000001", keys: []string{"a", "bb"}}
	b := appendIndexEntry([]byte("prefix"), &e)[6:]
	got, n, err := decodeIndexEntry(b)
	if err != nil || n != len(b) {
		t.Fatalf("decode: %v (n %d of %d)", err, n, len(b))
	}
	if got.pos != e.pos || got.size != e.size || got.queueID != e.queueID || got.queueOffset != e.queueOffset ||
		got.tag != e.tag || got.storeTs != e.storeTs || got.sysFlag != e.sysFlag || got.topic != e.topic ||
		got.uniqKey != e.uniqKey || len(got.keys) != 2 || got.keys[1] != "bb" {
		t.Fatalf("round trip: %+v", got)
	}
	b[10] ^= 1
	if _, _, err := decodeIndexEntry(b); err == nil {
		t.Fatal("flipped bit accepted")
	}
}
