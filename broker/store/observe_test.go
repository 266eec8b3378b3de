package store

import (
	"sync"
	"testing"
	"time"
)

func TestOnFsyncSeesEveryGroupCommit(t *testing.T) {
	var mu sync.Mutex
	var calls []time.Duration
	s := openStore(t, Config{FlushMode: FlushSync, OnFsync: func(d time.Duration, err error) {
		if err != nil {
			t.Errorf("fsync failed: %v", err)
		}
		mu.Lock()
		calls = append(calls, d)
		mu.Unlock()
	}})
	mu.Lock()
	before := len(calls) // the new segment's header is synced at Open
	mu.Unlock()
	for i := 0; i < 3; i++ {
		mustAppend(t, s, encode(t, "T", 0, body(i), nil))
	}
	mu.Lock()
	defer mu.Unlock()
	// Under FlushSync each acknowledged append was covered by an fsync that had returned.
	if got := len(calls) - before; got < 3 {
		t.Fatalf("%d fsyncs observed for 3 sequential sync appends, want at least 3", got)
	}
	for _, d := range calls {
		if d < 0 {
			t.Fatalf("negative fsync duration %v", d)
		}
	}
}

func TestStoreTimeAt(t *testing.T) {
	s := openStore(t, Config{})
	res := mustAppend(t, s, encode(t, "T", 1, "a", nil), encode(t, "T", 1, "b", nil))
	res = append(res, mustAppend(t, s, encode(t, "T", 1, "c", nil))...)
	for _, r := range res {
		ts, ok := s.StoreTimeAt("T", 1, r.QueueOffset)
		if !ok || ts != r.StoreTimestamp {
			t.Errorf("StoreTimeAt(T/1, %d) = %d, %v; want %d, true", r.QueueOffset, ts, ok, r.StoreTimestamp)
		}
	}
	for _, c := range []struct {
		topic string
		q     int32
		off   int64
	}{{"T", 1, 3}, {"T", 1, -1}, {"T", 0, 0}, {"other", 1, 0}} {
		if ts, ok := s.StoreTimeAt(c.topic, c.q, c.off); ok {
			t.Errorf("StoreTimeAt(%s/%d, %d) = %d, true; want not held", c.topic, c.q, c.off, ts)
		}
	}
}

func TestFirstStoreTimeFrom(t *testing.T) {
	s := openStore(t, Config{SegmentBytes: 4096, MaxMessageBytes: 1024})
	if _, ok := s.FirstStoreTimeFrom(s.MinCommitLogOffset()); ok {
		t.Fatal("an empty store answered a first store time")
	}
	pad := string(make([]byte, 700))
	for i := 0; i < 12; i++ {
		mustAppend(t, s, encode(t, "T", 0, pad, nil))
	}
	sealed := s.SealedSegments()
	if len(sealed) < 2 {
		t.Fatalf("%d sealed segments, want several", len(sealed))
	}
	for _, g := range sealed {
		ts, ok := s.FirstStoreTimeFrom(g.BaseOffset)
		if !ok || ts != g.FirstStoreTime {
			t.Errorf("FirstStoreTimeFrom(%d) = %d, %v; want the segment's first store time %d", g.BaseOffset, ts, ok, g.FirstStoreTime)
		}
	}
	last := sealed[len(sealed)-1]
	first, ok := s.StoreTimeAt("T", 0, s.MaxOffset("T", 0)-1)
	if ts, ok2 := s.FirstStoreTimeFrom(last.EndOffset); !ok || !ok2 || ts > first {
		t.Errorf("FirstStoreTimeFrom(end of the last sealed segment) = %d, %v; want at most the newest record's %d", ts, ok2, first)
	}
	if ts, ok := s.FirstStoreTimeFrom(s.MaxCommitLogOffset()); ok {
		t.Errorf("FirstStoreTimeFrom(log end) = %d, true; want nothing at or after the end", ts)
	}
}
