package broker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// syncBuffer collects a broker's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), substr)
}

func startEtcd(t testing.TB, dir string, opts ...etcdembed.Option) *etcdembed.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := etcdembed.Start(ctx, dir, append([]etcdembed.Option{etcdembed.WithUnsafeNoFsync()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func newMetaClient(t testing.TB, endpoints []string, reqTimeout time.Duration) *meta.Client {
	t.Helper()
	mc, err := meta.New(context.Background(), meta.Config{Endpoints: endpoints, Cluster: "test", RequestTimeout: reqTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	return mc
}

// memberConfig is a member of broker group "g" with tiny, fast-sealing segments.
func memberConfig(t testing.TB, id int64, bucket objstore.Bucket, log *syncBuffer) Config {
	return Config{
		ClusterName: "test", BrokerName: "g", BrokerID: id, DataDir: t.TempDir(),
		NameServerListen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", HTTPListen: "-",
		MaxMessageBytes: 16 << 10,
		Store:           store.Config{SegmentBytes: 64 << 10, SealAfter: 100 * time.Millisecond, MaxMessageBytes: 32 << 10},
		Bucket:          bucket,
		Tier:            tier.Config{BlockBytes: 8 << 10, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond},
		Logger:          slog.New(slog.NewTextHandler(log, nil)),
	}
}

func startMember(t testing.TB, cfg Config, mc *meta.Client) *testEnv {
	t.Helper()
	b, err := New(cfg, mc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return &testEnv{b: b, ns: dial(t, b.NameServerAddr(), nil), bk: dial(t, b.BrokerAddr(), nil)}
}

// sendBodies sends n messages numbered from..from+n-1 to queue 0 of topic.
func sendBodies(t *testing.T, env *testEnv, topic string, from, n int) {
	t.Helper()
	pad := strings.Repeat("z", 300)
	for i := from; i < from+n; i++ {
		wantCode(t, send(t, env, topic, 0, "", fmt.Sprintf("m%05d-%s", i, pad)), remoting.RespSuccess)
	}
}

// tierHolds reports whether env's tier holds queue 0 of topic up to offset last.
func tierHolds(env *testEnv, topic string, last int64) bool {
	_, l, ok := env.b.Tier().QueueRange(topic, 0)
	return ok && l == last
}

// caughtUp reports whether no sealed segment waits for offload on env.
func caughtUp(env *testEnv) bool {
	return len(env.b.Store().SealedSegments()) == 0 && env.b.Tier().OffloadWatermark() == env.b.Store().MinCommitLogOffset()
}

// Two brokers of one group share etcd and a filesystem bucket: only the elected one
// offloads; when its session is lost (lease revoked), the other takes over offload.
func TestOnlyTheElectedMemberOffloads(t *testing.T) {
	srv := startEtcd(t, t.TempDir())
	bucket, err := objstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logA, logB syncBuffer
	a := startMember(t, memberConfig(t, 0, bucket, &logA), newMetaClient(t, srv.Endpoints(), 0))
	createTopic(t, a, "T", 1)
	const n = 300
	sendBodies(t, a, "T", 0, n)
	waitFor(t, "the first member offloads everything", func() bool { return tierHolds(a, "T", n-1) && caughtUp(a) })
	epochA := a.b.Tier().Epoch()
	if epochA == 0 || a.b.TierStatus().WriterEpoch != epochA || a.b.Tier().Pointer().Epoch != epochA {
		t.Fatalf("first member: writer epoch %d, status %+v", epochA, a.b.TierStatus())
	}

	// A second member of the group, on an empty disk (its log continues at the watermark,
	// as a replica's would), stands by: its sealed segments stay local, nothing is written.
	b := startMember(t, memberConfig(t, 1, bucket, &logB), newMetaClient(t, srv.Endpoints(), 0))
	if got := b.b.Store().MinCommitLogOffset(); got != a.b.Tier().OffloadWatermark() {
		t.Fatalf("standby's log starts at %d, want the watermark %d", got, a.b.Tier().OffloadWatermark())
	}
	const m = 200
	sendBodies(t, b, "T", n, m)
	waitFor(t, "the standby seals segments", func() bool { return len(b.b.Store().SealedSegments()) > 1 })
	if puts, _ := b.b.Tier().BucketRequests(); puts != 0 || b.b.Tier().Epoch() != 0 || b.b.TierStatus().WriterEpoch != 0 {
		t.Fatalf("standby wrote %d objects (writer epoch %d)", puts, b.b.Tier().Epoch())
	}
	if p := a.b.Tier().Pointer(); p.Epoch != epochA || p.OffloadWatermark != b.b.Store().MinCommitLogOffset() {
		t.Fatalf("pointer %+v moved while the standby held segments", p)
	}
	if r := b.b.offloadStallRemark(); !strings.Contains(r, "not the elected master of group g (master: g-0)") {
		t.Fatalf("standby's backpressure remark %q does not name the master", r)
	}

	// The master's session is lost: the standby wins, reloads and offloads its segments.
	putsA, _ := a.b.Tier().BucketRequests()
	ctx := context.Background()
	if _, err := a.b.mc.Etcd().Revoke(ctx, a.b.election.Lease()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standby offloads", func() bool { return b.b.Tier().Epoch() > epochA && tierHolds(b, "T", n+m-1) })
	if a.b.Tier().Epoch() != 0 {
		t.Fatalf("the deposed master still writes (epoch %d)", a.b.Tier().Epoch())
	}
	if p := b.b.Tier().Pointer(); p.Epoch != b.b.Tier().Epoch() {
		t.Fatalf("pointer %+v not written by the new master (epoch %d)", p, b.b.Tier().Epoch())
	}
	if puts, _ := a.b.Tier().BucketRequests(); puts != putsA {
		t.Fatalf("the deposed master made %d PUTs after losing its session", puts-putsA)
	}
	waitFor(t, "routes name the new master", func() bool { return a.b.meta.view.Snapshot().Masters["g"] == "g-1" })
	if c := logA.count("no longer the master"); c != 1 {
		t.Fatalf("the deposed master logged its loss %d times, want once:\n%s", c, logA.b.String())
	}

	// Everything either member offloaded is one log in the bucket.
	ro, err := tier.Open(ctx, tier.Config{Bucket: bucket, Pointers: tier.MetaPointers{Client: b.b.mc, Group: "g"}, Prefix: "test/g", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	for off := int64(0); off < n+m; {
		res, err := ro.Read(ctx, tier.ReadRequest{Topic: "T", QueueID: 0, Offset: off, MaxCount: 64})
		if err != nil {
			t.Fatalf("read at %d of %d: %v", off, n+m, err)
		}
		for _, rec := range res.Records {
			mm, _, err := message.Decode(rec)
			if err != nil {
				t.Fatal(err)
			}
			if mm.QueueOffset != off || !strings.HasPrefix(string(mm.Body), fmt.Sprintf("m%05d-", off)) {
				t.Fatalf("offset %d holds message %d %.6q", off, mm.QueueOffset, mm.Body)
			}
			off++
		}
	}
}

// While etcd is out of reach, the refused sends blame etcd, not the bucket; writes resume
// once etcd answers again.
func TestHighWatermarkRemarkBlamesEtcd(t *testing.T) {
	dir := t.TempDir()
	srv := startEtcd(t, dir)
	addr := srv.ClientAddr()
	bucket, err := objstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	cfg := memberConfig(t, 0, bucket, &log)
	cfg.MaxLocalBytes = 256 << 10
	cfg.ElectionTTL = 2 * time.Second
	mc := newMetaClient(t, srv.Endpoints(), time.Second)
	env := startMember(t, cfg, mc)
	createTopic(t, env, "Busy", 1)
	sendBodies(t, env, "Busy", 0, 10)
	waitFor(t, "offload works", func() bool { return tierHolds(env, "Busy", 9) })

	srv.Close()
	var remark string
	for i := 0; ; i++ {
		resp := send(t, env, "Busy", 0, "", fmt.Sprintf("m%05d-%s", i, strings.Repeat("y", 400)))
		if resp.Code == remoting.RespServiceNotAvailable && strings.Contains(resp.Remark, "etcd unreachable") {
			remark = resp.Remark
			break
		}
		if resp.Code != remoting.RespSuccess && resp.Code != remoting.RespServiceNotAvailable {
			t.Fatalf("send %d: code %d %q", i, resp.Code, resp.Remark)
		}
		if i > 20000 {
			t.Fatalf("sends never refused with etcd down; last %d %q", resp.Code, resp.Remark)
		}
		if resp.Code == remoting.RespServiceNotAvailable {
			time.Sleep(20 * time.Millisecond) // refused, the cause not recorded yet
		}
	}
	if strings.Contains(remark, "bucket") || !strings.Contains(remark, "high watermark") || !strings.Contains(remark, "writes resume once etcd answers") {
		t.Fatalf("remark with etcd down: %q", remark)
	}
	if st := env.b.Tier().OffloadStall(); st.Cause != tier.StallPointer {
		t.Fatalf("tier stall %+v, want the tier pointer", st)
	}

	startEtcd(t, dir, etcdembed.WithClientAddr(addr))
	waitFor(t, "writes accepted again", func() bool {
		return send(t, env, "Busy", 0, "", "again").Code == remoting.RespSuccess
	})
	waitFor(t, "offload caught up", func() bool { return env.b.Tier().Epoch() != 0 && caughtUp(env) })
	// Stop the broker and its etcd client while etcd still runs: the restarted server is
	// closed first by the test's cleanups.
	if err := env.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	mc.Close()
}
