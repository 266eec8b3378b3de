package store

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type acked struct {
	topic string
	queue int32
	body  string
	res   AppendResult
}

// fillStore appends n acknowledged records to a sync-flush store over several segments and
// stops it, cleanly (index complete, ahead of a later truncation) or as a crash (index
// checkpoint behind the log).
func fillStore(t *testing.T, dir string, n int, clean bool) (Config, []acked) {
	return fillStoreWith(t, Config{Dir: dir, CheckpointInterval: 5 * time.Millisecond}, n, clean, true)
}

// fillStoreWith is fillStore with a config of the caller's; with pause it gives the
// checkpointer time to run half way.
func fillStoreWith(t *testing.T, cfg Config, n int, clean, pause bool) (Config, []acked) {
	cfg.FlushMode, cfg.SegmentBytes, cfg.MaxMessageBytes = FlushSync, 4096, 1024
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out []acked
	for i := 0; i < n; i++ {
		a := acked{topic: []string{"a", "b"}[i%2], queue: int32(i % 3), body: body(i)}
		r := mustAppend(t, s, encode(t, a.topic, a.queue, a.body, map[string]string{"KEYS": "key" + body(i)}))
		a.res = r[0]
		out = append(out, a)
		if pause && i == n/2 {
			time.Sleep(20 * time.Millisecond) // let a checkpoint cover part of the log
		}
	}
	if clean {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		s.crash()
	}
	return cfg, out
}

func copyDir(t *testing.T, src, dst string) {
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func lastSegment(t *testing.T, dir string) (int64, string) {
	bases, err := listSegments(filepath.Join(dir, commitLogDir))
	if err != nil || len(bases) < 2 {
		t.Fatalf("segments %v %v", bases, err)
	}
	b := bases[len(bases)-1]
	return b, segmentName(filepath.Join(dir, commitLogDir), b)
}

// verifyExactly checks that the store holds exactly want, per queue in order, findable by key.
func verifyExactly(t *testing.T, s *Store, want []acked) {
	t.Helper()
	type qk struct {
		topic string
		q     int32
	}
	per := map[qk][]acked{}
	for _, a := range want {
		per[qk{a.topic, a.queue}] = append(per[qk{a.topic, a.queue}], a)
	}
	for _, topic := range []string{"a", "b"} {
		for q := int32(0); q < 3; q++ {
			exp := per[qk{topic, q}]
			got := readAll(t, s, topic, q)
			if len(got) != len(exp) || s.MaxOffset(topic, q) != int64(len(exp)) {
				t.Fatalf("%s/%d: %d messages (max %d), want %d", topic, q, len(got), s.MaxOffset(topic, q), len(exp))
			}
			for i, m := range got {
				if string(m.Body) != exp[i].body || m.CommitLogOffset != exp[i].res.CommitLogOffset || m.QueueOffset != int64(i) {
					t.Fatalf("%s/%d message %d: %q at %d, want %q at %d", topic, q, i, m.Body, m.CommitLogOffset, exp[i].body, exp[i].res.CommitLogOffset)
				}
			}
		}
	}
	if len(want) > 0 {
		last := want[len(want)-1]
		hits, _ := s.LookupKey(last.topic, "key"+last.body, 0, 1<<62, 10)
		if len(hits) != 1 || hits[0].CommitLogOffset != last.res.CommitLogOffset {
			t.Fatalf("key of last surviving record: %d hits", len(hits))
		}
	}
}

func TestRecoveryTruncatedAtManyPositions(t *testing.T) {
	for _, clean := range []bool{false, true} {
		name := map[bool]string{false: "crash", true: "clean"}[clean]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			cfg, all := fillStore(t, src, 90, clean)
			base, path := lastSegment(t, src)
			st, _ := os.Stat(path)
			size := st.Size()
			var positions []int64
			for p := int64(0); p <= size; p++ {
				if p < 20 || size-p < 170 || p%97 == 0 {
					positions = append(positions, p)
				}
			}
			for i, p := range positions {
				dst := t.TempDir()
				copyDir(t, src, dst)
				_, dpath := lastSegment(t, dst)
				if err := os.Truncate(dpath, p); err != nil {
					t.Fatal(err)
				}
				c := cfg
				c.Dir = dst
				s, err := Open(c)
				if err != nil {
					t.Fatalf("open after truncation at %d: %v", p, err)
				}
				var want []acked
				for _, a := range all {
					if a.res.CommitLogOffset+int64(a.res.Size)+frameTrailerBytes <= base+p {
						want = append(want, a)
					}
				}
				verifyExactly(t, s, want)
				if i%25 == 0 { // the store keeps working after recovery
					r := mustAppend(t, s, encode(t, "a", 0, "after", nil))
					if exp := s.MaxOffset("a", 0) - 1; r[0].QueueOffset != exp {
						t.Fatalf("append after recovery got offset %d, want %d", r[0].QueueOffset, exp)
					}
				}
				s.Close()
				os.RemoveAll(dst)
			}
		})
	}
}

func TestRecoveryDropsGarbageTail(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	random := make([]byte, 3000)
	rng.Read(random)
	cases := map[string]func(seg []byte) []byte{
		"random bytes": func(seg []byte) []byte { return random },
		"zeros":        func(seg []byte) []byte { return make([]byte, 500) },
		"huge size":    func(seg []byte) []byte { return []byte{0x7f, 0xff, 0xff, 0xff, 1, 2, 3} },
		"copy of a valid frame": func(seg []byte) []byte {
			return append([]byte(nil), seg[segmentHeaderBytes:segmentHeaderBytes+200]...)
		},
		"frame with bad checksum": func(seg []byte) []byte {
			n := int(seg[segmentHeaderBytes])<<24 | int(seg[segmentHeaderBytes+1])<<16 | int(seg[segmentHeaderBytes+2])<<8 | int(seg[segmentHeaderBytes+3])
			f := append([]byte(nil), seg[segmentHeaderBytes:segmentHeaderBytes+n+4]...)
			f[n+3] ^= 0xff
			return f
		},
	}
	for name, garbage := range cases {
		for _, clean := range []bool{false, true} {
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				cfg, all := fillStore(t, dir, 50, clean)
				_, path := lastSegment(t, dir)
				seg, _ := os.ReadFile(path)
				if err := os.WriteFile(path, append(seg, garbage(seg)...), 0o644); err != nil {
					t.Fatal(err)
				}
				s := openStore(t, cfg)
				verifyExactly(t, s, all)
				last := all[len(all)-1].res
				r := mustAppend(t, s, encode(t, "a", 0, "after", nil))
				if want := last.CommitLogOffset + int64(last.Size) + frameTrailerBytes; r[0].CommitLogOffset != want {
					t.Fatalf("append after garbage landed at %d, want %d", r[0].CommitLogOffset, want)
				}
			})
		}
	}
}

func flipByte(t *testing.T, path string, at int64) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, at)
	b[0] ^= 0x55
	f.WriteAt(b, at)
}

// A flipped byte in the log tail after the last checkpoint is found by the replay at open:
// the log is cut before it.
func TestCorruptTailRecordIsCut(t *testing.T) {
	dir := t.TempDir()
	// No checkpoint but Open's: the crash leaves the whole log to replay.
	cfg, all := fillStoreWith(t, Config{Dir: dir, CheckpointInterval: time.Hour}, 50, false, false)
	base, path := lastSegment(t, dir)
	k := len(all) - 3
	victim := all[k].res
	if victim.CommitLogOffset < base {
		t.Fatalf("victim not in last segment")
	}
	flipByte(t, path, victim.CommitLogOffset-base+int64(victim.Size)-3)
	s := openStore(t, cfg)
	verifyExactly(t, s, all[:k])
}

// A flipped byte in the active segment below the checkpoint (a clean close) is not rescanned
// at open, and is never served: the read fails with ErrCorrupt, the records around it are
// served and appends continue after the log end.
func TestCorruptRecordBelowCheckpointIsNeverServed(t *testing.T) {
	dir := t.TempDir()
	cfg, all := fillStore(t, dir, 50, true)
	base, path := lastSegment(t, dir)
	k := len(all) - 3
	victim := all[k]
	flipByte(t, path, victim.res.CommitLogOffset-base+int64(victim.res.Size)-3)
	s := openStore(t, cfg)
	if _, err := s.ReadAt(victim.res.CommitLogOffset, victim.res.Size); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadAt of the flipped record: %v", err)
	}
	if _, err := s.Read(context.Background(), ReadRequest{Topic: victim.topic, QueueID: victim.queue, Offset: victim.res.QueueOffset}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of the flipped record: %v", err)
	}
	for _, a := range []acked{all[k-1], all[k+1]} {
		r, err := s.Read(context.Background(), ReadRequest{Topic: a.topic, QueueID: a.queue, Offset: a.res.QueueOffset, MaxMessages: 1})
		if err != nil || r.Status != ReadFound || r.Entries[0].CommitLogOffset != a.res.CommitLogOffset {
			t.Fatalf("neighbour %+v: %+v, %v", a.res, r.Status, err)
		}
	}
	last := all[len(all)-1].res
	if r := mustAppend(t, s, encode(t, "a", 0, "after", nil)); r[0].CommitLogOffset != last.CommitLogOffset+int64(last.Size)+frameTrailerBytes {
		t.Fatalf("append after the corrupt record landed at %d", r[0].CommitLogOffset)
	}
}

// A flipped byte in a sealed segment (covered by its index) is never served: reads fail
// with ErrCorrupt and the segment iterator stops there.
func TestCorruptSealedRecordIsNeverServed(t *testing.T) {
	dir := t.TempDir()
	cfg, all := fillStore(t, dir, 50, true)
	victim := all[3]
	path := segmentName(filepath.Join(dir, commitLogDir), 0)
	flipByte(t, path, victim.res.CommitLogOffset+int64(victim.res.Size)-3)
	s := openStore(t, cfg)
	if _, err := s.ReadAt(victim.res.CommitLogOffset, victim.res.Size); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ReadAt of flipped record: %v", err)
	}
	if _, err := s.Read(context.Background(), ReadRequest{Topic: victim.topic, QueueID: victim.queue, Offset: victim.res.QueueOffset}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of flipped record: %v", err)
	}
	it, err := s.OpenSegment(0)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for {
		_, _, err := it.Next()
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || n != 3 {
				t.Fatalf("iterator stopped after %d records with %v", n, err)
			}
			break
		}
		n++
	}
}

// TestOpenContextStopsRecovery checks that a cancelled open gives up, closes what it opened,
// and leaves the directory to a later open that recovers everything.
func TestOpenContextStopsRecovery(t *testing.T) {
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
	s := openStore(t, cfg)
	verifyExactly(t, s, want)
}

// TestCrashThenCleanRestartKeepsQueues: entries a crash recovery replayed from the log are
// not yet in any page-map fragment, so the next checkpoint must still cover them. (They were
// marked durable, and a clean close after a crash recovery lost every unfinished page.)
func TestCrashThenCleanRestartKeepsQueues(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 64 << 10, MaxMessageBytes: 8 << 10, CheckpointInterval: time.Hour}
	s := openStore(t, cfg)
	for i := 0; i < 300; i++ {
		mustAppend(t, s, encode(t, "orders", int32(i%3), body(i), nil))
	}
	s.crash()
	for round := 0; round < 2; round++ {
		s = openStore(t, cfg)
		for q := int32(0); q < 3; q++ {
			if got := len(readAll(t, s, "orders", q)); got != 100 {
				t.Fatalf("restart %d: queue %d holds %d messages, want 100", round, q, got)
			}
		}
		s.Close()
	}
}
