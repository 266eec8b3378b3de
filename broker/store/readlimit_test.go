package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A read limit hides the records that end past it from queue reads: the queue reads as
// ending before the first of them, also when the hidden tail spans consume-queue pages.
func TestReadLimit(t *testing.T) {
	s := openStore(t, replCfg(t.TempDir()))
	const n = 400 // more than two pages (cqPageEntries) of queue 0
	var recs []AppendResult
	for i := 0; i < n; i += 50 {
		var batch [][]byte
		for j := i; j < i+50; j++ {
			batch = append(batch, encode(t, "t", 0, body(j), nil))
		}
		recs = append(recs, mustAppend(t, s, batch...)...)
	}
	mustAppend(t, s, encode(t, "other", 0, "elsewhere", nil)) // the log goes on past queue 0
	end := func(i int) int64 { return NextRecordPos(recs[i].CommitLogOffset, recs[i].Size) }
	ctx := context.Background()
	read := func(off int64) ReadResult {
		t.Helper()
		r, err := s.Read(ctx, ReadRequest{Topic: "t", QueueID: 0, Offset: off, MaxMessages: 1000, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, c := range []struct {
		name    string
		limit   int64
		visible int64
	}{
		{"nothing confirmed", 0, 0},
		{"inside the first record", end(0) - 1, 0},
		{"one record", end(0), 1},
		{"between records", end(9) + 1, 10},
		{"a page", end(cqPageEntries - 1), cqPageEntries},
		{"a page and one", end(cqPageEntries), cqPageEntries + 1},
		{"all but one", end(n - 2), n - 1},
		{"all of the queue", end(n - 1), n},
		{"unlimited", Unlimited, n},
	} {
		s.SetReadLimit(c.limit)
		if got := s.MaxOffset("t", 0); got != c.visible {
			t.Errorf("%s: max offset %d, want %d", c.name, got, c.visible)
		}
		if r := read(c.visible); (r.Status != ReadNoNewMessage && r.Status != ReadNoMessageInQueue) || r.MaxOffset != c.visible {
			t.Errorf("%s: read at the visible end: %v, max %d", c.name, r.Status, r.MaxOffset)
		}
		if c.visible > 0 {
			r := read(c.visible - 1)
			if r.Status != ReadFound || len(r.Entries) != 1 || r.NextOffset != c.visible || r.MaxOffset != c.visible {
				t.Errorf("%s: read of the last visible record: %v, %d entries, next %d, max %d", c.name, r.Status, len(r.Entries), r.NextOffset, r.MaxOffset)
			}
		}
		if c.visible < n {
			// A consumer ahead of the limit (it read from the last master) waits; its
			// offset is not out of range.
			r := read(c.visible + 1)
			if r.Status != ReadNoNewMessage || r.NextOffset != c.visible+1 || r.MaxOffset != c.visible {
				t.Errorf("%s: read past the visible end: %v, next %d, max %d", c.name, r.Status, r.NextOffset, r.MaxOffset)
			}
		}
	}
	if r := read(n + 1); r.Status != ReadOffsetOverflow {
		t.Errorf("read past the queue: %v", r.Status)
	}

	// WaitForAppend waits for the limit to pass a stored record.
	s.SetReadLimit(end(9))
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	max, err := s.WaitForAppend(short, "t", 0, 10)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || max != 10 {
		t.Fatalf("wait for a hidden record: %d, %v; want 10 and the deadline", max, err)
	}
	got := make(chan int64, 1)
	go func() {
		max, err := s.WaitForAppend(ctx, "t", 0, 10)
		if err != nil {
			t.Error(err)
		}
		got <- max
	}()
	s.SetReadLimit(end(20))
	if max := <-got; max != 21 {
		t.Fatalf("wait woke with max offset %d, want 21", max)
	}

	// Truncation lowers a limit above the cut; an unlimited store stays unlimited.
	setFollower(t, s, true)
	s.SetReadLimit(end(300))
	if err := s.TruncateTo(recs[200].CommitLogOffset); err != nil {
		t.Fatal(err)
	}
	if l := s.ReadLimit(); l != recs[200].CommitLogOffset {
		t.Fatalf("read limit %d after truncating to %d", l, recs[200].CommitLogOffset)
	}
	s.SetReadLimit(Unlimited)
	if err := s.TruncateTo(recs[100].CommitLogOffset); err != nil {
		t.Fatal(err)
	}
	if l := s.ReadLimit(); l != Unlimited {
		t.Fatalf("an unlimited store has read limit %d after a truncation", l)
	}
	if got := s.MaxOffset("t", 0); got != 100 {
		t.Fatalf("max offset %d after truncating to record 100", got)
	}
}

// TestReadLimitHidesKeyLookups: a lookup by key finds what the limit lets queue reads see,
// not the records past it.
func TestReadLimitHidesKeyLookups(t *testing.T) {
	s := openStore(t, replCfg(t.TempDir()))
	var recs []AppendResult
	for i := 0; i < 3; i++ {
		recs = append(recs, mustAppend(t, s, encode(t, "t", 0, body(i), map[string]string{"KEYS": "order-7"}))...)
	}
	found := func() int {
		t.Helper()
		hits, err := s.LookupKey("t", "order-7", 0, 1<<62, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(hits)
	}
	if n := found(); n != 3 {
		t.Fatalf("unlimited: %d hits, want 3", n)
	}
	s.SetReadLimit(NextRecordPos(recs[1].CommitLogOffset, recs[1].Size))
	if n := found(); n != 2 {
		t.Fatalf("limit after the second record: %d hits, want 2", n)
	}
	s.SetReadLimit(0)
	if n := found(); n != 0 {
		t.Fatalf("limit 0: %d hits, want none", n)
	}
}

// TestReadLimitKeptAcrossRestarts: a Replicated store keeps its last read limit for the next
// run (capped at its log's end), a lowered one even through a crash; a store that is not
// Replicated keeps none.
func TestReadLimitKeptAcrossRestarts(t *testing.T) {
	cfg := replCfg(t.TempDir())
	cfg.Replicated = true
	s := openStore(t, cfg)
	if got := s.KeptReadLimit(); got != 0 {
		t.Fatalf("a new store kept %d, want 0", got)
	}
	appendBatch(t, s, 0, 100)
	end := s.EndOffset()
	// Raised twice in quick succession: the throttle skips the second write; Close makes it.
	s.SetReadLimit(end / 2)
	s.SetReadLimit(end - 1)
	s.SetReadLimit(Unlimited) // a promotion is not kept
	s.SetReadLimit(end)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if got := s.KeptReadLimit(); got != end {
		t.Fatalf("after a clean restart kept %d, want %d", got, end)
	}
	// A lowered limit is written at once and durably: it survives a crash.
	s.SetReadLimit(end / 3)
	s.crash()
	s = openStore(t, cfg)
	if got := s.KeptReadLimit(); got != end/3 {
		t.Fatalf("after a crash kept %d, want the lowered %d", got, end/3)
	}
	// Capped at the log's end: a limit past a lost tail serves nothing that is not there.
	s.SetReadLimit(end + 1000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if got := s.KeptReadLimit(); got != end {
		t.Fatalf("a kept limit past the log's end %d: %d, want it capped", end, got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage reads as nothing kept.
	if err := os.WriteFile(filepath.Join(cfg.Dir, keptLimitFile), []byte("SRLM\x01garbage........"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if got := s.KeptReadLimit(); got != 0 {
		t.Fatalf("a damaged file kept %d, want 0", got)
	}

	plain := openStore(t, replCfg(t.TempDir()))
	appendBatch(t, plain, 0, 10)
	plain.SetReadLimit(plain.EndOffset())
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(plain.cfg.Dir, keptLimitFile)); !os.IsNotExist(err) {
		t.Fatalf("a store that is not Replicated wrote %s: %v", keptLimitFile, err)
	}
}
