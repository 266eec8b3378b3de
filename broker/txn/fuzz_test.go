package txn

import (
	"bytes"
	"testing"
)

func FuzzDecodeOpBody(f *testing.F) {
	f.Add(encodeOpBody([]opEntry{{kind: opCommit, halfPos: 16}}))
	f.Add(encodeOpBody([]opEntry{{kind: opCheck, halfPos: 1}, {kind: opRollback, halfPos: 1 << 40}}))
	f.Add(encodeOpBody([]opEntry{{kind: opCheck, halfPos: 1}, {kind: opDiscard, halfPos: 2}})) // refused: discard not alone
	f.Add(encodeOpBody([]opEntry{{kind: opVoid, halfPos: 16}, {kind: opVoid, halfPos: 99}}))
	f.Add([]byte{opVersion})
	f.Add([]byte{2, 1, 0, 0, 0, 0, 0, 0, 0, 16})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := decodeOpBody(b)
		if err != nil {
			return
		}
		if len(entries) == 0 {
			t.Fatal("decoded no entries without an error")
		}
		for _, e := range entries {
			if e.kind < opCommit || e.kind > opVoid || e.halfPos < 0 || e.kind.hasCompanion() && len(entries) > 1 {
				t.Fatalf("decoded an entry the format forbids: %+v of %d", e, len(entries))
			}
		}
		if again := encodeOpBody(entries); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding gives %x, decoded from %x", again, b)
		}
	})
}

func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add(encodeCheckpoint(checkpoint{halfLow: 5, opFrom: 7}))
	f.Add(encodeCheckpoint(checkpoint{}))
	f.Add([]byte{checkpointVersion, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCheckpoint(b)
		if err != nil {
			return
		}
		if c.halfLow < 0 || c.opFrom < 0 {
			t.Fatalf("negative offsets decoded: %+v", c)
		}
		if again := encodeCheckpoint(c); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding gives %x, decoded from %x", again, b)
		}
	})
}
