package store

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
)

func TestAppendAndRead(t *testing.T) {
	s := openStore(t, Config{FlushMode: FlushSync})
	var recs [][]byte
	for i := 0; i < 10; i++ {
		tag := "TagA"
		if i%2 == 1 {
			tag = "TagB"
		}
		recs = append(recs, encode(t, "orders", int32(i%2), body(i), map[string]string{"TAGS": tag}))
	}
	res := mustAppend(t, s, recs...)
	for i, r := range res {
		if want := int64(i / 2); r.QueueOffset != want {
			t.Errorf("record %d: queue offset %d, want %d", i, r.QueueOffset, want)
		}
		rec, err := s.ReadAt(r.CommitLogOffset, 0)
		if err != nil {
			t.Fatalf("ReadAt(%d): %v", r.CommitLogOffset, err)
		}
		m, _, err := message.Decode(rec)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Body) != body(i) || m.CommitLogOffset != r.CommitLogOffset || m.StoreTimestamp != r.StoreTimestamp || m.QueueOffset != r.QueueOffset {
			t.Errorf("ReadAt record %d = %+v, append result %+v", i, m, r)
		}
	}
	got := readAll(t, s, "orders", 0)
	if len(got) != 5 {
		t.Fatalf("queue 0 has %d messages, want 5", len(got))
	}
	for k, m := range got {
		if string(m.Body) != body(2*k) || m.QueueOffset != int64(k) {
			t.Errorf("queue 0 message %d: body %q offset %d", k, m.Body, m.QueueOffset)
		}
	}
	if mn, mx := s.MinOffset("orders", 1), s.MaxOffset("orders", 1); mn != 0 || mx != 5 {
		t.Errorf("min/max = %d/%d, want 0/5", mn, mx)
	}
	if q := s.Queues(); len(q) != 2 || q[0] != (QueueID{"orders", 0}) {
		t.Errorf("Queues() = %v", q)
	}
}

func TestReadStatuses(t *testing.T) {
	s := openStore(t, Config{})
	for i := 0; i < 6; i++ {
		tag := "A"
		if i >= 3 {
			tag = "B"
		}
		mustAppend(t, s, encode(t, "t", 0, body(i), map[string]string{"TAGS": tag}))
	}
	codeB := message.TagHashCode("B")
	cases := []struct {
		name   string
		req    ReadRequest
		status ReadStatus
		next   int64
		n      int
	}{
		{"unknown queue", ReadRequest{Topic: "nope"}, ReadNoMessageInQueue, 0, 0},
		{"caught up", ReadRequest{Topic: "t", Offset: 6}, ReadNoNewMessage, 6, 0},
		{"overflow", ReadRequest{Topic: "t", Offset: 9}, ReadOffsetOverflow, 6, 0},
		{"all", ReadRequest{Topic: "t"}, ReadFound, 6, 6},
		{"count", ReadRequest{Topic: "t", Offset: 1, MaxMessages: 2}, ReadFound, 3, 2},
		{"bytes keep first", ReadRequest{Topic: "t", Offset: 2, MaxBytes: 1}, ReadFound, 3, 1},
		{"tag filter", ReadRequest{Topic: "t", TagCodes: []int64{codeB}}, ReadFound, 6, 3},
		{"no match", ReadRequest{Topic: "t", TagCodes: []int64{message.TagHashCode("C")}}, ReadNoMatch, 6, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := s.Read(context.Background(), c.req)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != c.status || r.NextOffset != c.next || len(r.Entries) != c.n {
				t.Fatalf("status %v next %d n %d; want %v %d %d", r.Status, r.NextOffset, len(r.Entries), c.status, c.next, c.n)
			}
			ms, err := message.DecodeAll(r.Records)
			if err != nil || len(ms) != c.n {
				t.Fatalf("records decode to %d messages (%v), want %d", len(ms), err, c.n)
			}
			for i, m := range ms {
				if m.QueueOffset != r.Entries[i].QueueOffset {
					t.Errorf("record %d offset %d, entry says %d", i, m.QueueOffset, r.Entries[i].QueueOffset)
				}
			}
		})
	}
}

func TestOffsetForTime(t *testing.T) {
	s := openStore(t, Config{})
	var times []int64
	for i := 0; i < 5; i++ {
		r := mustAppend(t, s, encode(t, "t", 0, body(i), nil))
		times = append(times, r[0].StoreTimestamp)
		time.Sleep(3 * time.Millisecond) // distinct store timestamps; not synchronisation
	}
	if ts, _ := s.EarliestStoreTime("t", 0); ts != times[0] {
		t.Errorf("EarliestStoreTime = %d, want %d", ts, times[0])
	}
	if ts, _ := s.EarliestStoreTime("t", 7); ts != -1 {
		t.Errorf("EarliestStoreTime(unknown) = %d, want -1", ts)
	}
	for i, ts := range times {
		off, err := s.OffsetForTime("t", 0, ts)
		if err != nil || times[off] != ts || (off > 0 && times[off-1] >= ts) {
			t.Errorf("OffsetForTime(%d) = %d, want first offset at or after (%d)", ts, off, i)
		}
	}
	if off, _ := s.OffsetForTime("t", 0, times[4]+1000); off != 5 {
		t.Errorf("after all: %d, want max 5", off)
	}
	if off, _ := s.OffsetForTime("t", 0, 0); off != 0 {
		t.Errorf("before all: %d, want min 0", off)
	}
}

func TestLookupKeySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, SegmentBytes: 4096, MaxMessageBytes: 1024})
	var pos []int64
	for i := 0; i < 40; i++ {
		props := map[string]string{"KEYS": "order-" + body(i%4) + " all", "UNIQ_KEY": "U" + body(i)}
		pos = append(pos, mustAppend(t, s, encode(t, "k", 0, body(i), props))[0].CommitLogOffset)
	}
	check := func(s *Store) {
		t.Helper()
		hits, err := s.LookupKey("k", "order-"+body(1), 0, 1<<62, 100)
		if err != nil || len(hits) != 10 {
			t.Fatalf("key hits = %d (%v), want 10", len(hits), err)
		}
		for j, h := range hits {
			if h.QueueOffset != int64(1+4*j) {
				t.Errorf("hit %d offset %d", j, h.QueueOffset)
			}
		}
		hits, _ = s.LookupKey("k", "U"+body(7), 0, 1<<62, 10)
		if len(hits) != 1 || hits[0].CommitLogOffset != pos[7] {
			t.Fatalf("uniq key hit = %+v", hits)
		}
		if hits, _ := s.LookupKey("k", "all", 0, 1<<62, 5); len(hits) != 5 || hits[4].QueueOffset != 39 {
			t.Fatalf("max keeps newest: %d hits", len(hits))
		}
		if hits, _ := s.LookupKey("other", "all", 0, 1<<62, 5); len(hits) != 0 {
			t.Fatalf("other topic: %d hits", len(hits))
		}
		if hits, _ := s.LookupKey("k", "all", 0, 1, 5); len(hits) != 0 {
			t.Fatalf("outside time range: %d hits", len(hits))
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if len(s.SealedSegments()) < 1 {
		t.Fatalf("expected several segments, got %d sealed", len(s.SealedSegments()))
	}
	s2 := openStore(t, Config{Dir: dir, SegmentBytes: 4096, MaxMessageBytes: 1024})
	check(s2)
	if got := readAll(t, s2, "k", 0); len(got) != 40 {
		t.Fatalf("after restart %d messages", len(got))
	}
	r := mustAppend(t, s2, encode(t, "k", 0, "after", nil))
	if r[0].QueueOffset != 40 {
		t.Fatalf("offset after restart %d, want 40", r[0].QueueOffset)
	}
}

func TestConcurrentSyncAppenders(t *testing.T) {
	s := openStore(t, Config{FlushMode: FlushSync, SegmentBytes: 64 << 10, MaxMessageBytes: 1024})
	const workers, each = 8, 60
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rec := encode(t, "c", int32(w%2), body(w*1000+i), nil)
				if _, err := s.Append(context.Background(), rec); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for q := int32(0); q < 2; q++ {
		ms := readAll(t, s, "c", q)
		if len(ms) != workers/2*each {
			t.Fatalf("queue %d: %d messages", q, len(ms))
		}
		for i, m := range ms {
			if m.QueueOffset != int64(i) {
				t.Fatalf("queue %d message %d has offset %d", q, i, m.QueueOffset)
			}
			seen[string(m.Body)] = true
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct bodies, want %d", len(seen), workers*each)
	}
}

func TestLimits(t *testing.T) {
	s := openStore(t, Config{MaxMessageBytes: 200, SegmentBytes: 1024})
	_, err := s.Append(context.Background(), encode(t, "t", 0, string(make([]byte, 300)), nil))
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("big message: %v", err)
	}
	var batch [][]byte
	for i := 0; i < 10; i++ {
		batch = append(batch, encode(t, "t", 0, body(i), nil))
	}
	if _, err := s.Append(context.Background(), batch...); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("batch larger than a segment: %v", err)
	}
	if _, err := s.Append(context.Background(), []byte("garbage that is not a record")); !errors.Is(err, message.ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
	if err := (&Config{Dir: "x", SegmentBytes: 100}).Validate(); err == nil {
		t.Fatal("tiny segment accepted")
	}
	if err := (&Config{}).Validate(); err == nil {
		t.Fatal("empty dir accepted")
	}
}

func TestWriteErrorKeepsStoreReadable(t *testing.T) {
	s := openStore(t, Config{FlushMode: FlushSync})
	mustAppend(t, s, encode(t, "t", 0, body(0), nil))
	mustAppend(t, s, encode(t, "t", 0, body(1), nil))
	real := s.writeAt
	var mu sync.Mutex
	failing := true
	s.writeAt = func(f *os.File, b []byte, off int64) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			n, _ := real(f, b[:len(b)/2], off) // a partial write, as a full disk gives
			return n, errors.New("no space left on device")
		}
		return real(f, b, off)
	}
	_, err := s.Append(context.Background(), encode(t, "t", 0, body(2), nil))
	if !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("append on full disk: %v", err)
	}
	if got := readAll(t, s, "t", 0); len(got) != 2 || s.MaxOffset("t", 0) != 2 {
		t.Fatalf("after failure: %d messages, max %d", len(got), s.MaxOffset("t", 0))
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	r := mustAppend(t, s, encode(t, "t", 0, body(3), nil))
	if r[0].QueueOffset != 2 {
		t.Fatalf("offset after recovery from write error %d, want 2", r[0].QueueOffset)
	}
	got := readAll(t, s, "t", 0)
	if len(got) != 3 || string(got[2].Body) != body(3) {
		t.Fatalf("messages after failure: %d", len(got))
	}
}

func TestFsyncErrorIsSticky(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, FlushMode: FlushSync})
	mustAppend(t, s, encode(t, "t", 0, body(0), nil))
	s.syncFile = func(*os.File) error { return errors.New("EIO") }
	if _, err := s.Append(context.Background(), encode(t, "t", 0, body(1), nil)); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("append with failing fsync: %v", err)
	}
	if _, err := s.Append(context.Background(), encode(t, "t", 0, body(2), nil)); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("append after fsync failure: %v", err)
	}
	if got := readAll(t, s, "t", 0); len(got) != 1 {
		t.Fatalf("%d messages visible, want the 1 acknowledged", len(got))
	}
}

// Records larger than the iterator's read buffer come back whole, between small ones.
func TestSegmentIteratorLargeRecords(t *testing.T) {
	s := openStore(t, Config{SegmentBytes: 8 << 20, MaxMessageBytes: 3 << 20})
	sealed := make(chan SealedSegment, 10)
	s.OnSeal(func(g SealedSegment) { sealed <- g })
	sizes := []int{10, 1<<20 + 5000, 10, 5 << 19, 10, 1<<20 - 300}
	var want []string
	for i, n := range sizes {
		b := strings.Repeat(string(rune('a'+i)), n)
		want = append(want, b)
		mustAppend(t, s, encode(t, "big", 0, b, nil))
	}
	for len(sealed) == 0 {
		want = append(want, body(len(want)))
		mustAppend(t, s, encode(t, "big", 0, want[len(want)-1], nil))
	}
	it, err := s.OpenSegment((<-sealed).BaseOffset)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ; ; n++ {
		_, rec, err := it.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		m, _, err := message.Decode(rec)
		if err != nil || string(m.Body) != want[n] {
			t.Fatalf("record %d: %v, body of %d bytes, want %d", n, err, len(m.Body), len(want[n]))
		}
	}
	if n < len(sizes) {
		t.Fatalf("iterated %d records, want at least the %d large and small ones", n, len(sizes))
	}
}

func TestSealRetentionAndIterator(t *testing.T) {
	s := openStore(t, Config{SegmentBytes: 2048, MaxMessageBytes: 1024})
	sealed := make(chan SealedSegment, 100)
	s.OnSeal(func(g SealedSegment) { sealed <- g })
	var res []AppendResult
	for i := 0; i < 60; i++ {
		res = append(res, mustAppend(t, s, encode(t, "r", 0, body(i), nil))...)
	}
	first := <-sealed
	if first.BaseOffset != 0 || first.FirstStoreTime == 0 || first.LastStoreTime < first.FirstStoreTime {
		t.Fatalf("first sealed segment %+v", first)
	}
	it, err := s.OpenSegment(first.BaseOffset)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		pos, rec, err := it.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("iterate: %v", err)
			}
			break
		}
		m, _, err := message.Decode(rec)
		if err != nil || pos != res[n].CommitLogOffset || string(m.Body) != body(n) {
			t.Fatalf("record %d at %d: %v %q", n, pos, err, m.Body)
		}
		n++
	}
	it.Close()
	if n == 0 || res[n].CommitLogOffset != first.EndOffset+segmentHeaderBytes {
		t.Fatalf("iterated %d records; next record at %d, segment end %d", n, res[n].CommitLogOffset, first.EndOffset)
	}
	// Retention: allow everything below the second sealed segment's end.
	second := <-sealed
	allowed := make(chan struct{})
	var once sync.Once
	s.SetRetention(func(g SealedSegment) bool {
		ok := g.EndOffset <= second.EndOffset
		if !ok {
			once.Do(func() { close(allowed) })
		}
		return ok
	})
	select {
	case <-allowed:
	case <-time.After(20 * time.Second):
		t.Fatal("retention never asked about the third segment")
	}
	if got := s.MinCommitLogOffset(); got != second.EndOffset {
		t.Fatalf("min commit-log offset %d, want %d", got, second.EndOffset)
	}
	minOff := s.MinOffset("r", 0)
	if minOff == 0 || res[minOff].CommitLogOffset != second.EndOffset+segmentHeaderBytes {
		t.Fatalf("min offset %d does not start at the first kept segment", minOff)
	}
	r, _ := s.Read(context.Background(), ReadRequest{Topic: "r", Offset: 0})
	if r.Status != ReadOffsetTooSmall || r.NextOffset != minOff {
		t.Fatalf("read below min: %v next %d", r.Status, r.NextOffset)
	}
	if _, err := s.ReadAt(res[0].CommitLogOffset, 0); !errors.Is(err, ErrOffsetNotFound) {
		t.Fatalf("ReadAt deleted: %v", err)
	}
	if got := readAll(t, s, "r", 0); int64(len(got)) != 60-minOff {
		t.Fatalf("%d messages left, want %d", len(got), 60-minOff)
	}
	if _, err := os.Stat(first.Path); !os.IsNotExist(err) {
		t.Fatalf("deleted segment file still there: %v", err)
	}
}

func TestSealAfter(t *testing.T) {
	s := openStore(t, Config{SealAfter: 50 * time.Millisecond})
	sealed := make(chan SealedSegment, 10)
	s.OnSeal(func(g SealedSegment) { sealed <- g })
	r := mustAppend(t, s, encode(t, "slow", 0, body(0), nil))
	select {
	case g := <-sealed:
		if g.BaseOffset != 0 || g.EndOffset != r[0].CommitLogOffset+int64(r[0].Size)+frameTrailerBytes {
			t.Fatalf("sealed %+v after record %+v", g, r[0])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("segment not sealed by age")
	}
	r2 := mustAppend(t, s, encode(t, "slow", 0, body(1), nil))
	if r2[0].QueueOffset != 1 {
		t.Fatalf("offset %d", r2[0].QueueOffset)
	}
	if got := readAll(t, s, "slow", 0); len(got) != 2 {
		t.Fatalf("%d messages across the sealed boundary", len(got))
	}
}

// TestReplicatedStoreSealsByAgeOnlyWhileLeading reopens a replicated member's store whose
// active segment is past SealAfter: it must not roll on its own (that would shift its log off
// the master's positions) until it leads, nor once it follows again.
func TestReplicatedStoreSealsByAgeOnlyWhileLeading(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SealAfter: time.Hour, Replicated: true}
	s := openStore(t, cfg)
	mustAppend(t, s, encode(t, "r", 0, body(0), nil))
	act := s.activeSegment()
	act.firstTime.Store(nowMillis() - time.Hour.Milliseconds() - 1) // as if written an hour ago
	if s.ageRollDue(act) {
		t.Fatal("a replicated store that has not led yet would seal by age")
	}
	ctx := context.Background()
	if err := s.SetFollower(ctx, true); err != nil {
		t.Fatal(err)
	}
	if s.ageRollDue(act) {
		t.Fatal("a follower would seal by age")
	}
	if err := s.SetFollower(ctx, false); err != nil {
		t.Fatal(err)
	}
	if !s.ageRollDue(act) {
		t.Fatal("a leading replicated store does not seal an old segment by age")
	}
	plain := openStore(t, Config{SealAfter: time.Hour})
	mustAppend(t, plain, encode(t, "r", 0, body(0), nil))
	pa := plain.activeSegment()
	pa.firstTime.Store(nowMillis() - time.Hour.Milliseconds() - 1)
	if !plain.ageRollDue(pa) {
		t.Fatal("a store that is not replicated does not seal an old segment by age")
	}
}

func TestWaitForAppend(t *testing.T) {
	s := openStore(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan int64, 1)
	go func() {
		max, err := s.WaitForAppend(ctx, "lp", 3, 0)
		if err != nil {
			t.Error(err)
		}
		got <- max
	}()
	// Other queues' appends must not satisfy the waiter.
	mustAppend(t, s, encode(t, "lp", 2, body(0), nil))
	mustAppend(t, s, encode(t, "lp", 3, body(0), nil))
	if max := <-got; max != 1 {
		t.Fatalf("woke with max %d", max)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if max, err := s.WaitForAppend(short, "lp", 3, 1); !errors.Is(err, context.DeadlineExceeded) || max != 1 {
		t.Fatalf("timeout wait: %d %v", max, err)
	}
	if max, err := s.WaitForAppend(ctx, "lp", 3, 0); err != nil || max != 1 {
		t.Fatalf("already past: %d %v", max, err)
	}
}

func TestDeleteTopic(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	for i := 0; i < 3; i++ {
		mustAppend(t, s, encode(t, "gone", 0, body(i), map[string]string{"KEYS": "k"}), encode(t, "kept", 0, body(i), nil))
	}
	if err := s.DeleteTopic(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		if r, _ := s.Read(context.Background(), ReadRequest{Topic: "gone"}); r.Status != ReadNoMessageInQueue {
			t.Fatalf("deleted topic read: %v", r.Status)
		}
		if hits, _ := s.LookupKey("gone", "k", 0, 1<<62, 10); len(hits) != 0 {
			t.Fatalf("deleted topic key hits: %d", len(hits))
		}
		if got := readAll(t, s, "kept", 0); len(got) != 3 {
			t.Fatalf("kept topic: %d", len(got))
		}
	}
	check(s)
	s.Close()
	s2 := openStore(t, Config{Dir: dir})
	check(s2)
	if r := mustAppend(t, s2, encode(t, "gone", 0, "again", nil)); r[0].QueueOffset != 0 {
		t.Fatalf("recreated topic starts at %d", r[0].QueueOffset)
	}
}

func TestClosedStore(t *testing.T) {
	s := openStore(t, Config{})
	s.Close()
	if _, err := s.Append(context.Background(), encode(t, "t", 0, "x", nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestCloseDuringAppends(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, FlushMode: FlushSync})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				_, err := s.Append(context.Background(), encode(t, "c", 0, body(i), nil))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	if _, err := s.WaitForAppend(context.Background(), "c", 0, 20); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s2 := openStore(t, Config{Dir: dir})
	if got := len(readAll(t, s2, "c", 0)); got != ok {
		t.Fatalf("%d acknowledged appends, %d stored", ok, got)
	}
}

func TestNextRecordPosFindsTheNextRecordOfAnAppend(t *testing.T) {
	s := openStore(t, Config{})
	mustAppend(t, s, encode(t, "other", 0, "before", nil))
	res := mustAppend(t, s, encode(t, "a", 0, "first", nil), encode(t, "b", 1, "second record", nil))
	if got := NextRecordPos(res[0].CommitLogOffset, res[0].Size); got != res[1].CommitLogOffset {
		t.Fatalf("NextRecordPos = %d, the second record is at %d", got, res[1].CommitLogOffset)
	}
	rec, err := s.ReadAt(NextRecordPos(res[0].CommitLogOffset, res[0].Size), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m, _, err := message.Decode(rec); err != nil || string(m.Body) != "second record" {
		t.Fatalf("record after the first: %v, %v", m, err)
	}
	if _, err := s.ReadAt(NextRecordPos(res[1].CommitLogOffset, res[1].Size), 0); !errors.Is(err, ErrOffsetNotFound) {
		t.Fatalf("past the last record: err %v, want ErrOffsetNotFound", err)
	}
}
