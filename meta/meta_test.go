package meta

import (
	"context"
	"fmt"
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

func TestAssignRoute(t *testing.T) {
	tests := []struct {
		queues int32
		groups []string
	}{
		{8, []string{"g1", "g2"}},
		{7, []string{"g1", "g2", "g3"}},
		{1, []string{"a", "b", "c", "d"}},
		{16, []string{"only"}},
		{5, nil},
		{3, []string{"b", "a", "b"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d/%v", tc.queues, tc.groups), func(t *testing.T) {
			topic := TopicConfig{Name: "T", ReadQueues: tc.queues, WriteQueues: tc.queues}
			r := AssignRoute(topic, tc.groups)
			if !r.Equal(AssignRoute(topic, tc.groups)) {
				t.Fatal("not deterministic")
			}
			var total int32
			lo, hi := int32(1<<30), int32(0)
			for _, q := range r.Queues {
				total += q.WriteQueues
				if q.ReadQueues != q.WriteQueues {
					t.Errorf("group %s read %d write %d", q.Group, q.ReadQueues, q.WriteQueues)
				}
				lo, hi = min(lo, q.WriteQueues), max(hi, q.WriteQueues)
			}
			if len(tc.groups) == 0 {
				if len(r.Queues) != 0 {
					t.Fatalf("no groups but route %v", r.Queues)
				}
				return
			}
			if total != tc.queues {
				t.Fatalf("assigned %d queues, want %d: %v", total, tc.queues, r.Queues)
			}
			if int(tc.queues) >= len(tc.groups) && hi-lo > 1 {
				t.Fatalf("uneven spread %v", r.Queues)
			}
		})
	}
	// Small topics do not all land on one group.
	used := map[string]bool{}
	for i := range 40 {
		r := AssignRoute(TopicConfig{Name: fmt.Sprintf("t%d", i), ReadQueues: 1, WriteQueues: 1}, []string{"a", "b", "c"})
		used[r.Queues[0].Group] = true
	}
	if len(used) != 3 {
		t.Fatalf("single-queue topics used groups %v, want all 3", used)
	}
}

func TestTopicsAndSubscriptionGroups(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	register(t, c, "g1", "b1", 0)
	register(t, c, "g2", "b2", 0)

	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders", WriteQueues: 8, RetentionMs: 3600_000}); err != nil {
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
	want := TopicConfig{Name: "orders", ReadQueues: 8, WriteQueues: 8, Perm: PermDefault, MessageType: MessageNormal, RetentionMs: 3600_000}
	if got != want {
		t.Fatalf("got %+v want %+v", got, want)
	}
	r, err := c.GetRoute(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if rc := routeCounts(r); rc["g1"] != 4 || rc["g2"] != 4 {
		t.Fatalf("route %v, want 4 queues on each of g1, g2", r.Queues)
	}
	if err := c.UpdateTopic(ctx, TopicConfig{Name: "orders", WriteQueues: 16}); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.GetRoute(ctx, "orders"); routeCounts(r)["g1"] != 8 {
		t.Fatalf("after update route %v, want 8 on g1", r.Queues)
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

func TestRouteKeeperMovesQueuesWhenGroupLeaves(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	register(t, c, "g1", "b1", 0)
	r2 := register(t, c, "g2", "b2", 0)
	k := c.StartRouteKeeper("b1", 0)
	t.Cleanup(func() { k.Close() })
	if err := c.CreateTopic(ctx, TopicConfig{Name: "orders", WriteQueues: 8}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "keeper leads", k.IsLeader)
	r2.Close()
	eventually(t, 10*time.Second, "all queues on g1", func() bool {
		r, err := c.GetRoute(ctx, "orders")
		return err == nil && len(r.Queues) == 1 && routeCounts(r)["g1"] == 8
	})
	register(t, c, "g3", "b3", 0)
	eventually(t, 10*time.Second, "queues spread over g1 and g3", func() bool {
		r, err := c.GetRoute(ctx, "orders")
		rc := routeCounts(r)
		return err == nil && rc["g1"] == 4 && rc["g3"] == 4
	})
}
