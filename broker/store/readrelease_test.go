package store

import (
	"bytes"
	"context"
	"testing"

	"github.com/stratamq/strata/broker/message"
)

// A released read's buffer serves a later read, which still returns its own records; a read
// never released keeps its records whatever is read after it.
func TestReadReleaseRecyclesBuffer(t *testing.T) {
	s := openStore(t, Config{})
	const n = 400
	for i := range n {
		mustAppend(t, s, encode(t, "rr", 0, body(i), nil))
	}
	read := func(off int64) ReadResult {
		t.Helper()
		r, err := s.Read(context.Background(), ReadRequest{Topic: "rr", QueueID: 0, Offset: off, MaxMessages: 10})
		if err != nil || r.Status != ReadFound || len(r.Entries) != 10 {
			t.Fatalf("read at %d: %v, status %v, %d entries", off, err, r.Status, len(r.Entries))
		}
		ms, err := message.DecodeAll(r.Records)
		if err != nil || len(ms) != 10 {
			t.Fatalf("read at %d: %d messages, %v", off, len(ms), err)
		}
		for i, m := range ms {
			if string(m.Body) != body(int(off)+i) {
				t.Fatalf("read at %d: message %d is %q, want %q", off, i, m.Body, body(int(off)+i))
			}
		}
		return r
	}
	kept := read(0)
	want := bytes.Clone(kept.Records)
	reused := 0
	prev := read(10)
	for off := int64(20); off < n; off += 10 {
		prev.Release()
		prev.Release() // a second call does nothing
		next := read(off)
		if &next.Records[:1][0] == &prev.Records[:1][0] {
			reused++
		}
		prev = next
	}
	if reused == 0 {
		t.Fatalf("no read reused a released buffer in %d reads", n/10-2)
	}
	if !bytes.Equal(kept.Records, want) {
		t.Fatal("a read that was never released changed under later reads")
	}
}
