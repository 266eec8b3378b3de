package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// faultyBucket fails every Put while failing is set (the bucket is down).
type faultyBucket struct {
	objstore.Bucket
	failing atomic.Bool
}

func (f *faultyBucket) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if f.failing.Load() {
		return errors.New("bucket unreachable (test fault)")
	}
	return f.Bucket.Put(ctx, name, r, size)
}

// tierEnv is an etcd and a bucket that outlive brokers, so a broker can be restarted over
// a wiped data directory.
type tierEnv struct {
	mc     *meta.Client
	bucket *faultyBucket
}

func newTierEnv(t testing.TB) *tierEnv {
	t.Helper()
	mc := startMeta(t)
	return &tierEnv{mc: mc, bucket: &faultyBucket{Bucket: objstore.NewMemory()}}
}

// start runs a broker with tiny, fast-sealing segments offloaded to the env's bucket.
func (e *tierEnv) start(t *testing.T, dataDir string, mutate func(*Config)) *testEnv {
	t.Helper()
	b := e.startBroker(t, dataDir, mutate)
	return &testEnv{b: b, ns: dial(t, b.NameServerAddr(), nil), bk: dial(t, b.BrokerAddr(), nil)}
}

func (e *tierEnv) startBroker(t testing.TB, dataDir string, mutate func(*Config)) *Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := Config{
		ClusterName: "test", DataDir: dataDir,
		NameServerListen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		MaxMessageBytes: 16 << 10,
		Store:           store.Config{SegmentBytes: 64 << 10, SealAfter: 100 * time.Millisecond, MaxMessageBytes: 32 << 10},
		Bucket:          e.bucket,
		Tier:            tier.Config{BlockBytes: 8 << 10, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := New(cfg, e.mc)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type pulled struct {
	offset int64
	body   string
	tag    string
	msgID  string
}

// pullAll pulls a queue from offset until next reaches end, following nextBeginOffset.
func pullAll(t *testing.T, env *testEnv, topic string, queue int, from, end int64, sub string) []pulled {
	t.Helper()
	var out []pulled
	off := from
	for i := 0; off < end; i++ {
		if i > 10000 {
			t.Fatalf("pull did not reach %d (at %d)", end, off)
		}
		resp := invoke(t, env.bk, remoting.CodePullMessage, pullExt(topic, queue, off, sub, 0), nil)
		next, err := resp.ExtFields.Int64("nextBeginOffset")
		if err != nil {
			t.Fatalf("pull at %d: code %d %q: %v", off, resp.Code, resp.Remark, err)
		}
		switch resp.Code {
		case remoting.RespSuccess:
			msgs, err := message.DecodeAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				out = append(out, pulled{m.QueueOffset, string(m.Body), m.Properties[message.PropertyTags],
					message.OffsetMsgID(m.StoreHost, m.CommitLogOffset)})
			}
		case remoting.RespPullRetryImmediately, remoting.RespPullOffsetMoved:
		default:
			t.Fatalf("pull at %d: code %d %q", off, resp.Code, resp.Remark)
		}
		if next <= off && resp.Code != remoting.RespSuccess {
			t.Fatalf("pull at %d made no progress (code %d, next %d)", off, resp.Code, next)
		}
		off = next
	}
	return out
}

// produce sends n messages to queue 0 with tags alternating A and B; it returns the msgIds.
func produce(t *testing.T, env *testEnv, topic string, from, n int) []string {
	t.Helper()
	var ids []string
	pad := strings.Repeat("x", 400)
	for i := from; i < from+n; i++ {
		tag := "A"
		if i%2 == 1 {
			tag = "B"
		}
		resp := send(t, env, topic, 0, tag, fmt.Sprintf("m%04d-%s", i, pad))
		wantCode(t, resp, remoting.RespSuccess)
		ids = append(ids, resp.ExtFields["msgId"])
	}
	return ids
}

func checkAll(t *testing.T, got []pulled, ids []string, from int) {
	t.Helper()
	if len(got) != len(ids) {
		t.Fatalf("got %d messages, want %d", len(got), len(ids))
	}
	for i, p := range got {
		if p.offset != int64(from+i) || !strings.HasPrefix(p.body, fmt.Sprintf("m%04d-", from+i)) || p.msgID != ids[i] {
			t.Fatalf("message %d: offset %d body %.6q id %s; want offset %d id %s", i, p.offset, p.body, p.msgID, from+i, ids[i])
		}
	}
}

func TestColdReadsAfterLocalSegmentsAreGone(t *testing.T) {
	e := newTierEnv(t)
	dir := t.TempDir()
	env := e.start(t, dir, nil)
	createTopic(t, env, "Cold", 2)
	const n = 400 // ~180 KiB: several 64 KiB segments
	ids := produce(t, env, "Cold", 0, n)
	st := env.b.Store()
	waitFor(t, "every segment offloaded and deleted locally", func() bool {
		return st.MinOffset("Cold", 0) == n && env.b.Tier().OffloadWatermark() >= st.MinCommitLogOffset()
	})
	if first, last, ok := env.b.Tier().QueueRange("Cold", 0); !ok || first != 0 || last != n-1 {
		t.Fatalf("tier range %d..%d %v", first, last, ok)
	}
	checkAll(t, pullAll(t, env, "Cold", 0, 0, n, "*"), ids, 0)

	// Tag filtering on cold reads: only A (even offsets).
	as := pullAll(t, env, "Cold", 0, 0, n, "A")
	if len(as) != n/2 {
		t.Fatalf("tag A: %d messages, want %d", len(as), n/2)
	}
	for i, p := range as {
		if p.tag != "A" || p.offset != int64(2*i) {
			t.Fatalf("tag A message %d: offset %d tag %s", i, p.offset, p.tag)
		}
	}
	// A new group reads from 0 even though the local min offset is past it.
	resp := invoke(t, env.bk, remoting.CodeQueryConsumerOffset, remoting.ExtFields{"consumerGroup": "fresh", "topic": "Cold", "queueId": "0"}, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if resp.ExtFields["offset"] != "0" {
		t.Fatalf("fresh group offset %s, want 0", resp.ExtFields["offset"])
	}

	ts := env.b.TierStatus()
	if !ts.Enabled || ts.Segments < 2 || ts.Objects < ts.Segments || ts.Bytes <= 0 || ts.OffloadWatermark < st.MinCommitLogOffset() || ts.Puts == 0 {
		t.Fatalf("tier status %+v", ts)
	}

	// Restart: the queue continues after the cold offsets although no local record is left.
	ctx := context.Background()
	if err := env.b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	env = e.start(t, dir, nil)
	if got := env.b.Store().MaxOffset("Cold", 0); got != n {
		t.Fatalf("max offset after restart %d, want %d", got, n)
	}
	ids = append(ids, produce(t, env, "Cold", n, 2)...)
	checkAll(t, pullAll(t, env, "Cold", 0, 0, n+2, "*"), ids, 0)
}

func TestWipedDataDirServesFromTheBucket(t *testing.T) {
	e := newTierEnv(t)
	env := e.start(t, t.TempDir(), nil)
	createTopic(t, env, "Wipe", 1)
	const n = 300
	ids := produce(t, env, "Wipe", 0, n)
	waitFor(t, "all offloaded", func() bool { return env.b.Store().MinOffset("Wipe", 0) == n })
	wm := env.b.Tier().OffloadWatermark()
	if err := env.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	env = e.start(t, t.TempDir(), nil) // an empty disk
	st := env.b.Store()
	if st.MinCommitLogOffset() != wm || st.MaxOffset("Wipe", 0) != n {
		t.Fatalf("wiped broker: commit log starts at %d (watermark %d), queue max %d (want %d)", st.MinCommitLogOffset(), wm, st.MaxOffset("Wipe", 0), n)
	}
	checkAll(t, pullAll(t, env, "Wipe", 0, 0, n, "*"), ids, 0)
	more := produce(t, env, "Wipe", n, 3)
	_, pos, err := message.ParseOffsetMsgID(more[0])
	if err != nil || pos < wm {
		t.Fatalf("new record at commit-log %d, below the watermark %d (%v)", pos, wm, err)
	}
	checkAll(t, pullAll(t, env, "Wipe", 0, 0, n+3, "*"), append(ids, more...), 0)
	// And the new records reach the tier too, after the old ones.
	waitFor(t, "new records offloaded", func() bool {
		_, last, _ := env.b.Tier().QueueRange("Wipe", 0)
		return last == n+2
	})
}

func TestHighWatermarkRefusesWritesWhileOffloadFails(t *testing.T) {
	e := newTierEnv(t)
	env := e.start(t, t.TempDir(), func(c *Config) { c.MaxLocalBytes = 256 << 10 })
	createTopic(t, env, "Busy", 1)
	e.bucket.failing.Store(true)
	var refused *remoting.Command
	sent := 0
	for i := 0; i < 2000 && refused == nil; i++ {
		resp := send(t, env, "Busy", 0, "", fmt.Sprintf("m%04d-%s", i, strings.Repeat("y", 400)))
		if resp.Code != remoting.RespSuccess {
			refused = resp
			break
		}
		sent++
	}
	if refused == nil || refused.Code != remoting.RespServiceNotAvailable || !strings.Contains(refused.Remark, "high watermark") {
		t.Fatalf("after %d sends with the bucket down: %+v", sent, refused)
	}
	// The refusal names the bucket (once an upload has failed), not etcd.
	waitFor(t, "the remark blames the bucket", func() bool {
		r := send(t, env, "Busy", 0, "", "refused?").Remark
		return strings.Contains(r, "offload cannot commit: bucket writes failing (") && strings.Contains(r, "bucket unreachable (test fault)") &&
			strings.Contains(r, "writes resume once the bucket answers") && !strings.Contains(r, "etcd")
	})
	if env.b.Store().MinOffset("Busy", 0) != 0 {
		t.Fatal("local data deleted although not offloaded")
	}
	e.bucket.failing.Store(false)
	waitFor(t, "writes accepted again", func() bool {
		return send(t, env, "Busy", 0, "", "again").Code == remoting.RespSuccess
	})
	waitFor(t, "everything offloaded", func() bool {
		_, last, ok := env.b.Tier().QueueRange("Busy", 0)
		return ok && last >= int64(sent)-1
	})
	got := pullAll(t, env, "Busy", 0, 0, int64(sent), "*")
	for i, p := range got[:sent] {
		if p.offset != int64(i) {
			t.Fatalf("message %d has offset %d", i, p.offset)
		}
	}
}

func TestCorruptBlockIsReportedNotServed(t *testing.T) {
	e := newTierEnv(t)
	env := e.start(t, t.TempDir(), nil)
	createTopic(t, env, "Rot", 1)
	produce(t, env, "Rot", 0, 200)
	waitFor(t, "all offloaded", func() bool { return env.b.Store().MinOffset("Rot", 0) == 200 })
	if err := env.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Flip a byte inside the first block of the first segment object.
	ctx := context.Background()
	seg := env.b.Tier().Manifest().Segments[0]
	rc, err := e.bucket.Get(ctx, seg.Object)
	if err != nil {
		t.Fatal(err)
	}
	obj, _ := io.ReadAll(rc)
	rc.Close()
	obj[10] ^= 0xff
	if err := e.bucket.Put(ctx, seg.Object, bytes.NewReader(obj), int64(len(obj))); err != nil {
		t.Fatal(err)
	}
	env = e.start(t, t.TempDir(), nil)
	resp := invoke(t, env.bk, remoting.CodePullMessage, pullExt("Rot", 0, 0, "*", 0), nil)
	if resp.Code != remoting.RespSystemError || !strings.Contains(resp.Remark, "corrupt") || len(resp.Body) != 0 {
		t.Fatalf("pull of a corrupt block: code %d remark %q body %d bytes", resp.Code, resp.Remark, len(resp.Body))
	}
}

// Records that follow each other in one block make one body part; a record of another
// array, or one that does not start where the last ends, starts a new part.
func TestAppendAdjacentJoinsRecordsOfABlock(t *testing.T) {
	block := []byte("aaabbbbcc")
	other := []byte("dd")
	var parts [][]byte
	for _, rec := range [][]byte{block[0:3], block[3:7], block[7:9], other, block[0:2], block[3:5]} {
		parts = appendAdjacent(parts, rec)
	}
	want := []string{"aaabbbbcc", "dd", "aa", "bb"}
	if len(parts) != len(want) {
		t.Fatalf("parts %q, want %q", parts, want)
	}
	for i := range want {
		if string(parts[i]) != want[i] {
			t.Fatalf("parts %q, want %q", parts, want)
		}
	}
}
