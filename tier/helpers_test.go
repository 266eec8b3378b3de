package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/tier/objstore"
)

// testSegment is a synthetic sealed segment.
type testSegment struct {
	base, end int64
	recs      [][]byte
}

func (s *testSegment) Base() int64 { return s.base }
func (s *testSegment) End() int64  { return s.end }
func (s *testSegment) Records(ctx context.Context, fn func([]byte) error) error {
	for _, r := range s.recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// logGen writes records like a commit log: consecutive positions, per-queue offsets.
type logGen struct {
	pos     int64
	nowMs   int64
	offsets map[queueKey]int64
	want    map[queueKey][][]byte
	rng     *rand.Rand
	seq     int
}

func newLogGen() *logGen {
	return &logGen{nowMs: 1_700_000_000_000, offsets: map[queueKey]int64{}, want: map[queueKey][][]byte{},
		rng: rand.New(rand.NewPCG(1, 2))}
}

// segment makes a segment of n records spread over queues, bodies of bodyBytes.
func (g *logGen) segment(tb testing.TB, n int, queues []queueKey, bodyBytes int) *testSegment {
	tb.Helper()
	s := &testSegment{base: g.pos}
	g.pos += 64 // a segment header, as in the store
	body := make([]byte, bodyBytes)
	for i := range n {
		k := queues[g.rng.IntN(len(queues))]
		for j := range body {
			body[j] = byte('a' + (g.seq+j)%26)
		}
		g.seq++
		m := message.Message{Topic: k.topic, QueueID: k.queue, QueueOffset: g.offsets[k],
			CommitLogOffset: g.pos, BornTimestamp: g.nowMs, StoreTimestamp: g.nowMs, Body: body,
			Properties: map[string]string{
				message.PropertyTags:    fmt.Sprintf("tag%d", i%3),
				message.PropertyKeys:    fmt.Sprintf("key-%d order-%d", g.seq, g.seq%7),
				message.PropertyUniqKey: fmt.Sprintf("UNIQ%08d", g.seq),
			}}
		rec, err := m.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		g.offsets[k]++
		g.pos += int64(len(rec)) + 8 // frame trailer, as in the store
		g.nowMs++
		s.recs = append(s.recs, rec)
		g.want[k] = append(g.want[k], rec)
	}
	s.end = g.pos
	return s
}

func queueKeys(topics, queues int) []queueKey {
	var ks []queueKey
	for t := range topics {
		for q := range queues {
			ks = append(ks, queueKey{fmt.Sprintf("Topic%d", t), int32(q)})
		}
	}
	return ks
}

// flakyBucket fails every write and read while down is set.
type flakyBucket struct {
	objstore.Bucket
	down     atomic.Bool
	failures atomic.Int64
}

var errBucketDown = errors.New("bucket unreachable (test outage)")

func (b *flakyBucket) check() error {
	if b.down.Load() {
		b.failures.Add(1)
		return errBucketDown
	}
	return nil
}

func (b *flakyBucket) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := b.check(); err != nil {
		return err
	}
	return b.Bucket.Put(ctx, name, r, size)
}

func (b *flakyBucket) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	return b.Bucket.GetRange(ctx, name, off, n)
}

// openTier opens a tier; unless it is read-only, it leads at once (a new term of the
// in-memory election, or of an etcd election for MetaPointers).
func openTier(tb testing.TB, cfg Config) *Tier {
	tb.Helper()
	tr := openFollower(tb, cfg)
	if !cfg.ReadOnly {
		lead(tb, tr, cfg.Pointers)
	}
	return tr
}

// openFollower opens a tier without leading: it reads, and writes nothing until Lead.
func openFollower(tb testing.TB, cfg Config) *Tier {
	tb.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = "test-cluster/group-a"
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 5 * time.Millisecond
		cfg.RetryMax = 50 * time.Millisecond
	}
	tr, err := Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tr.Close() })
	return tr
}

var (
	testElectionsMu sync.Mutex
	testElections   = map[string]*meta.Election{}
)

// lead makes tr its group's writer in a new term and returns the term.
func lead(tb testing.TB, tr *Tier, ptrs PointerStore) meta.Leadership {
	tb.Helper()
	var l meta.Leadership
	switch p := ptrs.(type) {
	case *MemoryPointers:
		l = p.Elect()
	case MetaPointers:
		// The group's previous test writer stops campaigning, as a closed broker would.
		k := fmt.Sprintf("%p/%s", p.Client, p.Group)
		testElectionsMu.Lock()
		if old := testElections[k]; old != nil {
			old.Close()
		}
		el, err := p.Client.NewElection(waitCtx(tb), p.Group, 0)
		if err == nil {
			testElections[k] = el
		}
		testElectionsMu.Unlock()
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { el.Close() })
		if l, err = el.Campaign(waitCtx(tb), "test-writer"); err != nil {
			tb.Fatal(err)
		}
	default:
		tb.Fatalf("no election for pointer store %T", ptrs)
	}
	if _, err := tr.Lead(waitCtx(tb), l); err != nil {
		tb.Fatal(err)
	}
	return l
}

func waitCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// readQueue reads a whole queue from the tier page by page.
func readQueue(tb testing.TB, tr *Tier, k queueKey, pageCount int) [][]byte {
	tb.Helper()
	var out [][]byte
	off := int64(0)
	for {
		res, err := tr.Read(waitCtx(tb), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: off, MaxCount: pageCount})
		if errors.Is(err, ErrNotInTier) {
			return out
		}
		if err != nil {
			tb.Fatalf("read %v at %d: %v", k, off, err)
		}
		if res.NextOffset <= off {
			tb.Fatalf("read %v at %d: no progress (next %d)", k, off, res.NextOffset)
		}
		checkEntries(tb, res)
		out = append(out, res.Records...)
		off = res.NextOffset
	}
}

// checkEntries asserts that a read's entries describe its records, as their headers say.
func checkEntries(tb testing.TB, res ReadResult) {
	tb.Helper()
	if len(res.Entries) != len(res.Records) {
		tb.Fatalf("read returned %d records and %d entries", len(res.Records), len(res.Entries))
	}
	for i, rec := range res.Records {
		h, err := message.ParseRecordHeader(rec)
		want := message.RecordEntry{TotalSize: h.TotalSize, QueueOffset: h.QueueOffset, CommitLogOffset: h.CommitLogOffset, StoreTimestamp: h.StoreTimestamp}
		if err != nil || res.Entries[i] != want || int(h.TotalSize) != len(rec) {
			tb.Fatalf("record %d of %d bytes: entry %+v, header %+v (%v)", i, len(rec), res.Entries[i], want, err)
		}
	}
}
