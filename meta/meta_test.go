package meta

import (
	"context"
	"testing"
	"time"

	"github.com/stratamq/strata/meta/etcdembed"
)

// testTimeout is generous: the machine running the tests may be loaded.
const testTimeout = 30 * time.Second

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func startEtcd(t testing.TB, opts ...etcdembed.Option) *etcdembed.Server {
	t.Helper()
	srv, err := etcdembed.Start(testCtx(t), t.TempDir(), append([]etcdembed.Option{etcdembed.WithUnsafeNoFsync()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func newTestClient(t testing.TB, endpoints []string) *Client {
	t.Helper()
	c, err := New(testCtx(t), Config{Endpoints: endpoints, Cluster: "test", RequestTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func register(t testing.TB, c *Client, group, name string, ttl time.Duration) *Registration {
	t.Helper()
	r, err := c.Register(testCtx(t), BrokerInfo{Name: name, Group: group, Role: RoleMaster, BrokerAddr: name + ":10911"}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitView waits until the view's snapshot satisfies cond, woken by change notifications.
func waitView(t testing.TB, v *View, within time.Duration, what string, cond func(*Snapshot) bool) *Snapshot {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		s, changed := v.Current()
		if cond(s) {
			return s
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("after %v the view never showed: %s", within, what)
		}
	}
}

func routeCounts(r Route) map[string]int32 {
	m := map[string]int32{}
	for _, q := range r.Queues {
		m[q.Group] = q.WriteQueues
	}
	return m
}

func TestTopicsAndSubscriptionGroups(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	register(t, c, "g1", "b1", 0)
	register(t, c, "g2", "b2", 0)

	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders", WriteQueues: 4, RetentionMs: 3600_000}); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders"}); !isErr(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if err := c.CreateTopic(ctx, TopicConfig{Name: "bad/name"}); !isErr(err, ErrInvalidName) {
		t.Fatalf("bad name: %v, want ErrInvalidName", err)
	}
	got, err := c.GetTopic(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	want := TopicConfig{Name: "orders", ReadQueues: 4, WriteQueues: 4, Perm: PermDefault, MessageType: MessageNormal, RetentionMs: 3600_000, Incarnation: got.Incarnation}
	if got != want || got.Incarnation == 0 {
		t.Fatalf("got %+v want %+v", got, want)
	}
	r, err := c.GetRoute(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if rc := routeCounts(r); rc["g1"] != 4 || rc["g2"] != 4 {
		t.Fatalf("route %v, want 4 queues on each of g1, g2", r.Queues)
	}
	if _, err := c.UpdateQueues(ctx, "orders", 8, 8); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.GetRoute(ctx, "orders"); routeCounts(r)["g1"] != 8 || routeCounts(r)["g2"] != 8 {
		t.Fatalf("after update route %v, want 8 on g1 and g2", r.Queues)
	}
	// A config update leaves the queues where they are.
	if err := c.UpdateTopic(ctx, TopicConfig{Name: "orders", Perm: PermRead}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetTopic(ctx, "orders"); got.Perm != PermRead || got.WriteQueues != 8 {
		t.Fatalf("after config update %+v", got)
	}
	if r, _ := c.GetRoute(ctx, "orders"); routeCounts(r)["g1"] != 8 {
		t.Fatalf("config update moved queues: %v", r.Queues)
	}
	if err := c.UpdateTopic(ctx, TopicConfig{Name: "missing"}); !isErr(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	if err := c.CreateTopic(ctx, TopicConfig{Name: "audit", WriteQueues: 2, MessageType: MessageFIFO}); err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTopics(ctx)
	if err != nil || len(ts) != 2 || ts[0].Name != "audit" || ts[1].Name != "orders" {
		t.Fatalf("list: %v %v", ts, err)
	}
	if err := c.DeleteTopic(ctx, "audit"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetRoute(ctx, "audit"); !isErr(err, ErrNotFound) {
		t.Fatalf("route after delete: %v", err)
	}
	if err := c.DeleteTopic(ctx, "audit"); !isErr(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// Created again, it is a new incarnation.
	first, _ := c.GetTopic(ctx, "orders")
	if err := c.CreateTopic(ctx, TopicConfig{Name: "audit"}); err != nil {
		t.Fatal(err)
	}
	if again, _ := c.GetTopic(ctx, "audit"); again.Incarnation <= first.Incarnation {
		t.Fatalf("recreated topic incarnation %d, not newer than %d", again.Incarnation, first.Incarnation)
	}
	if err := c.CreateTopic(ctx, TopicConfig{Name: "placed"}, "g2"); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.GetRoute(ctx, "placed"); len(r.Queues) != 1 || r.Queues[0].Group != "g2" {
		t.Fatalf("topic placed on g2 only has route %v", r.Queues)
	}

	sg := SubscriptionGroup{Name: "billing", ConsumeEnable: true, ConsumeBroadcast: true, MaxReconsumeTimes: 3}
	if err := c.PutSubscriptionGroup(ctx, sg); err != nil {
		t.Fatal(err)
	}
	g, err := c.GetSubscriptionGroup(ctx, "billing")
	if err != nil || !g.ConsumeBroadcast || g.MaxReconsumeTimes != 3 || g.RetryQueueNums != 1 || g.RetryPolicy != "delay-levels" {
		t.Fatalf("get group: %+v %v", g, err)
	}
	if err := c.PutSubscriptionGroup(ctx, SubscriptionGroup{Name: "x", RetryPolicy: "never"}); err == nil {
		t.Fatal("bad retry policy accepted")
	}
	gs, err := c.ListSubscriptionGroups(ctx)
	if err != nil || len(gs) != 1 {
		t.Fatalf("list groups %v %v", gs, err)
	}
	if err := c.DeleteSubscriptionGroup(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSubscriptionGroup(ctx, "billing"); !isErr(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestRegistrationRegistersAgainAfterLeaseLoss(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	reg := register(t, c, "g1", "b1", 2*time.Second)
	first := reg.LeaseID()
	// Lose the lease as an expiry would: revoke it behind the registration's back.
	if _, err := c.Etcd().Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "broker registered again under a new lease", func() bool {
		bs, err := c.Brokers(ctx)
		return err == nil && len(bs) == 1 && reg.Registrations() == 2 && reg.LeaseID() != first
	})
	eventually(t, 5*time.Second, "healthy again", c.Healthy)
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	if bs, err := c.Brokers(ctx); err != nil || len(bs) != 0 {
		t.Fatalf("after Close brokers %v %v, want none", bs, err)
	}
}

func TestViewFollowsChangesAndBuildsTopicRoute(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	v, err := c.NewView(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })

	register(t, c, "g1", "b1", 0)
	if _, err := c.Register(ctx, BrokerInfo{Name: "b1s", Group: "g1", Role: RoleSlave, ID: 1, BrokerAddr: "b1s:10911"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders", WriteQueues: 4}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := waitView(t, v, 5*time.Second, "topic orders with a route", func(s *Snapshot) bool {
		_, ok := s.TopicRoute("c", "orders")
		return ok && len(s.Brokers) == 2
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("route seen after %v, want < 1s", d)
	}
	rd, _ := s.TopicRoute("c", "orders")
	if len(rd.Queues) != 1 || rd.Queues[0].WriteQueueNums != 4 || rd.Queues[0].Perm != PermDefault {
		t.Fatalf("queues %+v", rd.Queues)
	}
	if a := rd.Brokers[0].Addrs; a[0] != "b1:10911" || a[1] != "b1s:10911" {
		t.Fatalf("addrs before election %v, want configured master at 0", a)
	}

	// The slave wins the group's election: it is reported as brokerId 0.
	el, err := c.NewElection(ctx, "g1", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { el.Close() })
	if _, err := el.Campaign(ctx, "b1s"); err != nil {
		t.Fatal(err)
	}
	s = waitView(t, v, 5*time.Second, "b1s elected", func(s *Snapshot) bool { return s.Masters["g1"] == "b1s" })
	rd, _ = s.TopicRoute("c", "orders")
	if a := rd.Brokers[0].Addrs; a[0] != "b1s:10911" || len(a) != 2 {
		t.Fatalf("addrs after election %v, want b1s at 0", a)
	}

	if err := c.PutSubscriptionGroup(ctx, SubscriptionGroup{Name: "cg"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTopic(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	waitView(t, v, 5*time.Second, "topic deleted and group added", func(s *Snapshot) bool {
		_, ok := s.Topics["orders"]
		_, g := s.SubscriptionGroups["cg"]
		return !ok && g
	})
}

func TestViewServesLastStateDuringOutage(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	register(t, c, "g1", "b1", 0)
	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders", WriteQueues: 4}); err != nil {
		t.Fatal(err)
	}
	v, err := c.NewView(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	srv.Close()
	// Wait until etcd is observably gone, then check the view still answers.
	eventually(t, 10*time.Second, "etcd unreachable", func() bool {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := c.Etcd().Get(rctx, "x")
		return err != nil
	})
	if _, ok := v.Snapshot().TopicRoute("c", "orders"); !ok {
		t.Fatal("view lost its route during the outage")
	}
}

// TestRoutesStickThroughMembershipChanges: a group that leaves keeps its queues (it only
// drops out of the name server's route), nobody else's queues grow, and it comes back with the
// same queues.
func TestRoutesStickThroughMembershipChanges(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	v, err := c.NewView(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	register(t, c, "g1", "b1", 0)
	r2 := register(t, c, "g2", "b2", 0)
	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders", WriteQueues: 4}); err != nil {
		t.Fatal(err)
	}
	routed := func(s *Snapshot) map[string]int32 {
		rd, _ := s.TopicRoute("c", "orders")
		m := map[string]int32{}
		for _, q := range rd.Queues {
			m[q.Group] = q.WriteQueueNums
		}
		return m
	}
	waitView(t, v, 5*time.Second, "both groups routed", func(s *Snapshot) bool { return len(routed(s)) == 2 })
	r2.Close()
	s := waitView(t, v, 5*time.Second, "g2 out of the name server's route", func(s *Snapshot) bool { return len(routed(s)) == 1 })
	if got := routed(s); got["g1"] != 4 {
		t.Fatalf("with g2 down the route is %v, want g1 with its own 4 queues", got)
	}
	if r, _ := c.GetRoute(ctx, "orders"); routeCounts(r)["g1"] != 4 || routeCounts(r)["g2"] != 4 {
		t.Fatalf("stored route changed while g2 was down: %v", r.Queues)
	}
	register(t, c, "g2", "b2", 0)
	register(t, c, "g3", "b3", 0)
	s = waitView(t, v, 5*time.Second, "g2 back", func(s *Snapshot) bool { return len(routed(s)) == 2 })
	if got := routed(s); got["g1"] != 4 || got["g2"] != 4 {
		t.Fatalf("after g2 returned the route is %v, want 4 and 4 (g3 gets nothing of an existing topic)", got)
	}
}

// TestQueueCountChanges: growing raises both counts, shrinking lowers write first and read
// only through LowerReadQueues, never below write; AddGroup adds a share once.
func TestQueueCountChanges(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	register(t, c, "g1", "b1", 0)
	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders", WriteQueues: 4}); err != nil {
		t.Fatal(err)
	}
	share := func() GroupQueues {
		r, err := c.GetRoute(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		q, _ := r.Share("g1")
		return q
	}
	if _, err := c.UpdateQueues(ctx, "orders", 8, 8); err != nil {
		t.Fatal(err)
	}
	if q := share(); q.ReadQueues != 8 || q.WriteQueues != 8 {
		t.Fatalf("after growing: %+v", q)
	}
	if _, err := c.UpdateQueues(ctx, "orders", 2, 2); err != nil {
		t.Fatal(err)
	}
	if q := share(); q.ReadQueues != 8 || q.WriteQueues != 2 {
		t.Fatalf("after shrinking: %+v, want read 8 (not drained) write 2", q)
	}
	if _, err := c.LowerReadQueues(ctx, "orders", "g1", 1); err != nil {
		t.Fatal(err)
	}
	if q := share(); q.ReadQueues != 2 || q.WriteQueues != 2 {
		t.Fatalf("after lowering read: %+v, want read clamped to write 2", q)
	}
	if _, err := c.UpdateQueues(ctx, "orders", 0, 0); err == nil {
		t.Fatal("0 queues accepted")
	}
	if _, err := c.UpdateQueues(ctx, "missing", 4, 4); !isErr(err, ErrNotFound) {
		t.Fatalf("missing topic: %v", err)
	}
	for range 2 {
		if _, err := c.AddGroup(ctx, "orders", "g9", 1); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := c.GetRoute(ctx, "orders")
	if q, ok := r.Share("g9"); !ok || q.WriteQueues != 1 || len(r.Queues) != 2 {
		t.Fatalf("after AddGroup twice: %v", r.Queues)
	}
	// With no broker group live, there is nowhere to create a topic.
	c2 := newTestClient(t, srv.Endpoints())
	if err := c2.CreateTopic(ctx, TopicConfig{Name: "x"}, "bad/group"); !isErr(err, ErrInvalidName) {
		t.Fatalf("bad group name: %v", err)
	}
}
