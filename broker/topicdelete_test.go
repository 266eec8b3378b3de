package broker

import (
	"context"
	"errors"
	"testing"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/tier"
)

// queueOffsetQuery asks the broker for a min offset (or, with ts >= 0, the offset of a time).
func queueOffsetQuery(t *testing.T, env *testEnv, topic string, ts int64) int64 {
	t.Helper()
	code, ext := remoting.CodeGetMinOffset, remoting.ExtFields{"topic": topic, "queueId": "0"}
	if ts >= 0 {
		code = remoting.CodeSearchOffsetByTimestamp
		ext.SetInt64("timestamp", ts)
	}
	resp := invoke(t, env.bk, code, ext, nil)
	wantCode(t, resp, remoting.RespSuccess)
	off, err := resp.ExtFields.Int64("offset")
	if err != nil {
		t.Fatal(err)
	}
	return off
}

// TestDeletedTopicIsNeverServedFromTheTier deletes a topic whose records are partly cold,
// partly local only, recreates it and checks that only the new incarnation is served —
// from both tiers, after a restart, over a wiped data directory and by a brokerless reader.
func TestDeletedTopicIsNeverServedFromTheTier(t *testing.T) {
	ctx := context.Background()
	e := newTierEnv(t)
	dir := t.TempDir()
	env := e.start(t, dir, nil)
	const topic, n, extra, fresh = "Del", 300, 20, 200
	createTopic(t, env, topic, 1)
	old := produce(t, env, topic, 0, n)
	st := env.b.Store()
	waitFor(t, "old records offloaded and dropped locally", func() bool { return st.MinOffset(topic, 0) == n })
	// A few more old records that are only local (in the active segment) at deletion.
	old = append(old, produce(t, env, topic, n, extra)...)
	_, oldPos, err := message.ParseOffsetMsgID(old[10])
	if err != nil {
		t.Fatal(err)
	}

	commit := remoting.ExtFields{"consumerGroup": "cg", "topic": topic, "queueId": "0", "commitOffset": "150"}
	wantCode(t, invoke(t, env.bk, remoting.CodeUpdateConsumerOffset, commit, nil), remoting.RespSuccess)
	wantCode(t, invoke(t, env.bk, remoting.CodeDeleteTopicInBroker, remoting.ExtFields{"topic": topic}, nil), remoting.RespSuccess)
	if _, ok := env.b.Tier().Tombstone(topic); !ok {
		t.Fatal("no tombstone in the tier for the deleted topic")
	}
	if _, _, ok := env.b.Tier().QueueRange(topic, 0); ok {
		t.Fatal("the tier still reports a range for the deleted topic")
	}

	// Recreate: offsets start again at 0 (as in RocketMQ) and the group's old offset is
	// gone; enough new records to seal the segment that straddles the deletion and push them
	// to the tier as well.
	createTopic(t, env, topic, 1)
	q := remoting.ExtFields{"consumerGroup": "cg", "topic": topic, "queueId": "0"}
	if r := invoke(t, env.bk, remoting.CodeQueryConsumerOffset, q, nil); r.ExtFields["offset"] != "0" {
		t.Fatalf("group offset on the recreated topic: code %d %v, want 0", r.Code, r.ExtFields)
	}
	const base = 0
	ids := produce(t, env, topic, base, fresh)
	waitFor(t, "new records offloaded and dropped locally", func() bool {
		_, last, ok := env.b.Tier().QueueRange(topic, 0)
		return ok && last == base+fresh-1 && st.MinOffset(topic, 0) > base
	})
	check := func(env *testEnv, what string) {
		t.Helper()
		if first, last, ok := env.b.Tier().QueueRange(topic, 0); !ok || first < base || last != base+fresh-1 {
			t.Fatalf("%s: tier range %d..%d %v, want from %d", what, first, last, ok, base)
		}
		checkAll(t, pullAll(t, env, topic, 0, 0, base+fresh, "*"), ids, base)
		if got := queueOffsetQuery(t, env, topic, -1); got != base {
			t.Fatalf("%s: min offset %d, want %d", what, got, base)
		}
		if got := queueOffsetQuery(t, env, topic, 0); got != base {
			t.Fatalf("%s: offset for time 0 is %d, want %d", what, got, base)
		}
		if _, err := env.b.Tier().ReadAt(ctx, oldPos); !errors.Is(err, tier.ErrNotInTier) {
			t.Fatalf("%s: ReadAt of a deleted record: %v, want ErrNotInTier", what, err)
		}
	}
	check(env, "recreated")

	// A brokerless reader (retro/query tools) sees the tombstone through the manifest.
	ro, err := tier.Open(ctx, tier.Config{Bucket: e.bucket, Pointers: tier.MetaPointers{Client: e.mc, Group: env.b.cfg.BrokerName},
		Prefix: env.b.tierPrefix(), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if first, _, ok := ro.QueueRange(topic, 0); !ok || first < base {
		t.Fatalf("read-only tier: range from %d %v, want from %d", first, ok, base)
	}
	r, err := ro.Read(ctx, tier.ReadRequest{Topic: topic, QueueID: 0, Offset: 0, MaxCount: 1})
	if err != nil || len(r.Records) != 1 {
		t.Fatalf("read-only tier read: %d records, %v", len(r.Records), err)
	}
	if h, _ := message.ParseRecordHeader(r.Records[0]); h.QueueOffset < base {
		t.Fatalf("read-only tier served deleted offset %d", h.QueueOffset)
	}
	ro.Close()

	// Restart over the same directory, then over a wiped one.
	if err := env.b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	env = e.start(t, dir, nil)
	check(env, "restarted")
	if err := env.b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	env = e.start(t, t.TempDir(), nil)
	check(env, "wiped")
	ids = append(ids, produce(t, env, topic, base+fresh, 2)...)
	checkAll(t, pullAll(t, env, topic, 0, 0, base+fresh+2, "*"), ids, base)
}

// TestDeleteTopicBeforeRecreateSurvivesWipe deletes a topic, wipes the data directory
// before the topic is recreated, and checks its queue starts again at 0 with nothing old
// served.
func TestDeleteTopicBeforeRecreateSurvivesWipe(t *testing.T) {
	ctx := context.Background()
	e := newTierEnv(t)
	env := e.start(t, t.TempDir(), nil)
	const topic, n = "Del2", 200
	createTopic(t, env, topic, 1)
	produce(t, env, topic, 0, n)
	waitFor(t, "offloaded", func() bool { return env.b.Tier().OffloadWatermark() > 0 })
	wantCode(t, invoke(t, env.bk, remoting.CodeDeleteTopicInBroker, remoting.ExtFields{"topic": topic}, nil), remoting.RespSuccess)
	if err := env.b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	env = e.start(t, t.TempDir(), nil)
	if got := env.b.Store().MaxOffset(topic, 0); got != 0 {
		t.Fatalf("max offset of the deleted queue after a wipe: %d, want 0", got)
	}
	createTopic(t, env, topic, 1)
	ids := produce(t, env, topic, 0, 3)
	checkAll(t, pullAll(t, env, topic, 0, 0, 3, "*"), ids, 0)
}

// TestTopicDeletedElsewhereIsDroppedHere: a topic deleted through etcd by someone else (another
// broker group's DELETE_TOPIC_IN_BROKER, or the name server's) is dropped here too, and a topic
// deleted and created again while this broker was down loses its old incarnation's data when
// the broker comes back: its queues start again at 0.
func TestTopicDeletedElsewhereIsDroppedHere(t *testing.T) {
	ctx := context.Background()
	e := newTierEnv(t)
	dir := t.TempDir()
	env := e.start(t, dir, nil)
	createTopic(t, env, "Gone", 1)
	produce(t, env, "Gone", 0, 5)
	if err := e.mc.DeleteTopic(ctx, "Gone"); err != nil {
		t.Fatal(err)
	}
	// The store drops the data first; the incarnation is forgotten once the tier's tombstone
	// and the offsets are done, so wait for both.
	waitFor(t, "the broker drops the topic deleted through etcd and forgets its incarnation", func() bool {
		_, recorded := env.b.incarnations.get("Gone")
		return env.b.Store().MaxOffset("Gone", 0) == 0 && !recorded
	})

	createTopic(t, env, "Again", 1)
	produce(t, env, "Again", 0, 7)
	if err := env.b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.mc.DeleteTopic(ctx, "Again"); err != nil {
		t.Fatal(err)
	}
	if err := e.mc.CreateTopic(ctx, meta.TopicConfig{Name: "Again", WriteQueues: 1}, env.b.cfg.BrokerName); err != nil {
		t.Fatal(err)
	}
	env = e.start(t, dir, nil)
	if got := env.b.Store().MaxOffset("Again", 0); got != 0 {
		t.Fatalf("after a delete and re-create while down, the queue holds %d old messages", got)
	}
	ids := produce(t, env, "Again", 0, 2)
	checkAll(t, pullAll(t, env, "Again", 0, 0, 2, "*"), ids, 0)
}
