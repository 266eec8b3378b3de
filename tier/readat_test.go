package tier

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stratamq/strata/broker/message"
)

func TestReadAtCommitLogPosition(t *testing.T) {
	tr := openTier(t, Config{Bucket: fsBucket(t), Pointers: NewMemoryPointers(), BlockBytes: 4 << 10})
	g := newLogGen()
	var all [][]byte
	for range 3 {
		s := g.segment(t, 400, queueKeys(2, 3), 100)
		all = append(all, s.recs...)
		tr.Submit(s)
	}
	if err := tr.WaitOffloaded(waitCtx(t), g.pos); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(all); i += 37 {
		h, _ := message.ParseRecordHeader(all[i])
		got, err := tr.ReadAt(waitCtx(t), h.CommitLogOffset)
		if err != nil {
			t.Fatalf("record %d at %d: %v", i, h.CommitLogOffset, err)
		}
		if !bytes.Equal(got, all[i]) {
			t.Fatalf("record %d at %d: read a different record", i, h.CommitLogOffset)
		}
	}
	h, _ := message.ParseRecordHeader(all[10])
	for _, pos := range []int64{h.CommitLogOffset + 1, g.pos, g.pos + 1000, 3} {
		if _, err := tr.ReadAt(waitCtx(t), pos); !errors.Is(err, ErrNotInTier) {
			t.Fatalf("position %d: got %v, want ErrNotInTier", pos, err)
		}
	}
}
