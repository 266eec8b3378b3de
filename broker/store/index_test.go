package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
)

// manyPerQueue fills a store with enough records per queue to need several full consume-queue
// pages (145 entries each), over many small segments.
func manyPerQueue(t *testing.T, cfg Config, perQueue int) (Config, []acked) {
	t.Helper()
	cfg.SegmentBytes, cfg.MaxMessageBytes = 64<<10, 1024
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Hour // tests place checkpoints themselves
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []acked
	batch := make([][]byte, 0, 30)
	var meta []acked
	for i := 0; i < perQueue*6; i++ {
		a := acked{topic: []string{"a", "b"}[i%2], queue: int32(i % 3), body: body(i)}
		batch = append(batch, encode(t, a.topic, a.queue, a.body, map[string]string{"KEYS": "key" + body(i), "TAGS": []string{"x", "y"}[i%5/4]}))
		meta = append(meta, a)
		if len(batch) == cap(batch) {
			res := mustAppend(t, s, batch...)
			for j := range res {
				meta[j].res = res[j]
			}
			out = append(out, meta...)
			batch, meta = batch[:0], meta[:0]
		}
	}
	if len(batch) > 0 {
		res := mustAppend(t, s, batch...)
		for j := range res {
			meta[j].res = res[j]
		}
		out = append(out, meta...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return cfg, out
}

// A clean reopen replays no record; the data is all there.
func TestCleanReopenReplaysNothing(t *testing.T) {
	cfg, all := manyPerQueue(t, Config{Dir: t.TempDir()}, 400)
	s := openStore(t, cfg)
	if s.recoveredRecords != 0 || s.rebuiltIndex {
		t.Fatalf("clean reopen indexed %d records from the log (rebuilt %v), want 0", s.recoveredRecords, s.rebuiltIndex)
	}
	verifyExactly(t, s, all)
}

// After a crash, Open replays only the log after the last checkpoint; queues whose
// unfinished pages lag more than half of RecoveryReplayBytes are written out as fragments by
// the checkpoint, so the replay stays bounded even though no queue filled a page since.
func TestCrashReplaysABoundedTail(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 1 << 20, MaxMessageBytes: 1024, RecoveryReplayBytes: 64 << 10, CheckpointInterval: time.Hour}
	s := openStore(t, cfg)
	var all []acked
	const queues, total = 40, 4200 // round robin: no queue fills a page; 200 records after the last checkpoint
	for i := 0; i < total; i++ {
		a := acked{topic: fmt.Sprintf("t%02d", i%queues), body: body(i)}
		a.res = mustAppend(t, s, encode(t, a.topic, 0, a.body, map[string]string{"UNIQ_KEY": "U" + body(i)}))[0]
		all = append(all, a)
		if i%500 == 499 {
			if err := s.checkpointNow(false); err != nil {
				t.Fatal(err)
			}
		}
	}
	ck := s.lastCheckpoint.Load()
	if lag := ck.indexedEnd - ck.replayFrom; lag > cfg.RecoveryReplayBytes {
		t.Fatalf("checkpoint replays from %d, %d bytes behind its end; the bound is %d", ck.replayFrom, lag, cfg.RecoveryReplayBytes)
	}
	tail := s.MaxCommitLogOffset() - ck.replayFrom
	s.crash()
	s2 := openStore(t, cfg)
	recSize := int64(all[0].res.Size) + frameTrailerBytes
	if s2.rebuiltIndex || s2.recoveredRecords == 0 || s2.recoveredRecords > tail/recSize+1 {
		t.Fatalf("reopen indexed %d records (rebuilt %v); the tail after the checkpoint holds %d", s2.recoveredRecords, s2.rebuiltIndex, tail/recSize)
	}
	for q := 0; q < queues; q++ {
		topic := fmt.Sprintf("t%02d", q)
		got := readAll(t, s2, topic, 0)
		if len(got) != total/queues {
			t.Fatalf("%s: %d messages after the crash, want %d", topic, len(got), total/queues)
		}
		for k, m := range got {
			if want := all[k*queues+q]; string(m.Body) != want.body || m.CommitLogOffset != want.res.CommitLogOffset {
				t.Fatalf("%s offset %d: %q, want %q", topic, k, m.Body, want.body)
			}
		}
	}
	last := all[len(all)-1]
	if hits, _ := s2.LookupKey(last.topic, "U"+last.body, 0, 1<<62, 2); len(hits) != 1 || hits[0].CommitLogOffset != last.res.CommitLogOffset {
		t.Fatalf("unique key of the last record: %d hits", len(hits))
	}
	if r := mustAppend(t, s2, encode(t, "t00", 0, "after", nil)); r[0].QueueOffset != total/queues {
		t.Fatalf("append after the crash got offset %d", r[0].QueueOffset)
	}
}

func indexFiles(t *testing.T, dir, ext string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, indexDir, "*"+ext))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s index files in %s: %v", ext, dir, err)
	}
	return m
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, max(st.Size()-n, 0)); err != nil {
		t.Fatal(err)
	}
}

// Damaged index files — truncated, flipped, deleted, a stale legacy index — are detected at
// open and rebuilt from the commit log: every acknowledged message is still there, in order,
// findable by key, and the store keeps appending.
func TestDamagedIndexFilesAreRebuiltFromTheLog(t *testing.T) {
	last := func(ps []string) string { return ps[len(ps)-1] }
	cases := map[string]struct {
		damage  func(t *testing.T, dir string)
		rebuilt bool
	}{
		"page map truncated": {func(t *testing.T, dir string) { truncateBy(t, last(indexFiles(t, dir, cqMapExt)), 7) }, true},
		"page map flipped":   {func(t *testing.T, dir string) { flipByte(t, indexFiles(t, dir, cqMapExt)[0], cqMapHeaderBytes+9) }, true},
		"pages truncated":    {func(t *testing.T, dir string) { truncateBy(t, last(indexFiles(t, dir, cqPagesExt)), 100) }, true},
		"pages deleted":      {func(t *testing.T, dir string) { os.Remove(last(indexFiles(t, dir, cqPagesExt))) }, true},
		"queue table flipped": {func(t *testing.T, dir string) {
			flipByte(t, filepath.Join(dir, indexDir, queueTableFile), queueTableHeader+6)
		}, true},
		"key index truncated": {func(t *testing.T, dir string) { truncateBy(t, last(indexFiles(t, dir, keyFileExt)), 33) }, true},
		"key index deleted":   {func(t *testing.T, dir string) { os.Remove(last(indexFiles(t, dir, keyFileExt))) }, true},
		"both checkpoint slots garbage": {func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, indexDir, checkpointFile), make([]byte, 2*checkpointSlotBytes), 0o644)
		}, true},
		"index directory gone": {func(t *testing.T, dir string) { os.RemoveAll(filepath.Join(dir, indexDir)) }, true},
		"previous index format": {func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, indexDir))
			os.WriteFile(filepath.Join(dir, commitLogDir, fmt.Sprintf("%020d.idx", 0)), []byte("SIDX\x01\x00\x00\x00"), 0o644)
		}, true},
		"newest checkpoint slot torn": {func(t *testing.T, dir string) {
			ck, _ := readCheckpoint(filepath.Join(dir, indexDir, checkpointFile))
			flipByte(t, filepath.Join(dir, indexDir, checkpointFile), int64(ck.seq%2)*checkpointSlotBytes+20)
		}, false}, // the older slot still matches the files
	}
	src := t.TempDir()
	cfg, all := manyPerQueue(t, Config{Dir: src}, 300)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, src, dir)
			c.damage(t, dir)
			cc := cfg
			cc.Dir = dir
			s := openStore(t, cc)
			if s.rebuiltIndex != c.rebuilt {
				t.Fatalf("rebuilt %v, want %v", s.rebuiltIndex, c.rebuilt)
			}
			verifyExactly(t, s, all)
			if m, _ := filepath.Glob(filepath.Join(dir, commitLogDir, "*.idx")); len(m) != 0 {
				t.Fatalf("previous-format index files left: %v", m)
			}
			r := mustAppend(t, s, encode(t, "a", 0, "after", nil))
			if r[0].QueueOffset != s.MaxOffset("a", 0)-1 {
				t.Fatalf("append after rebuild got offset %d", r[0].QueueOffset)
			}
			s.Close()
			s2 := openStore(t, cc) // and the rebuilt index reopens without a rebuild
			if s2.rebuiltIndex || s2.recoveredRecords != 0 {
				t.Fatalf("second reopen: rebuilt %v, %d records replayed", s2.rebuiltIndex, s2.recoveredRecords)
			}
		})
	}
}

// A consume-queue page whose bytes changed on disk is never served; the read fails with
// ErrCorrupt and names the fix, and the next Open rebuilds the index from the log.
func TestCorruptPageIsRefusedAndRebuiltAtNextOpen(t *testing.T) {
	cfg, all := manyPerQueue(t, Config{Dir: t.TempDir()}, 300)
	flipByte(t, indexFiles(t, cfg.Dir, cqPagesExt)[0], cqPageHeaderBytes+3*cqEntryBytes+5)
	s := openStore(t, cfg)
	var err error
	for _, topic := range []string{"a", "b"} {
		for q := int32(0); q < 3 && err == nil; q++ {
			_, err = s.Read(context.Background(), ReadRequest{Topic: topic, QueueID: q, Offset: 0, MaxMessages: 200})
		}
	}
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("read over the flipped page: %v", err)
	}
	s.Close()
	s2 := openStore(t, cfg)
	if !s2.rebuiltIndex {
		t.Fatal("the index was not rebuilt after a corrupt page")
	}
	verifyExactly(t, s2, all)
}

// Pages, time lookup and tag filtering across many pages and segments, and local retention
// that cuts a queue in the middle of a page, before and after a reopen.
func TestPagesAcrossSegmentsAndRetention(t *testing.T) {
	cfg, all := manyPerQueue(t, Config{Dir: t.TempDir()}, 500)
	s := openStore(t, cfg)
	per := map[string][]acked{}
	for _, a := range all {
		k := fmt.Sprintf("%s/%d", a.topic, a.queue)
		per[k] = append(per[k], a)
	}
	q := per["a/0"]
	for _, k := range []int{0, 1, 144, 145, 146, 300, len(q) - 1} {
		off, err := s.OffsetForTime("a", 0, q[k].res.StoreTimestamp)
		if err != nil || q[off].res.StoreTimestamp != q[k].res.StoreTimestamp || (off > 0 && q[off-1].res.StoreTimestamp >= q[k].res.StoreTimestamp) {
			t.Fatalf("OffsetForTime(%d's time) = %d, %v", k, off, err)
		}
	}
	if off, _ := s.OffsetForTime("a", 0, 1<<62); off != int64(len(q)) {
		t.Fatalf("OffsetForTime(future) = %d, want %d", off, len(q))
	}
	r, err := s.Read(context.Background(), ReadRequest{Topic: "a", QueueID: 0, Offset: 0, MaxMessages: 1000, MaxBytes: 1 << 30,
		TagCodes: []int64{message.TagHashCode("y")}})
	if err != nil || r.Status != ReadFound || len(r.Entries) == 0 {
		t.Fatalf("filtered read: %v %v", r.Status, err)
	}
	for _, e := range r.Entries {
		if e.TagCode != message.TagHashCode("y") {
			t.Fatalf("filtered read returned tag code %d", e.TagCode)
		}
	}
	// Retention: drop the oldest third of the segments.
	segs := s.SealedSegments()
	cut := segs[len(segs)/3].EndOffset
	deleted := make(chan struct{})
	s.SetRetention(func(g SealedSegment) bool {
		if g.EndOffset > cut {
			select {
			case <-deleted:
			default:
				close(deleted)
			}
			return false
		}
		return true
	})
	<-deleted
	check := func(s *Store) {
		t.Helper()
		for k, exp := range per {
			var topic string
			var id int32
			fmt.Sscanf(strings.Replace(k, "/", " ", 1), "%s %d", &topic, &id)
			var want []acked
			for _, a := range exp {
				if a.res.CommitLogOffset >= cut {
					want = append(want, a)
				}
			}
			if got := s.MinOffset(topic, id); got != want[0].res.QueueOffset {
				t.Fatalf("%s: min offset %d, want %d", k, got, want[0].res.QueueOffset)
			}
			if ts, _ := s.EarliestStoreTime(topic, id); ts != want[0].res.StoreTimestamp {
				t.Fatalf("%s: earliest store time %d, want %d", k, ts, want[0].res.StoreTimestamp)
			}
			if off, _ := s.OffsetForTime(topic, id, 0); off != want[0].res.QueueOffset {
				t.Fatalf("%s: offset for time 0 = %d, want %d", k, off, want[0].res.QueueOffset)
			}
			got := readAll(t, s, topic, id)
			if len(got) != len(want) || got[0].QueueOffset != want[0].res.QueueOffset || string(got[len(got)-1].Body) != want[len(want)-1].body {
				t.Fatalf("%s: %d messages after retention, want %d", k, len(got), len(want))
			}
			r, _ := s.Read(context.Background(), ReadRequest{Topic: topic, QueueID: id, Offset: 0})
			if r.Status != ReadOffsetTooSmall || r.NextOffset != want[0].res.QueueOffset {
				t.Fatalf("%s: read below the min: %v next %d", k, r.Status, r.NextOffset)
			}
		}
		if hits, _ := s.LookupKey("a", "key"+all[0].body, 0, 1<<62, 5); len(hits) != 0 {
			t.Fatalf("key of a deleted record: %d hits", len(hits))
		}
	}
	check(s)
	if _, err := os.Stat(filepath.Join(cfg.Dir, indexDir, cqName(0, cqMapExt))); !os.IsNotExist(err) {
		t.Fatalf("page map of the deleted first segment: %v", err)
	}
	s.Close()
	check(openStore(t, cfg))
}

// Retention deletes segments while appends fill pages and readers pull: every read stays
// consistent (no error, offsets contiguous from the min), and the queues end exactly where the
// appends did.
func TestRetentionWhileAppendingAndReading(t *testing.T) {
	s := openStore(t, Config{SegmentBytes: 64 << 10, MaxMessageBytes: 1024, CheckpointInterval: 10 * time.Millisecond})
	var deleted atomic.Int64
	var stopped atomic.Bool
	idle := make(chan struct{}, 1)
	s.SetRetention(func(g SealedSegment) bool {
		if stopped.Load() { // refusing: no deletion is in flight
			select {
			case idle <- struct{}{}:
			default:
			}
			return false
		}
		keep := int64(3) // segments kept behind the newest
		ok := g.EndOffset+keep*(64<<10) < s.MaxCommitLogOffset()
		if ok {
			deleted.Add(1)
		}
		return ok
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		for ctx.Err() == nil {
			for q := int32(0); q < 3; q++ {
				off := s.MinOffset("r", q)
				r, err := s.Read(ctx, ReadRequest{Topic: "r", QueueID: q, Offset: off, MaxMessages: 300, MaxBytes: 1 << 20})
				if err != nil && ctx.Err() == nil {
					readErr <- fmt.Errorf("read %d at %d: %w", q, off, err)
					return
				}
				for i, e := range r.Entries {
					if e.QueueOffset != r.Entries[0].QueueOffset+int64(i) {
						readErr <- fmt.Errorf("queue %d: entry %d has offset %d after %d", q, i, e.QueueOffset, r.Entries[0].QueueOffset)
						return
					}
				}
			}
		}
	}()
	batch := make([][]byte, 30)
	for i := range batch {
		batch[i] = encode(t, "r", int32(i%3), body(i), map[string]string{"UNIQ_KEY": "U" + body(i)})
	}
	n := 0
	for deleted.Load() < 20 {
		mustAppend(t, s, batch...)
		n += len(batch)
		if n > 2_000_000 {
			t.Fatal("retention never deleted 20 segments")
		}
	}
	cancel()
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	stopped.Store(true)
	mustAppend(t, s, batch...) // another sealed segment for the retention loop to ask about
	n += len(batch)
	select {
	case <-idle:
	case <-time.After(20 * time.Second):
		t.Fatal("retention never asked again")
	}
	for q := int32(0); q < 3; q++ {
		if max := s.MaxOffset("r", q); max != int64(n/3) {
			t.Fatalf("queue %d ends at %d, want %d", q, max, n/3)
		}
		if got := int64(len(readAll(t, s, "r", q))); got != s.MaxOffset("r", q)-s.MinOffset("r", q) {
			t.Fatalf("queue %d: %d messages between min %d and max %d", q, got, s.MinOffset("r", q), s.MaxOffset("r", q))
		}
	}
}
