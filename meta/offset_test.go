package meta

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stratamq/strata/meta/etcdembed"
)

func isErr(err, target error) bool { return errors.Is(err, target) }

func newStore(t testing.TB, c *Client, interval time.Duration) *OffsetStore {
	t.Helper()
	s, err := c.NewOffsetStore(testCtx(t), OffsetStoreConfig{BrokerGroup: "g1", FlushInterval: interval, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func TestOffsetStoreBatchesAndReloads(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	s := newStore(t, c, time.Hour) // flush only when told
	const queues = 300             // more than one 128-op transaction
	for q := range queues {
		s.Commit(QueueKey{"cg", "orders", int32(q)}, int64(q*10))
	}
	before, _ := c.Etcd().Get(ctx, "x")
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := c.Etcd().Get(ctx, "x")
	if txns := after.Header.Revision - before.Header.Revision; txns != 3 {
		t.Errorf("%d queues took %d etcd revisions, want 3 transactions", queues, txns)
	}
	if s.Pending() != 0 {
		t.Fatalf("pending %d after flush", s.Pending())
	}
	// A lower commit sets the offset, as a pull consumer's seek back does in RocketMQ.
	s.Commit(QueueKey{"cg", "orders", 5}, 1)
	if o, _ := s.Get(QueueKey{"cg", "orders", 5}); o != 1 {
		t.Fatalf("offset after a lower commit %d, want 1", o)
	}
	s.Commit(QueueKey{"cg", "orders", 6}, 3)
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s2 := newStore(t, c, time.Hour)
	got := s2.Offsets()
	if len(got) != queues {
		t.Fatalf("reloaded %d offsets, want %d", len(got), queues)
	}
	for q := range queues {
		want := int64(q * 10)
		switch q {
		case 5:
			want = 1
		case 6:
			want = 3
		}
		if got[QueueKey{"cg", "orders", int32(q)}] != want {
			t.Fatalf("queue %d: %d, want %d", q, got[QueueKey{"cg", "orders", int32(q)}], want)
		}
	}
}

func TestOffsetStoreResetMovesBackwardsAndWins(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	s := newStore(t, c, time.Hour)
	q := QueueKey{"cg", "orders", 0}
	s.Commit(q, 100)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(ctx, q, 10); err != nil {
		t.Fatal(err)
	}
	if o, _ := s.Get(q); o != 10 {
		t.Fatalf("after reset %d", o)
	}
	if o, err := c.GetOffset(ctx, "g1", q); err != nil || o != 10 {
		t.Fatalf("stored after reset %d %v", o, err)
	}
	// An outside reset wins over a stale buffered commit of the same generation.
	s.Commit(q, 20)
	if err := c.ResetOffset(ctx, "g1", q, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if o, _ := c.GetOffset(ctx, "g1", q); o != 5 {
		t.Fatalf("stored %d, want the reset's 5", o)
	}
	if o, _ := s.Get(q); o != 5 {
		t.Fatalf("store kept %d, want to adopt the reset's 5", o)
	}
	// Within one gen the newest commit wins, even when another writer stored a higher one.
	other := &OffsetStore{c: c, cfg: OffsetStoreConfig{BrokerGroup: "g1"}, prefix: c.key(dirOffsets, "g1/"), entries: map[QueueKey]*offsetEntry{}}
	if err := other.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	other.Commit(q, 500)
	if err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Commit(q, 300)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if o, _ := c.GetOffset(ctx, "g1", q); o != 300 {
		t.Fatalf("stored %d, want the newest commit 300", o)
	}
}

func TestOffsetStoreForgetsDeletedTopic(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	s := newStore(t, c, time.Hour)
	for _, k := range []QueueKey{{"cg", "orders", 0}, {"cg", "orders", 1}, {"other", "orders", 0}, {"cg", "audit", 0}} {
		s.Commit(k, 7)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(QueueKey{"cg", "orders", 1}); ok {
		t.Fatal("forgotten offset still in memory")
	}
	if _, err := c.GetOffset(ctx, "g1", QueueKey{"other", "orders", 0}); !isErr(err, ErrNotFound) {
		t.Fatalf("forgotten offset still in etcd: %v", err)
	}
	if o, err := c.GetOffset(ctx, "g1", QueueKey{"cg", "audit", 0}); err != nil || o != 7 {
		t.Fatalf("offset of another topic: %d %v, want 7", o, err)
	}
}

func TestOffsetStoreKeepsCommitsThroughOutage(t *testing.T) {
	dir := t.TempDir()
	srv, err := etcdembed.Start(testCtx(t), dir, etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.ClientAddr()
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	s := newStore(t, c, 100*time.Millisecond)
	s.Commit(QueueKey{"cg", "t", 0}, 1)
	eventually(t, 10*time.Second, "first commit stored", func() bool { return s.Pending() == 0 })

	srv.Close()
	for q := range 200 {
		s.Commit(QueueKey{"cg", "t", int32(q)}, 1000+int64(q))
	}
	eventually(t, 20*time.Second, "degraded while etcd is down", func() bool { return !c.Healthy() })
	if s.Pending() != 200 {
		t.Fatalf("pending %d, want 200 kept during the outage", s.Pending())
	}

	srv2, err := etcdembed.Start(ctx, dir, etcdembed.WithUnsafeNoFsync(), etcdembed.WithClientAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv2.Close() })
	eventually(t, 20*time.Second, "commits stored and healthy after etcd returns", func() bool {
		return s.Pending() == 0 && c.Healthy()
	})
	for q := range 200 {
		if o, err := c.GetOffset(ctx, "g1", QueueKey{"cg", "t", int32(q)}); err != nil || o != 1000+int64(q) {
			t.Fatalf("queue %d: %d %v", q, o, err)
		}
	}
}

// BenchmarkOffsetCommitBatched measures committed offsets per second when 10,000 queues each
// advance and are flushed together (one etcd transaction per 128 queues).
func BenchmarkOffsetCommitBatched(b *testing.B) {
	srv := startEtcd(b)
	c := newTestClient(b, srv.Endpoints())
	s := newStore(b, c, time.Hour)
	ctx := context.Background()
	const queues = 10_000
	b.ResetTimer()
	for i := range b.N {
		for q := range queues {
			s.Commit(QueueKey{"cg", fmt.Sprintf("t%d", q/100), int32(q % 100)}, int64(i+1))
		}
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(queues*b.N)/b.Elapsed().Seconds(), "offsets/s")
}

// BenchmarkOffsetCommitUnbatched is the baseline: one etcd put per offset.
func BenchmarkOffsetCommitUnbatched(b *testing.B) {
	srv := startEtcd(b)
	c := newTestClient(b, srv.Endpoints())
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Etcd().Put(ctx, c.key(dirOffsets, "g1/cg/t/", fmt.Sprint(i%10_000)), fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "offsets/s")
}

// TestOffsetStoreRefreshAdoptsOtherMembersCommits: two members of a broker group each hold
// an OffsetStore; the master's commits reach the other one's answers once it refreshes (as
// a promoted member does), while its own unwritten commits stay, and so does a flush of them
// afterwards.
func TestOffsetStoreRefreshAdoptsOtherMembersCommits(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	master, standby := newStore(t, c, time.Hour), newStore(t, c, time.Hour)
	seen, gone, own := QueueKey{"cg", "orders", 0}, QueueKey{"cg", "orders", 1}, QueueKey{"cg", "audit", 0}
	master.Commit(seen, 40)
	master.Commit(gone, 7)
	if err := master.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := standby.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	master.Commit(seen, 90)
	if err := master.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := master.ForgetGroup(ctx, "cg"); err != nil {
		t.Fatal(err)
	}
	master.Commit(seen, 120)
	if err := master.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	standby.Commit(own, 5) // not flushed yet
	if o, _ := standby.Get(seen); o != 40 {
		t.Fatalf("before the refresh the standby answers %d, want its stale 40", o)
	}
	if err := standby.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if o, ok := standby.Get(seen); o != 120 || !ok {
		t.Fatalf("refreshed: %d %v, want the master's 120", o, ok)
	}
	if _, ok := standby.Get(gone); ok {
		t.Fatal("an offset deleted in etcd survived the refresh")
	}
	if o, _ := standby.Get(own); o != 5 || standby.Pending() != 1 {
		t.Fatalf("its own unwritten commit: %d, pending %d; want 5, 1", o, standby.Pending())
	}
	if err := standby.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if o, err := c.GetOffset(ctx, "g1", own); err != nil || o != 5 {
		t.Fatalf("etcd after the standby's flush: %d, %v", o, err)
	}
}
