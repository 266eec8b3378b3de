package replica

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

var topics = []string{"orders", "audit"}

func testCfg(dir string) store.Config {
	return store.Config{Dir: dir, SegmentBytes: 128 << 10, MaxMessageBytes: 16 << 10, KeyIndexFileKeys: 512}
}

func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(testCfg(dir))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func record(t testing.TB, i int) []byte {
	t.Helper()
	m := &message.Message{Topic: topics[i%2], QueueID: int32(i % 3), BornTimestamp: 1700000000000,
		BornHost: netip.MustParseAddrPort("10.0.0.1:5555"), StoreHost: netip.MustParseAddrPort("10.0.0.2:10911"),
		Body:       []byte(fmt.Sprintf("message-%05d-%s", i, strings.Repeat("x", i%300))),
		Properties: map[string]string{"KEYS": fmt.Sprintf("k%d", i)}}
	b, err := m.AppendEncoded(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendN appends records from..from+n-1 in batches of 10 and returns the log end.
func appendN(t testing.TB, s *store.Store, from, n int) int64 {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i += 10 {
		var recs [][]byte
		for j := i; j < min(i+10, from+n); j++ {
			recs = append(recs, record(t, j))
		}
		if _, err := s.Append(ctx, recs...); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	return s.EndOffset()
}

type view struct {
	End    int64
	Queues map[store.QueueID][]string
	Keys   map[string][]int64
}

// viewOf reads every queue of s in full and looks up keys k0..k<keys>.
func viewOf(t testing.TB, s *store.Store, keys int) view {
	t.Helper()
	v := view{End: s.EndOffset(), Queues: map[store.QueueID][]string{}, Keys: map[string][]int64{}}
	for _, q := range s.Queues() {
		off := s.MinOffset(q.Topic, q.QueueID)
		for {
			r, err := s.Read(context.Background(), store.ReadRequest{Topic: q.Topic, QueueID: q.QueueID, Offset: off, MaxMessages: 500, MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != store.ReadFound {
				break
			}
			ms, err := message.DecodeAll(r.Records)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				v.Queues[q] = append(v.Queues[q], fmt.Sprintf("%d@%d:%s", m.QueueOffset, m.CommitLogOffset, m.Body))
			}
			off = r.NextOffset
		}
	}
	for i := 0; i < keys; i++ {
		for _, topic := range topics {
			hits, err := s.LookupKey(topic, fmt.Sprintf("k%d", i), 0, 1<<62, 8)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hits {
				v.Keys[fmt.Sprintf("%s/k%d", topic, i)] = append(v.Keys[fmt.Sprintf("%s/k%d", topic, i)], h.CommitLogOffset)
			}
		}
	}
	return v
}

func assertSame(t testing.TB, what string, got, want view) {
	t.Helper()
	if got.End != want.End {
		t.Fatalf("%s: log end %d, want %d", what, got.End, want.End)
	}
	if !reflect.DeepEqual(got.Queues, want.Queues) {
		t.Fatalf("%s: queue contents differ (%d queues vs %d)", what, len(got.Queues), len(want.Queues))
	}
	if !reflect.DeepEqual(got.Keys, want.Keys) {
		t.Fatalf("%s: key lookups differ", what)
	}
}

func startServer(t testing.TB, s *store.Store, epoch int64) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerConfig{Store: s, Epoch: epoch, MaxChunk: 64 << 10})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, ln.Addr().String()
}

type running struct {
	f      *Follower
	cancel context.CancelFunc
	done   chan error
}

func runFollower(t testing.TB, s *store.Store, member, addr string, epoch int64) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{f: NewFollower(FollowerConfig{Store: s, Member: member}), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.f.Run(ctx, addr, epoch) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and checks it ended because of that.
func (r *running) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run ended with %v, want context.Canceled", err)
	}
}

func waitReplicated(t testing.TB, srv *Server, pos int64, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.WaitReplicated(ctx, pos, n); err != nil {
		t.Fatalf("wait replicated to %d: %v", pos, err)
	}
}

func TestFollowerCatchesUpAndFollows(t *testing.T) {
	master := openStore(t, t.TempDir())
	if err := master.BeginEpoch(3); err != nil {
		t.Fatal(err)
	}
	end := appendN(t, master, 0, 2000)
	if len(master.SealedSegments()) < 3 {
		t.Fatalf("want several sealed segments, have %d", len(master.SealedSegments()))
	}
	srv, addr := startServer(t, master, 3)
	fdir := t.TempDir()
	fs := openStore(t, fdir)
	r := runFollower(t, fs, "b-1", addr, 3)
	waitReplicated(t, srv, end, 1)
	if fs.EndOffset() < end {
		t.Fatalf("WaitReplicated returned with the follower at %d, before %d", fs.EndOffset(), end)
	}
	// Live appends stream as they happen.
	for i := 0; i < 20; i++ {
		end = appendN(t, master, 2000+i*10, 10)
		waitReplicated(t, srv, end, 1)
	}
	st := srv.Followers()
	if len(st) != 1 || st[0].Member != "b-1" || !st[0].Connected || st[0].Acked != end || st[0].LagBytes != 0 || st[0].LagTime != 0 {
		t.Fatalf("followers %+v, want b-1 connected at %d with no lag", st, end)
	}
	if fst := r.f.Status(); !fst.Connected || fst.End != end {
		t.Fatalf("follower status %+v", fst)
	}
	r.stop(t)
	later := appendN(t, master, 5000, 10) // the stopped follower lags behind these
	if st := srv.Followers(); st[0].Acked != end || st[0].LagBytes != later-end || st[0].LagTime <= 0 {
		t.Fatalf("followers %+v, want b-1 acked at %d, %d bytes and some time behind", st, end, later-end)
	}
	if _, err := fs.Append(context.Background(), record(t, 0)); !errors.Is(err, store.ErrFollower) {
		t.Fatalf("local append on the follower: %v, want ErrFollower", err)
	}
	fs.Close()
	fs = openStore(t, fdir)
	if err := fs.SetFollower(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	runFollower(t, fs, "b-1", addr, 3)
	waitReplicated(t, srv, later, 1)
	assertSame(t, "follower after live replication and a restart", viewOf(t, fs, 5010), viewOf(t, master, 5010))
	if !reflect.DeepEqual(fs.EpochHistory(), master.EpochHistory()) {
		t.Fatalf("follower history %v, master %v", fs.EpochHistory(), master.EpochHistory())
	}
}

// TestDeposedMasterTruncatesAndFollows: A is master in epoch 3 and replicates to B; A writes
// a tail nobody copies; B is elected in epoch 5 and writes more; A comes back as a follower of
// B, drops its tail and ends with B's log.
func TestDeposedMasterTruncatesAndFollows(t *testing.T) {
	a := openStore(t, t.TempDir())
	if err := a.BeginEpoch(3); err != nil {
		t.Fatal(err)
	}
	end := appendN(t, a, 0, 800)
	srvA, addrA := startServer(t, a, 3)
	b := openStore(t, t.TempDir())
	rb := runFollower(t, b, "b", addrA, 3)
	waitReplicated(t, srvA, end, 1)
	rb.stop(t)
	srvA.Close()
	cut := b.EndOffset()
	appendN(t, a, 5000, 500) // A's divergent tail, never replicated

	if err := b.SetFollower(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := b.BeginEpoch(5); err != nil {
		t.Fatal(err)
	}
	endB := appendN(t, b, 800, 300)
	srvB, addrB := startServer(t, b, 5)
	if err := a.SetFollower(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	ra := runFollower(t, a, "a", addrB, 5)
	waitReplicated(t, srvB, endB, 1)
	ra.stop(t)
	assertSame(t, "deposed master after following the new one", viewOf(t, a, 5500), viewOf(t, b, 5500))
	want := []store.EpochStart{{Epoch: 3, StartOffset: 16}, {Epoch: 5, StartOffset: cut}}
	if h := a.EpochHistory(); !reflect.DeepEqual(h, want) {
		t.Fatalf("history %v, want %v", h, want)
	}
	if hits, _ := a.LookupKey(topics[5000%2], "k5000", 0, 1<<62, 4); len(hits) != 0 {
		t.Fatal("a key of the dropped tail is still found")
	}
}

func TestWaitReplicated(t *testing.T) {
	master := openStore(t, t.TempDir())
	if err := master.BeginEpoch(2); err != nil {
		t.Fatal(err)
	}
	end := appendN(t, master, 0, 50)
	srv, addr := startServer(t, master, 2)
	if err := srv.WaitReplicated(context.Background(), end, 0); err != nil {
		t.Fatalf("n = 0: %v", err)
	}
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	if err := srv.WaitReplicated(short(), end, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no follower: %v, want deadline exceeded", err)
	}
	fs := openStore(t, t.TempDir())
	runFollower(t, fs, "f", addr, 2)
	waitReplicated(t, srv, end, 1)
	if fs.EndOffset() < end {
		t.Fatalf("returned before the follower held %d (it is at %d)", end, fs.EndOffset())
	}
	if err := srv.WaitReplicated(short(), end+1, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("position no one has: %v, want deadline exceeded", err)
	}
	if err := srv.WaitReplicated(short(), end, 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("two followers of one: %v, want deadline exceeded", err)
	}
	if err := srv.WaitReplicatedAmong(short(), end, 1, func(m string) bool { return m != "f" }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the only follower is outside the set: %v, want deadline exceeded", err)
	}
	if err := srv.WaitReplicatedAmong(short(), end, 1, func(m string) bool { return m == "f" }); err != nil {
		t.Fatalf("the follower in the set: %v", err)
	}
	got := make(chan error, 1)
	next := end + 1
	go func() { got <- srv.WaitReplicated(context.Background(), next, 1) }()
	end = appendN(t, master, 50, 1)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if fs.EndOffset() < end {
		t.Fatalf("returned before the follower held the append (it is at %d, want %d)", fs.EndOffset(), end)
	}
	srv.Close()
	if err := srv.WaitReplicated(context.Background(), end+1, 1); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("closed server: %v", err)
	}
}

func TestStaleMasterRefused(t *testing.T) {
	master := openStore(t, t.TempDir())
	if err := master.BeginEpoch(5); err != nil {
		t.Fatal(err)
	}
	appendN(t, master, 0, 20)
	_, addr := startServer(t, master, 5)
	fs := openStore(t, t.TempDir())
	f := NewFollower(FollowerConfig{Store: fs, Member: "f"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The follower knows of epoch 7: the epoch-5 master is deposed.
	if err := f.Run(ctx, addr, 7); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("following an older master: %v, want ErrStaleEpoch", err)
	}
	if err := f.Run(ctx, addr, 6); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("told an older epoch than seen: %v, want ErrStaleEpoch", err)
	}
	if fs.EndOffset() != 16 {
		t.Fatalf("the follower stored bytes from a refused master: end %d", fs.EndOffset())
	}

	// A master that welcomes at epoch 7 and then sends a frame of epoch 6 is cut off there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fr := &frameReader{r: c, max: DefaultMaxFrame}
		m, err := fr.next()
		if err != nil {
			return
		}
		h := m.(*Hello)
		c.Write((&Welcome{Epoch: 7, TruncateTo: h.End, MasterEnd: h.End}).appendTo(nil))
		b, _ := master.ReadLog(h.End, 1<<20)
		d := Data{Epoch: 6, DataEpoch: 5, Pos: h.End, Bytes: b}
		c.Write(append(d.appendHead(nil), b...))
		fr.next() // until the follower hangs up
	}()
	if err := f.Run(ctx, ln.Addr().String(), 7); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("a frame of an older epoch: %v, want ErrStaleEpoch", err)
	}
	if fs.EndOffset() != 16 {
		t.Fatalf("the follower stored a stale frame: end %d", fs.EndOffset())
	}
}

// TestFollowerReconnects: the master's server goes away mid-stream and comes back on the
// same address; the follower resumes from its own end.
func TestFollowerReconnects(t *testing.T) {
	master := openStore(t, t.TempDir())
	if err := master.BeginEpoch(4); err != nil {
		t.Fatal(err)
	}
	end := appendN(t, master, 0, 300)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := NewServer(ServerConfig{Store: master, Epoch: 4})
	go srv.Serve(ln)
	fs := openStore(t, t.TempDir())
	runFollower(t, fs, "f", addr, 4)
	waitReplicated(t, srv, end, 1)
	srv.Close()
	end = appendN(t, master, 300, 300)
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := NewServer(ServerConfig{Store: master, Epoch: 4})
	go srv2.Serve(ln)
	defer srv2.Close()
	waitReplicated(t, srv2, end, 1)
	assertSame(t, "follower after reconnecting", viewOf(t, fs, 600), viewOf(t, master, 600))
}

// TestFollowerRestartsAtMastersOldestSegment: the master keeps only segments from 1 MiB on
// (the older ones are offloaded and deleted), so a follower with an older, shorter log
// discards it and copies from there.
func TestFollowerRestartsAtMastersOldestSegment(t *testing.T) {
	mcfg := testCfg(t.TempDir())
	mcfg.BaseOffset = 1 << 20
	master, err := store.Open(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := master.BeginEpoch(6); err != nil {
		t.Fatal(err)
	}
	end := appendN(t, master, 0, 400)
	srv, addr := startServer(t, master, 6)
	fs := openStore(t, t.TempDir())
	appendN(t, fs, 1000, 30) // an old local log the master has no trace of
	runFollower(t, fs, "f", addr, 6)
	waitReplicated(t, srv, end, 1)
	if got := fs.MinCommitLogOffset(); got != 1<<20 {
		t.Fatalf("follower's log starts at %d, want the master's oldest segment %d", got, 1<<20)
	}
	assertSame(t, "follower restarted at the master's oldest segment", viewOf(t, fs, 1030), viewOf(t, master, 1030))
}

// waitVisible waits until every queue of want reads on s up to the max offset it has in want.
func waitVisible(t testing.TB, s *store.Store, want *store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, q := range want.Queues() {
		if max := want.MaxOffset(q.Topic, q.QueueID); max > 0 {
			if _, err := s.WaitForAppend(ctx, q.Topic, q.QueueID, max-1); err != nil {
				t.Fatalf("wait for %s/%d to read up to %d: %v", q.Topic, q.QueueID, max, err)
			}
		}
	}
}

// maxOffsets is every queue's max offset on s.
func maxOffsets(s *store.Store) map[store.QueueID]int64 {
	out := map[store.QueueID]int64{}
	for _, q := range s.Queues() {
		out[q] = s.MaxOffset(q.Topic, q.QueueID)
	}
	return out
}

// A follower serves queue reads only of records every follower the master waits for holds
// (the watermark): a record one in-sync member lacks is stored on the follower but not read.
func TestFollowerReadsUpToWatermark(t *testing.T) {
	master := openStore(t, t.TempDir())
	if err := master.BeginEpoch(4); err != nil {
		t.Fatal(err)
	}
	end := appendN(t, master, 0, 30)
	srv, addr := startServer(t, master, 4)
	srv.SetInSync([]string{"f1", "f2"})
	f1, f2 := openStore(t, t.TempDir()), openStore(t, t.TempDir())
	f1.SetReadLimit(0) // as a broker that is not the master does
	f2.SetReadLimit(0)
	runFollower(t, f1, "f1", addr, 4)
	waitReplicated(t, srv, end, 1)
	if f1.EndOffset() != end || srv.Committed() != 0 {
		t.Fatalf("f1 holds %d of %d, committed %d; want all, and nothing committed while f2 is away", f1.EndOffset(), end, srv.Committed())
	}
	for q, max := range maxOffsets(f1) {
		if max != 0 {
			t.Fatalf("f1 reads %s/%d up to %d before f2 holds anything", q.Topic, q.QueueID, max)
		}
	}

	r2 := runFollower(t, f2, "f2", addr, 4)
	waitVisible(t, f1, master)
	assertSame(t, "f1 once both hold the log", viewOf(t, f1, 30), viewOf(t, master, 30))
	waitVisible(t, f2, master)
	confirmed := maxOffsets(master)

	// f2 stops: what the master appends now reaches f1 but is not confirmed.
	r2.stop(t)
	later := appendN(t, master, 30, 30)
	waitReplicated(t, srv, later, 1)
	if f1.EndOffset() != later || srv.Committed() != end {
		t.Fatalf("f1 holds %d of %d, committed %d; want all, committed %d", f1.EndOffset(), later, srv.Committed(), end)
	}
	if got := maxOffsets(f1); !reflect.DeepEqual(got, confirmed) {
		t.Fatalf("f1 reads up to %v, want the confirmed %v", got, confirmed)
	}
	if got := maxOffsets(master); reflect.DeepEqual(got, confirmed) {
		t.Fatal("the master does not read its unconfirmed records")
	}
	r, err := f1.Read(context.Background(), store.ReadRequest{Topic: topics[0], QueueID: 0, Offset: confirmed[store.QueueID{Topic: topics[0], QueueID: 0}]})
	if err != nil || r.Status != store.ReadNoNewMessage {
		t.Fatalf("read past the watermark on f1: %v, %v; want no new message", r.Status, err)
	}

	// f2 leaves the set: f1's ack alone confirms the rest.
	srv.SetInSync([]string{"f1"})
	waitVisible(t, f1, master)
	assertSame(t, "f1 once the set is f1 alone", viewOf(t, f1, 60), viewOf(t, master, 60))
	if c := srv.Committed(); c != later {
		t.Fatalf("committed %d, want %d", c, later)
	}
}
