package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stratamq/strata/broker/store/pagecachetest"
)

func TestNoWaitReadServesCachedRecordsAndRefusesEvictedOnes(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, FlushMode: FlushSync})
	var recs [][]byte
	for i := 0; i < 100; i++ {
		recs = append(recs, encode(t, "nowait", 0, body(i)+strings.Repeat("x", 1000), nil))
	}
	mustAppend(t, s, recs...)
	read := func(noWait bool) (ReadResult, error) {
		return s.Read(context.Background(), ReadRequest{Topic: "nowait", Offset: 10, MaxMessages: 32, NoWait: noWait})
	}
	want, err := read(false)
	if err != nil || want.Status != ReadFound || len(want.Entries) != 32 {
		t.Fatalf("blocking read: %d entries, status %v, err %v", len(want.Entries), want.Status, err)
	}
	same := func(label string, got ReadResult) {
		t.Helper()
		if got.Status != ReadFound || got.NextOffset != want.NextOffset || !bytes.Equal(got.Records, want.Records) {
			t.Fatalf("%s: status %v, next %d, %d bytes; the blocking read gave next %d, %d bytes",
				label, got.Status, got.NextOffset, len(got.Records), want.NextOffset, len(want.Records))
		}
	}
	got, err := read(true)
	if err != nil {
		t.Fatalf("no-wait read of records just written: %v", err)
	}
	same("no-wait read of records just written", got)

	pagecachetest.Drop(t, dir)
	if _, err := read(true); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("no-wait read of evicted records: err %v, want ErrWouldBlock", err)
	}
	got, err = read(false)
	if err != nil {
		t.Fatalf("blocking read after eviction: %v", err)
	}
	same("blocking read after eviction", got)
	if got, err = read(true); err != nil {
		t.Fatalf("no-wait read once the blocking read cached the records again: %v", err)
	}
	same("no-wait read after the blocking read", got)
}
