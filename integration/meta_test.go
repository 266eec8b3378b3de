package integration

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stratamq/strata/meta"
)

// etcdBroker is one in-process stand-in for a broker: its own etcd connection, membership
// and view, as the broker binary will hold them.
type etcdBroker struct {
	cli    *clientv3.Client
	client *meta.Client
	reg    *meta.Registration
	view   *meta.View
}

func startEtcdBroker(t *testing.T, p *etcdProcess, group, name string) *etcdBroker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := etcdClient(t, p)
	c, err := meta.NewFromEtcd(cli, "it")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := c.Register(ctx, meta.BrokerInfo{Name: name, Group: group, Role: meta.RoleMaster, BrokerAddr: name + ":10911"}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b := &etcdBroker{cli: cli, client: c, reg: reg}
	if b.view, err = c.NewView(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.view.Close(); b.reg.Close() })
	return b
}

// kill stops the broker without cleanup: its etcd connection goes, its leases are left to expire.
func (b *etcdBroker) kill() { b.cli.Close() }

func etcdRouteOf(v *meta.View, topic string) map[string]int32 {
	out := map[string]int32{}
	for _, q := range v.Snapshot().Routes[topic].Queues {
		out[q.Group] = q.WriteQueues
	}
	return out
}

// servedRouteOf is the route a name server answers from v: only live groups.
func servedRouteOf(v *meta.View, topic string) map[string]int32 {
	out := map[string]int32{}
	rd, _ := v.Snapshot().TopicRoute("it", topic)
	for _, q := range rd.Queues {
		out[q.Group] = q.WriteQueueNums
	}
	return out
}

func TestEtcdTwoBrokersAgreeAndRoutesStickWhenOneIsKilled(t *testing.T) {
	p := startEtcdProcess(t)
	b1 := startEtcdBroker(t, p, "g1", "b1")
	b2 := startEtcdBroker(t, p, "g2", "b2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	etcdEventually(t, 10*time.Second, "both groups registered", func() bool {
		gs, err := b1.client.LiveGroups(ctx)
		return err == nil && len(gs) == 2
	})
	if err := b1.client.CreateTopic(ctx, meta.TopicConfig{Name: "orders", WriteQueues: 4}); err != nil {
		t.Fatal(err)
	}
	// Both brokers' views agree: 4 queues on each group, seen within a second.
	start := time.Now()
	etcdEventually(t, 10*time.Second, "both views show orders on g1 and g2", func() bool {
		r1, r2 := servedRouteOf(b1.view, "orders"), servedRouteOf(b2.view, "orders")
		return r1["g1"] == 4 && r1["g2"] == 4 && r2["g1"] == 4 && r2["g2"] == 4
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("route seen by both brokers after %v, want < 1s", d)
	}
	rd1, ok1 := b1.view.Snapshot().TopicRoute("it", "orders")
	rd2, ok2 := b2.view.Snapshot().TopicRoute("it", "orders")
	if !ok1 || !ok2 || len(rd1.Queues) != 2 || len(rd2.Queues) != 2 || rd1.Queues[1] != rd2.Queues[1] || rd1.Brokers[1].Addrs[0] != "b2:10911" {
		t.Fatalf("route data differ or incomplete:\n%+v\n%+v", rd1, rd2)
	}

	// Kill b2 (no deregistration): once its 2s lease expires, g2 leaves the route a name
	// server answers; g1 keeps its own 4 queues and the stored route does not change.
	b2.kill()
	etcdEventually(t, 20*time.Second, "b1 serves only g1's 4 queues after b2's lease expired", func() bool {
		r := servedRouteOf(b1.view, "orders")
		return len(r) == 1 && r["g1"] == 4
	})
	if r := etcdRouteOf(b1.view, "orders"); r["g1"] != 4 || r["g2"] != 4 {
		t.Fatalf("stored route %v changed when g2 died; want 4 and 4", r)
	}
	if bs, err := b1.client.Brokers(ctx); err != nil || len(bs) != 1 || bs[0].Name != "b1" {
		t.Fatalf("live brokers %v %v, want only b1", bs, err)
	}
}

func TestEtcdRestartLosesNoOffset(t *testing.T) {
	p := startEtcdProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := meta.New(ctx, meta.Config{Endpoints: p.Endpoints(), Cluster: "it", RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	store, err := c.NewOffsetStore(ctx, meta.OffsetStoreConfig{BrokerGroup: "g1", FlushInterval: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(context.Background()) })

	const queues = 500
	q := func(i int) meta.QueueKey { return meta.QueueKey{Group: "cg", Topic: "orders", QueueID: int32(i)} }
	for i := range queues {
		store.Commit(q(i), int64(i))
	}
	etcdEventually(t, 10*time.Second, "first offsets stored", func() bool { return store.Pending() == 0 })

	p.Stop()
	for i := range queues {
		store.Commit(q(i), int64(1000+i)) // consumers keep committing during the outage
	}
	etcdEventually(t, 30*time.Second, "client reports degraded while etcd is down", func() bool { return !c.Healthy() })
	if h := c.Health(); len(h.Reasons) == 0 {
		t.Fatalf("degraded without a reason: %+v", h)
	}
	if store.Pending() != queues {
		t.Fatalf("%d offsets pending during the outage, want %d", store.Pending(), queues)
	}

	p.Start()
	etcdEventually(t, 30*time.Second, "offsets stored and healthy after etcd returned", func() bool {
		return store.Pending() == 0 && c.Healthy()
	})
	if err := store.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A broker starting now reads back every offset.
	fresh, err := c.NewOffsetStore(ctx, meta.OffsetStoreConfig{BrokerGroup: "g1"})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(ctx)
	for i := range queues {
		if o, ok := fresh.Get(q(i)); !ok || o != int64(1000+i) {
			t.Fatalf("queue %d: offset %d (found %v), want %d", i, o, ok, 1000+i)
		}
	}
}
