package store

import (
	"context"
	"strings"
	"testing"
)

func TestBaseOffsetStartsAnEmptyCommitLog(t *testing.T) {
	s := openStore(t, Config{BaseOffset: 1 << 20})
	res := mustAppend(t, s, encode(t, "T", 0, "a", nil))
	if res[0].CommitLogOffset < 1<<20 || s.MinCommitLogOffset() != 1<<20 {
		t.Fatalf("first record at %d, min %d; want at or after %d", res[0].CommitLogOffset, s.MinCommitLogOffset(), 1<<20)
	}
	got, err := s.ReadAt(res[0].CommitLogOffset, 0)
	if err != nil || !strings.Contains(string(got), "a") {
		t.Fatalf("read back: %v", err)
	}
}

func TestBaseOffsetIgnoredWhenTheLogHasSegments(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	mustAppend(t, s, encode(t, "T", 0, "a", nil))
	s.Close()
	s2 := openStore(t, Config{Dir: dir, BaseOffset: 1 << 30})
	if s2.MinCommitLogOffset() != 0 {
		t.Fatalf("min commit-log offset %d after reopening with BaseOffset; want 0", s2.MinCommitLogOffset())
	}
}

func TestEnsureQueueOffsetContinuesAnEmptyQueue(t *testing.T) {
	s := openStore(t, Config{})
	ctx := context.Background()
	if err := s.EnsureQueueOffset(ctx, "T", 1, 500); err != nil {
		t.Fatal(err)
	}
	if lo, hi := s.MinOffset("T", 1), s.MaxOffset("T", 1); lo != 500 || hi != 500 {
		t.Fatalf("min/max = %d/%d, want 500/500", lo, hi)
	}
	r, err := s.Read(ctx, ReadRequest{Topic: "T", QueueID: 1, Offset: 0})
	if err != nil || r.Status != ReadOffsetTooSmall || r.NextOffset != 500 {
		t.Fatalf("read below base: %+v, %v", r, err)
	}
	res := mustAppend(t, s, encode(t, "T", 1, "x", nil), encode(t, "T", 1, "y", nil))
	if res[0].QueueOffset != 500 || res[1].QueueOffset != 501 {
		t.Fatalf("queue offsets %d, %d; want 500, 501", res[0].QueueOffset, res[1].QueueOffset)
	}
	// Lower or equal requests are no-ops; a higher one over local entries is refused.
	if err := s.EnsureQueueOffset(ctx, "T", 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureQueueOffset(ctx, "T", 1, 900); err == nil || !strings.Contains(err.Error(), "disagree") {
		t.Fatalf("raise over local entries: %v", err)
	}
	if got := readAll(t, s, "T", 1); len(got) != 2 || got[0].QueueOffset != 500 || string(got[1].Body) != "y" {
		t.Fatalf("read back %d messages", len(got))
	}
}

// A raised base is written to the page map, so a reopen keeps it even before the broker
// calls EnsureQueueOffset again.
func TestEnsureQueueOffsetSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	if err := s.EnsureQueueOffset(context.Background(), "T", 2, 700); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, Config{Dir: dir})
	if lo, hi := s2.MinOffset("T", 2), s2.MaxOffset("T", 2); lo != 700 || hi != 700 {
		t.Fatalf("after reopen min/max = %d/%d, want 700/700", lo, hi)
	}
	if r := mustAppend(t, s2, encode(t, "T", 2, "x", nil)); r[0].QueueOffset != 700 {
		t.Fatalf("append after reopen got offset %d, want 700", r[0].QueueOffset)
	}
}
