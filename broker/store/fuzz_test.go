package store

import (
	"encoding/binary"
	"testing"

	"github.com/stratamq/strata/broker/message"
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

// FuzzDecodeCQRecord checks the page-map record decoder (pages, fragments, resets) and the
// queue-table record decoder, which share the framing, against arbitrary bytes: what they
// accept re-encodes identically.
func FuzzDecodeCQRecord(f *testing.F) {
	for _, r := range []cqRecord{
		{kind: cqRecordPage, queue: 3, first: 145, page: 7, firstTs: 1700000000000, firstP: 16, lastP: 9000},
		{kind: cqRecordFragment, queue: 1, first: 2, entries: []cqEntry{{pos: 16, size: 120, tag: -5, storeTs: 1}, {pos: 140, size: 91}}},
		{kind: cqRecordReset, queue: 9, first: 500},
	} {
		b, _ := appendCQRecord(nil, nil, &r)
		f.Add(b)
	}
	f.Add(appendQueueRecord(nil, &queueRecord{num: 1, queueID: 3, createdPos: 16, topic: "orders"}))
	f.Add([]byte{0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, n, err := decodeCQRecord(b); err == nil {
			if n > len(b) {
				t.Fatalf("consumed %d of %d bytes", n, len(b))
			}
			again, _ := appendCQRecord(nil, nil, &r)
			if string(again) != string(b[:n]) {
				t.Fatalf("page-map record re-encodes differently:\n%x\n%x", again, b[:n])
			}
		}
		if r, n, err := decodeQueueRecord(b); err == nil {
			if again := appendQueueRecord(nil, &r); string(again) != string(b[:n]) {
				t.Fatalf("queue record re-encodes differently:\n%x\n%x", again, b[:n])
			}
		}
	})
}

// FuzzCheckCQPage checks the consume-queue page check: a page it accepts holds the queue and
// offset asked for and re-encodes identically. The input is the page's leading bytes, padded
// with zeros to a page, which keeps inputs short enough for the fuzzer to minimise.
func FuzzCheckCQPage(f *testing.F) {
	page := make([]byte, cqPageBytes)
	entries := make([]cqEntry, cqPageEntries)
	for i := range entries[:3] {
		entries[i] = cqEntry{pos: int64(16 + 200*i), size: 200, tag: int64(i), storeTs: int64(1000 + i)}
	}
	encodeCQPage(page, 4, 290, entries)
	f.Add(page[:cqPageHeaderBytes+3*cqEntryBytes], uint32(4), int64(290))
	f.Add(page[:10], uint32(4), int64(290))
	f.Fuzz(func(t *testing.T, lead []byte, queue uint32, first int64) {
		if len(lead) > cqPageBytes {
			return
		}
		b := make([]byte, cqPageBytes)
		copy(b, lead)
		if err := checkCQPage(b, queue, first); err != nil {
			return
		}
		got := make([]cqEntry, cqPageEntries)
		for i := range got {
			got[i] = getCQEntry(b[cqPageHeaderBytes+i*cqEntryBytes:])
		}
		again := make([]byte, cqPageBytes)
		encodeCQPage(again, queue, first, got)
		if err := checkCQPage(again, queue, first); err != nil {
			t.Fatalf("re-encoded page fails its check: %v", err)
		}
		n := cqPageHeaderBytes + cqPageEntries*cqEntryBytes
		if string(again[cqPageHeaderBytes:n]) != string(b[cqPageHeaderBytes:n]) {
			t.Fatal("accepted page's entries re-encode differently")
		}
	})
}

// FuzzDecodeIndexHeaders checks the fixed-size index decoders — checkpoint slot, seal file,
// key-index header and footer, page-map and queue-table headers — against arbitrary bytes:
// each either errors or returns fields that re-encode to the same bytes.
func FuzzDecodeIndexHeaders(f *testing.F) {
	f.Add(encodeCheckpoint(&checkpoint{seq: 3, replayFrom: 16, indexedEnd: 900, lastStoreTs: 5, cqSegment: 0, cqMapBytes: 40,
		cqPages: 2, keyFile: 16, keyCount: 9, queueTableBytes: 30}))
	f.Add(encodeSeal(sealInfo{base: 4096, end: 8000, firstTs: 1, lastTs: 2}))
	f.Add(encodeKeyFileHeader(1024, 4096, 16))
	f.Add(encodeKeyFileFooter(keyFileFooter{count: 3, slots: 16, minPos: 16, maxPos: 300, minTs: 1, maxTs: 9}))
	f.Add(encodeCQMapHeader(4096))
	f.Add(encodeQueueTableHeader())
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := decodeCheckpoint(b); err == nil {
			if again, err := decodeCheckpoint(encodeCheckpoint(&c)); err != nil || again != c {
				t.Fatalf("checkpoint %+v does not round-trip: %+v, %v", c, again, err)
			}
		}
		if len(b) >= 16 {
			base := int64(binary.BigEndian.Uint64(b[8:]))
			if si, err := decodeSeal(b, base); err == nil {
				if again, err := decodeSeal(encodeSeal(si), base); err != nil || again != si {
					t.Fatalf("seal %+v does not round-trip: %+v, %v", si, again, err)
				}
			}
			if err := checkCQMapHeader(b, base); err == nil && string(b[:5]) != string(encodeCQMapHeader(base)[:5]) {
				t.Fatalf("page map header %x accepted", b[:5])
			}
		}
		if h, err := decodeKeyFileHeader(b); err == nil {
			if again, err := decodeKeyFileHeader(encodeKeyFileHeader(h.slots, h.capacity, h.firstPos)); err != nil || again != h {
				t.Fatalf("key file header %+v does not round-trip: %+v, %v", h, again, err)
			}
		}
		if ft, err := decodeKeyFileFooter(b); err == nil {
			if again, err := decodeKeyFileFooter(encodeKeyFileFooter(ft)); err != nil || again != ft {
				t.Fatalf("key file footer %+v does not round-trip: %+v, %v", ft, again, err)
			}
		}
		if err := checkQueueTableHeader(b); err == nil && b[4] != queueTableVersion {
			t.Fatalf("queue table header of version %d accepted", b[4])
		}
	})
}

// FuzzDecodeEpochs checks the epoch-history decoder: what it accepts is ordered and
// re-encodes to the same bytes.
func FuzzDecodeEpochs(f *testing.F) {
	f.Add(encodeEpochs(nil))
	f.Add(encodeEpochs([]EpochStart{{Epoch: 3, StartOffset: 16}, {Epoch: 9, StartOffset: 16}, {Epoch: 12, StartOffset: 4096}}))
	bad := encodeEpochs([]EpochStart{{Epoch: 5, StartOffset: 100}, {Epoch: 4, StartOffset: 200}})
	f.Add(bad)
	f.Add([]byte("SEPH"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeEpochs(b)
		if err != nil {
			return
		}
		for i := 1; i < len(h); i++ {
			if h[i].Epoch <= h[i-1].Epoch || h[i].StartOffset < h[i-1].StartOffset {
				t.Fatalf("accepted an unordered history: %v", h)
			}
		}
		if got := encodeEpochs(h); string(got) != string(b) {
			t.Fatalf("re-encoding differs: %x vs %x", got, b)
		}
	})
}

// FuzzParseReplicated feeds arbitrary bytes to the check of replicated log bytes: what it
// accepts is whole segment headers and frames that cover the input exactly.
func FuzzParseReplicated(f *testing.F) {
	rec := encode(f, "fuzz", 1, "body", nil)
	if err := message.PatchAppendFields(rec, 0, 16, 1); err != nil {
		f.Fatal(err)
	}
	good := binary.BigEndian.AppendUint32(append([]byte(nil), rec...), crc32c(rec))
	f.Add(good, int64(16))
	f.Add(append(encodeSegmentHeader(1000), good...), int64(1000))
	f.Add(good[:50], int64(16))
	f.Fuzz(func(t *testing.T, b []byte, pos int64) {
		pieces, err := parseReplicated(pos, b, 1<<20)
		if err != nil {
			return
		}
		at := 0
		for _, p := range pieces {
			if p.off != at {
				t.Fatalf("piece at %d, expected %d", p.off, at)
			}
			if p.header {
				at += segmentHeaderBytes
			} else {
				if p.h.CommitLogOffset != pos+int64(at) {
					t.Fatalf("record names %d, stored at %d", p.h.CommitLogOffset, pos+int64(at))
				}
				at += int(p.h.TotalSize) + frameTrailerBytes
			}
		}
		if at != len(b) {
			t.Fatalf("pieces cover %d of %d bytes", at, len(b))
		}
	})
}
