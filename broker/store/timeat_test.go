package store

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// StoreTimeAt answers from full pages on disk and from the unfinished page, and nothing
// outside the local offsets.
func TestStoreTimeAtAcrossPages(t *testing.T) {
	cfg, all := manyPerQueue(t, Config{Dir: t.TempDir()}, 200)
	s := openStore(t, cfg)
	var q []acked
	for _, a := range all {
		if a.topic == "b" && a.queue == 2 {
			q = append(q, a)
		}
	}
	for _, k := range []int{0, 144, 145, 199} {
		if ts, ok := s.StoreTimeAt("b", 2, int64(k)); !ok || ts != q[k].res.StoreTimestamp {
			t.Fatalf("StoreTimeAt(b/2, %d) = %d, %v; want %d", k, ts, ok, q[k].res.StoreTimestamp)
		}
	}
	for _, off := range []int64{-1, 200} {
		if _, ok := s.StoreTimeAt("b", 2, off); ok {
			t.Fatalf("StoreTimeAt(b/2, %d) answered", off)
		}
	}
	if _, ok := s.StoreTimeAt("nope", 0, 0); ok {
		t.Fatal("StoreTimeAt of an unknown queue answered")
	}
	if ts, ok := s.FirstStoreTimeFrom(s.MinCommitLogOffset()); !ok || ts != all[0].res.StoreTimestamp {
		t.Fatalf("FirstStoreTimeFrom(min) = %d, %v", ts, ok)
	}
	if _, ok := s.FirstStoreTimeFrom(s.MaxCommitLogOffset()); ok {
		t.Fatal("FirstStoreTimeFrom(log end) answered")
	}
	if got := NextRecordPos(all[0].res.CommitLogOffset, all[0].res.Size); got != all[1].res.CommitLogOffset {
		t.Fatalf("NextRecordPos = %d, next record at %d", got, all[1].res.CommitLogOffset)
	}
}

// OpenContext gives up on a cancelled context, and a later Open recovers everything; OnFsync
// sees the group commits.
func TestOpenContextAndOnFsync(t *testing.T) {
	dir := t.TempDir()
	cfg, want := fillStore(t, dir, 40, false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s, err := OpenContext(ctx, cfg); !errors.Is(err, context.Canceled) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenContext with a cancelled context = %v, want context.Canceled", err)
	}
	var fsyncs atomic.Int64
	cfg.OnFsync = func(d time.Duration, err error) {
		if err == nil && d >= 0 {
			fsyncs.Add(1)
		}
	}
	s := openStore(t, cfg)
	verifyExactly(t, s, want)
	before := fsyncs.Load()
	for i := 0; i < 3; i++ {
		mustAppend(t, s, encode(t, "a", 0, body(i), nil))
	}
	if got := fsyncs.Load() - before; got < 3 {
		t.Fatalf("%d fsyncs observed for 3 sequential sync appends, want at least 3", got)
	}
}
