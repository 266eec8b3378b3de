package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// replCfg makes small segments (several rolls) and small key files (several seals).
func replCfg(dir string) Config {
	return Config{Dir: dir, SegmentBytes: 64 << 10, MaxMessageBytes: 8 << 10, KeyIndexFileKeys: 256, CheckpointInterval: 1 << 40}
}

var replTopics = []string{"orders", "audit"}

// appendBatch appends n records spread over two topics and three queues, each with a key
// k<from+i>, in batches of up to 7.
func appendBatch(t testing.TB, s *Store, from, n int) {
	t.Helper()
	var recs [][]byte
	for i := from; i < from+n; i++ {
		recs = append(recs, encode(t, replTopics[i%2], int32(i%3), body(i)+strings.Repeat("x", i%200),
			map[string]string{"KEYS": fmt.Sprintf("k%d", i), "TAGS": fmt.Sprintf("t%d", i%4)}))
		if len(recs) == 7 {
			mustAppend(t, s, recs...)
			recs = nil
		}
	}
	if len(recs) > 0 {
		mustAppend(t, s, recs...)
	}
}

// copyLog replicates master's log into follower from follower's end, in chunks of up to max
// bytes, as the replication stream does.
func copyLog(t testing.TB, master, follower *Store, max int) {
	t.Helper()
	for pos := follower.EndOffset(); pos < master.EndOffset(); {
		b, err := master.ReadLog(pos, max)
		if err != nil {
			t.Fatalf("read log at %d: %v", pos, err)
		}
		if len(b) == 0 {
			t.Fatalf("read log at %d returned nothing before the end %d", pos, master.EndOffset())
		}
		if err := follower.AppendReplicated(pos, b); err != nil {
			t.Fatalf("append replicated at %d: %v", pos, err)
		}
		pos += int64(len(b))
	}
}

func setFollower(t testing.TB, s *Store, on bool) {
	t.Helper()
	if err := s.SetFollower(context.Background(), on); err != nil {
		t.Fatalf("set follower %v: %v", on, err)
	}
}

// storeView is what a client can see of a store: every queue's records (bytes and offsets)
// and the key index's answers for keys k0..k<keys>.
type storeView struct {
	End     int64
	Queues  map[QueueID][]string
	Bounds  map[QueueID][2]int64
	KeyHits map[string][]int64 // key → commit-log offsets
}

func viewOf(t testing.TB, s *Store, keys int) storeView {
	t.Helper()
	v := storeView{End: s.EndOffset(), Queues: map[QueueID][]string{}, Bounds: map[QueueID][2]int64{}, KeyHits: map[string][]int64{}}
	for _, q := range s.Queues() {
		for _, m := range readAll(t, s, q.Topic, q.QueueID) {
			v.Queues[q] = append(v.Queues[q], fmt.Sprintf("%d@%d:%s", m.QueueOffset, m.CommitLogOffset, m.Body))
		}
		v.Bounds[q] = [2]int64{s.MinOffset(q.Topic, q.QueueID), s.MaxOffset(q.Topic, q.QueueID)}
	}
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("k%d", i)
		for _, topic := range replTopics {
			hits, err := s.LookupKey(topic, k, 0, 1<<62, 16)
			if err != nil {
				t.Fatalf("lookup %s/%s: %v", topic, k, err)
			}
			for _, h := range hits {
				v.KeyHits[topic+"/"+k] = append(v.KeyHits[topic+"/"+k], h.CommitLogOffset)
			}
		}
	}
	return v
}

func assertSameView(t testing.TB, what string, got, want storeView) {
	t.Helper()
	if got.End != want.End {
		t.Fatalf("%s: log end %d, want %d", what, got.End, want.End)
	}
	if !reflect.DeepEqual(got.Bounds, want.Bounds) {
		t.Fatalf("%s: queue bounds %v, want %v", what, got.Bounds, want.Bounds)
	}
	if !reflect.DeepEqual(got.Queues, want.Queues) {
		t.Fatalf("%s: queue contents differ", what)
	}
	if !reflect.DeepEqual(got.KeyHits, want.KeyHits) {
		t.Fatalf("%s: key lookups %v, want %v", what, got.KeyHits, want.KeyHits)
	}
}

// assertIndexMatchesLog checks that a closed store's index, reopened, answers what an index
// rebuilt from its commit log alone answers: the index describes exactly the log.
func assertIndexMatchesLog(t *testing.T, dir string, keys int) storeView {
	t.Helper()
	copyDir := t.TempDir()
	for _, sub := range []string{"", commitLogDir} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(copyDir, sub), 0o755)
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(copyDir, sub, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := openStore(t, replCfg(dir))
	rebuilt := openStore(t, replCfg(copyDir))
	if !rebuilt.rebuiltIndex {
		t.Fatal("the copy without index/ did not rebuild its index")
	}
	got, want := viewOf(t, s, keys), viewOf(t, rebuilt, keys)
	assertSameView(t, "reopened store vs index rebuilt from its log", got, want)
	if !reflect.DeepEqual(s.EpochHistory(), rebuilt.EpochHistory()) {
		t.Fatalf("epoch history %v, copy %v", s.EpochHistory(), rebuilt.EpochHistory())
	}
	s.Close()
	rebuilt.Close()
	return got
}

func TestReplicatedStoreMatchesMaster(t *testing.T) {
	master := openStore(t, replCfg(t.TempDir()))
	if err := master.BeginEpoch(3); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, master, 0, 1500)
	if len(master.SealedSegments()) < 3 {
		t.Fatalf("want several sealed segments, have %d", len(master.SealedSegments()))
	}
	fdir := t.TempDir()
	follower := openStore(t, replCfg(fdir))
	setFollower(t, follower, true)
	if err := follower.BeginEpoch(3); err != nil {
		t.Fatal(err)
	}
	copyLog(t, master, follower, 3000)
	want := viewOf(t, master, 1500)
	assertSameView(t, "follower after catch-up", viewOf(t, follower, 1500), want)
	var mSegs, fSegs []int64
	for _, g := range master.SealedSegments() {
		mSegs = append(mSegs, g.BaseOffset, g.EndOffset)
	}
	for _, g := range follower.SealedSegments() {
		fSegs = append(fSegs, g.BaseOffset, g.EndOffset)
	}
	if !reflect.DeepEqual(fSegs, mSegs) {
		t.Fatalf("follower segments %v, master %v", fSegs, mSegs)
	}
	// Live: more records, copied in one-record chunks.
	appendBatch(t, master, 1500, 40)
	copyLog(t, master, follower, 1)
	want = viewOf(t, master, 1540)
	assertSameView(t, "follower after live appends", viewOf(t, follower, 1540), want)

	// A follower refuses local appends; the queue offsets it continues from are the master's.
	if _, err := follower.Append(context.Background(), encode(t, "orders", 0, "local", nil)); !errors.Is(err, ErrFollower) {
		t.Fatalf("append on a follower: %v, want ErrFollower", err)
	}
	setFollower(t, follower, false)
	r1 := mustAppend(t, master, encode(t, "orders", 0, "after", nil))
	r2 := mustAppend(t, follower, encode(t, "orders", 0, "after", nil))
	if r1[0].QueueOffset != r2[0].QueueOffset || r1[0].CommitLogOffset != r2[0].CommitLogOffset {
		t.Fatalf("promoted follower appended at %+v, master at %+v", r2[0], r1[0])
	}
	follower.Close()
	got := assertIndexMatchesLog(t, fdir, 1540)
	if got.End != master.EndOffset() {
		t.Fatalf("reopened follower ends at %d, master at %d", got.End, master.EndOffset())
	}
}

func TestAppendReplicatedRefusesBadInput(t *testing.T) {
	master := openStore(t, replCfg(t.TempDir()))
	appendBatch(t, master, 0, 20)
	follower := openStore(t, replCfg(t.TempDir()))
	b, err := master.ReadLog(follower.EndOffset(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.AppendReplicated(follower.EndOffset(), b); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("not a follower: %v, want ErrNotFollower", err)
	}
	setFollower(t, follower, true)
	end := follower.EndOffset()
	if err := follower.AppendReplicated(end+1, b); err == nil {
		t.Fatal("bytes at a misaligned position were accepted")
	}
	second := NextRecordPos(end, int32(binary.BigEndian.Uint32(b)))
	if err := follower.AppendReplicated(second, b[second-end:]); !errors.Is(err, ErrReplicaGap) {
		t.Fatalf("bytes past the end: %v, want ErrReplicaGap", err)
	}
	bad := append([]byte(nil), b...)
	bad[100] ^= 0xff
	if err := follower.AppendReplicated(end, bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("flipped byte: %v, want ErrCorrupt", err)
	}
	if err := follower.AppendReplicated(end, b[:len(b)-3]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("torn frame: %v, want ErrCorrupt", err)
	}
	if follower.EndOffset() != end {
		t.Fatalf("refused bytes moved the end to %d", follower.EndOffset())
	}
	if _, err := master.ReadLog(end+1, 100); err == nil {
		t.Fatal("ReadLog at a misaligned position succeeded")
	}
	if _, err := master.ReadLog(master.EndOffset()+1, 100); err == nil {
		t.Fatal("ReadLog past the end succeeded")
	}
	if b, err := master.ReadLog(master.EndOffset(), 100); err != nil || len(b) != 0 {
		t.Fatalf("ReadLog at the end: %d bytes, %v", len(b), err)
	}
}

// divergedPair builds a follower that copied the master up to a point, then was a master of
// its own (epoch 4) and wrote a tail the new master (epoch 5) does not have. It returns the
// new master, the follower's directory (closed) and the divergence point.
func divergedPair(t *testing.T) (*Store, string, int64) {
	t.Helper()
	master := openStore(t, replCfg(t.TempDir()))
	if err := master.BeginEpoch(3); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, master, 0, 900)
	fdir := t.TempDir()
	old := openStore(t, replCfg(fdir))
	setFollower(t, old, true)
	if err := old.BeginEpoch(3); err != nil {
		t.Fatal(err)
	}
	copyLog(t, master, old, 1<<20)
	cut := old.EndOffset()
	// The follower is elected in epoch 4 and writes a tail nobody copies; it seals segments.
	setFollower(t, old, false)
	if err := old.BeginEpoch(4); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, old, 5000, 700)
	if err := old.DeleteTopic(context.Background(), "audit"); err != nil { // only in the dropped tail
		t.Fatal(err)
	}
	if err := old.checkpointNow(false); err != nil {
		t.Fatal(err)
	}
	old.Close()
	// Meanwhile the master went on in epoch 5.
	if err := master.BeginEpoch(5); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, master, 900, 300)
	return master, fdir, cut
}

func TestTruncateDivergentTail(t *testing.T) {
	master, fdir, cut := divergedPair(t)
	f := openStore(t, replCfg(fdir))
	if h := f.EpochHistory(); len(h) != 2 || h[1].Epoch != 4 || h[1].StartOffset != cut {
		t.Fatalf("diverged history %v", h)
	}
	if err := f.TruncateTo(cut); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("truncate outside follower mode: %v", err)
	}
	setFollower(t, f, true)
	if err := f.TruncateTo(cut + 1); err == nil {
		t.Fatal("truncation inside a record was accepted")
	}
	if err := f.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	if f.EndOffset() != cut {
		t.Fatalf("end after truncation %d, want %d", f.EndOffset(), cut)
	}
	if f.rebuiltIndex {
		t.Fatal("truncation rebuilt the whole index; BeginEpoch's checkpoint should have served")
	}
	if h := f.EpochHistory(); len(h) != 1 || h[0].Epoch != 3 {
		t.Fatalf("history after truncation %v", h)
	}
	for i := 5000; i < 5700; i += 37 {
		if hits, _ := f.LookupKey(replTopics[i%2], fmt.Sprintf("k%d", i), 0, 1<<62, 4); len(hits) != 0 {
			t.Fatalf("key k%d of the dropped tail is still found", i)
		}
	}
	if err := f.BeginEpoch(5); err != nil {
		t.Fatal(err)
	}
	copyLog(t, master, f, 5000)
	assertSameView(t, "truncated follower after catch-up", viewOf(t, f, 1200), viewOf(t, master, 1200))
	if !reflect.DeepEqual(f.EpochHistory(), master.EpochHistory()) {
		t.Fatalf("history %v, master %v", f.EpochHistory(), master.EpochHistory())
	}
	f.Close()
	assertIndexMatchesLog(t, fdir, 1200)
}

// TestTruncateCrash cuts power after each step of TruncateTo: the store reopens with an index
// that matches its log, and a second TruncateTo finishes the job.
func TestTruncateCrash(t *testing.T) {
	for _, step := range []string{"checkpoint", "segments", "log", "epochs"} {
		t.Run(step, func(t *testing.T) {
			master, fdir, cut := divergedPair(t)
			f := openStore(t, replCfg(fdir))
			setFollower(t, f, true)
			f.truncateHook = func(s string) error {
				if s == step {
					return errors.New("power cut")
				}
				return nil
			}
			if err := f.TruncateTo(cut); err == nil {
				t.Fatal("the hook did not stop the truncation")
			}
			f.crash()
			assertIndexMatchesLog(t, fdir, 6000)
			f = openStore(t, replCfg(fdir))
			setFollower(t, f, true)
			if err := f.TruncateTo(cut); err != nil {
				t.Fatal(err)
			}
			if err := f.BeginEpoch(5); err != nil {
				t.Fatal(err)
			}
			copyLog(t, master, f, 1<<20)
			assertSameView(t, "follower after a crashed truncation", viewOf(t, f, 1200), viewOf(t, master, 1200))
			f.Close()
			assertIndexMatchesLog(t, fdir, 1200)
		})
	}
}

// TestAppendReplicatedCrash tears a replicated write and cuts power: the store reopens at
// the last whole frame with a matching index and resumes from there.
func TestAppendReplicatedCrash(t *testing.T) {
	master := openStore(t, replCfg(t.TempDir()))
	appendBatch(t, master, 0, 600)
	fdir := t.TempDir()
	f := openStore(t, replCfg(fdir))
	setFollower(t, f, true)
	half := master.EndOffset() / 2
	for pos := f.EndOffset(); pos < half; {
		b, err := master.ReadLog(pos, 4000)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.AppendReplicated(pos, b); err != nil {
			t.Fatal(err)
		}
		pos += int64(len(b))
	}
	f.writeAt = func(file *os.File, b []byte, off int64) (int, error) {
		n, _ := file.WriteAt(b[:len(b)/2], off)
		return n, errors.New("power cut")
	}
	pos := f.EndOffset()
	b, err := master.ReadLog(pos, 20000)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.AppendReplicated(pos, b); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("torn replicated write: %v, want ErrWriteFailed", err)
	}
	f.crash()
	v := assertIndexMatchesLog(t, fdir, 600)
	if v.End > pos+int64(len(b)) || v.End < pos {
		t.Fatalf("reopened end %d outside [%d, %d]", v.End, pos, pos+int64(len(b)))
	}
	f = openStore(t, replCfg(fdir))
	setFollower(t, f, true)
	copyLog(t, master, f, 1<<20)
	assertSameView(t, "follower after a torn write", viewOf(t, f, 600), viewOf(t, master, 600))
}

func TestBeginEpoch(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, replCfg(dir))
	if err := s.BeginEpoch(0); err == nil {
		t.Fatal("epoch 0 accepted")
	}
	if err := s.BeginEpoch(5); err != nil {
		t.Fatal(err)
	}
	if err := s.BeginEpoch(7); err != nil { // replaces the empty epoch 5
		t.Fatal(err)
	}
	appendBatch(t, s, 0, 10)
	if err := s.BeginEpoch(7); err != nil { // same epoch: nothing changes
		t.Fatal(err)
	}
	if err := s.BeginEpoch(6); !errors.Is(err, ErrEpochRegress) {
		t.Fatalf("older epoch: %v, want ErrEpochRegress", err)
	}
	end := s.EndOffset()
	if err := s.BeginEpoch(9); err != nil {
		t.Fatal(err)
	}
	want := []EpochStart{{Epoch: 7, StartOffset: segmentHeaderBytes}, {Epoch: 9, StartOffset: end}}
	if h := s.EpochHistory(); !reflect.DeepEqual(h, want) {
		t.Fatalf("history %v, want %v", h, want)
	}
	if EpochAt(want, end-1) != 7 || EpochAt(want, end) != 9 || EpochAt(want, 0) != 0 {
		t.Fatal("EpochAt does not follow the history")
	}
	s.Close()
	s = openStore(t, replCfg(dir))
	if h := s.EpochHistory(); !reflect.DeepEqual(h, want) {
		t.Fatalf("history after reopen %v, want %v", h, want)
	}
	s.Close()
	os.WriteFile(filepath.Join(dir, epochsFile), []byte("SEPH\x02"), 0o644)
	if _, err := Open(replCfg(dir)); err == nil || !strings.Contains(err.Error(), "epoch history") {
		t.Fatalf("open with a bad epoch history: %v", err)
	}
}

// TestWaitLogEnd wakes on the append.
func TestWaitLogEnd(t *testing.T) {
	s := openStore(t, replCfg(t.TempDir()))
	end := s.EndOffset()
	got := make(chan int64, 1)
	go func() {
		e, _ := s.WaitLogEnd(context.Background(), end)
		got <- e
	}()
	r := mustAppend(t, s, encode(t, "orders", 0, "x", nil))
	if e := <-got; e != NextRecordPos(r[0].CommitLogOffset, r[0].Size) {
		t.Fatalf("woke at %d, want the end after the append", e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.WaitLogEnd(ctx, s.EndOffset()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

func TestResetTo(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, replCfg(dir))
	if err := s.BeginEpoch(2); err != nil {
		t.Fatal(err)
	}
	appendBatch(t, s, 0, 700)
	base := s.EndOffset() + 1<<20
	if err := s.ResetTo(base); !errors.Is(err, ErrNotFollower) {
		t.Fatalf("reset outside follower mode: %v", err)
	}
	setFollower(t, s, true)
	if err := s.ResetTo(s.EndOffset()); err == nil {
		t.Fatal("reset to the current end was accepted")
	}
	if err := s.ResetTo(base); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store, when string) {
		t.Helper()
		if s.MinCommitLogOffset() != base || s.EndOffset() != base+segmentHeaderBytes {
			t.Fatalf("%s: log [%d, %d), want [%d, %d)", when, s.MinCommitLogOffset(), s.EndOffset(), base, base+segmentHeaderBytes)
		}
		if q := s.Queues(); len(q) != 0 || len(s.EpochHistory()) != 0 || len(s.SealedSegments()) != 0 {
			t.Fatalf("%s: queues %v, history %v, sealed %v remain", when, q, s.EpochHistory(), s.SealedSegments())
		}
		if hits, _ := s.LookupKey("orders", "k0", 0, 1<<62, 4); len(hits) != 0 {
			t.Fatalf("%s: a key of the discarded log is found", when)
		}
	}
	check(s, "after reset")
	s.Close()
	s = openStore(t, replCfg(dir))
	check(s, "after reopen")
	// It continues from a master whose log starts there.
	mcfg := replCfg(t.TempDir())
	mcfg.BaseOffset = base
	master := openStore(t, mcfg)
	appendBatch(t, master, 0, 300)
	setFollower(t, s, true)
	copyLog(t, master, s, 1<<20)
	assertSameView(t, "reset follower after catch-up", viewOf(t, s, 300), viewOf(t, master, 300))
}

// TestTruncateWithReaders runs TruncateTo while readers pull, look keys up, long-poll and read
// the log: under -race this checks the gate that holds them while the state is replaced, and
// every read either answers from before or from after the cut.
func TestTruncateWithReaders(t *testing.T) {
	_, fdir, cut := divergedPair(t)
	f := openStore(t, replCfg(fdir))
	setFollower(t, f, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 4)
	for i := 0; i < 3; i++ {
		go func(i int) {
			var err error
			for n := 0; ctx.Err() == nil && err == nil; n++ {
				q := int32(n % 3)
				switch i {
				case 0:
					_, err = f.Read(ctx, ReadRequest{Topic: "orders", QueueID: q, Offset: int64(n % 400), MaxMessages: 8})
				case 1:
					_, err = f.LookupKey("orders", fmt.Sprintf("k%d", n%2000), 0, 1<<62, 4)
				case 2:
					_, err = f.ReadLog(segmentHeaderBytes, 4096)
					f.MinOffset("audit", q)
					f.Queues()
				}
			}
			done <- err
		}(i)
	}
	go func() {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		_, err := f.WaitForAppend(wctx, "orders", 0, 1<<40) // woken by the truncation, waits on
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		done <- err
	}()
	if err := f.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	cancel()
	for i := 0; i < 4; i++ {
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("reader during truncation: %v", err)
		}
	}
	if f.EndOffset() != cut {
		t.Fatalf("end %d, want %d", f.EndOffset(), cut)
	}
}

// TestAppendReplicatedSyncFlush: under FlushSync a replicated append returns after an fsync
// covering it, as a local append does.
func TestAppendReplicatedSyncFlush(t *testing.T) {
	master := openStore(t, replCfg(t.TempDir()))
	appendBatch(t, master, 0, 200)
	var fsyncs atomic.Int64
	cfg := replCfg(t.TempDir())
	cfg.FlushMode = FlushSync
	cfg.OnFsync = func(time.Duration, error) { fsyncs.Add(1) }
	f := openStore(t, cfg)
	setFollower(t, f, true)
	pos := f.EndOffset()
	b, err := master.ReadLog(pos, 8000)
	if err != nil {
		t.Fatal(err)
	}
	before := fsyncs.Load()
	if err := f.AppendReplicated(pos, b); err != nil {
		t.Fatal(err)
	}
	if fsyncs.Load() == before {
		t.Fatal("a replicated append under FlushSync returned without an fsync")
	}
	copyLog(t, master, f, 8000)
	assertSameView(t, "follower under FlushSync", viewOf(t, f, 200), viewOf(t, master, 200))
}
