package store

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// AppendAsync answers every queued append exactly once, with the offsets AppendVia would
// have given, and the records are readable once answered.
func TestAppendAsyncAnswersEachAppendOnce(t *testing.T) {
	s := openStore(t, Config{FlushMode: FlushSync})
	const n = 500
	var ref QueueRef
	var mu sync.Mutex
	calls := make(map[int][]AppendResult)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		rec := encode(t, "orders", 0, body(i), nil)
		err := s.AppendAsync(&ref, [][]byte{rec}, func(res []AppendResult, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if _, twice := calls[i]; twice {
				t.Errorf("append %d answered twice", i)
			}
			calls[i] = res
		})
		if err != nil {
			t.Fatalf("queue append %d: %v", i, err)
		}
	}
	wg.Wait()
	// Appends queued one after another get consecutive queue offsets in that order.
	for i := range n {
		if res := calls[i]; len(res) != 1 || res[0].QueueOffset != int64(i) {
			t.Fatalf("append %d answered with %v, want queue offset %d", i, res, i)
		}
	}
	got := readAll(t, s, "orders", 0)
	if len(got) != n || string(got[n-1].Body) != body(n-1) {
		t.Fatalf("read %d messages after the answers, want %d", len(got), n)
	}
}

// A refused append returns its error and never calls back; a closed store refuses.
func TestAppendAsyncRefusals(t *testing.T) {
	s := openStore(t, Config{MaxMessageBytes: 1024})
	never := func([]AppendResult, error) { t.Error("a refused append called back") }
	big := encode(t, "orders", 0, string(make([]byte, 2048)), nil)
	if err := s.AppendAsync(nil, [][]byte{big}, never); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("oversized record: %v, want ErrMessageTooLarge", err)
	}
	if err := s.AppendAsync(nil, [][]byte{[]byte("not a record")}, never); err == nil {
		t.Fatal("malformed record accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAsync(nil, [][]byte{encode(t, "orders", 0, body(1), nil)}, never); !errors.Is(err, ErrClosed) {
		t.Fatalf("append to a closed store: %v, want ErrClosed", err)
	}
	if _, err := s.AppendVia(context.Background(), nil, encode(t, "orders", 0, body(1), nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("AppendVia on a closed store: %v", err)
	}
}
