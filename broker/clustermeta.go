package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stratamq/strata/meta"
)

// Permission bits of a topic (PROTOCOL.md §3.3).
const (
	permInherit = int(meta.PermInherit)
	permWrite   = int(meta.PermWrite)
	permRead    = int(meta.PermRead)
	permRW      = permRead | permWrite
)

// topicInfo is a topic with its route, as the broker uses it.
type topicInfo struct {
	Name string
	// ReadQueueNums and WriteQueueNums are the counts a broker group gets when the topic is
	// placed on it; each group's current counts are in Queues.
	ReadQueueNums  int
	WriteQueueNums int
	Perm           int
	// Incarnation tells the topic from a deleted one of the same name (meta.TopicConfig).
	Incarnation int64
	// RetentionMs is the topic's retention across both tiers (0: the cluster default).
	RetentionMs int64
	// Queues is the route: each broker group's share, numbered 0..n-1 within the group. A
	// group keeps its share for life, live or not.
	Queues []groupQueues
}

// groupQueues is one broker group's share of a topic (RocketMQ's QueueData).
type groupQueues struct {
	BrokerName     string
	ReadQueueNums  int
	WriteQueueNums int
}

// share returns the queues broker group name serves.
func (t topicInfo) share(name string) (groupQueues, bool) {
	for _, q := range t.Queues {
		if q.BrokerName == name {
			return q, true
		}
	}
	return groupQueues{}, false
}

func (t topicInfo) hasShare(name string) bool {
	_, ok := t.share(name)
	return ok
}

// brokerInfo is a broker group's live members.
type brokerInfo struct {
	Cluster    string
	BrokerName string
	// Addr is the acting master's address, "" while the group has none.
	Addr string
	// Addrs maps RocketMQ brokerId to address: 0 the master, 1.. the slaves.
	Addrs map[int64]string
}

// groupInfo is a consumer group's settings.
type groupInfo struct {
	Name            string
	ConsumeEnable   bool
	RetryQueueNums  int
	RetryMaxTimes   int
	BroadcastEnable bool
}

func defaultGroupInfo(name string) groupInfo {
	return groupInfo{Name: name, ConsumeEnable: true, RetryQueueNums: 1, RetryMaxTimes: 16, BroadcastEnable: false}
}

// viewWait bounds how long a write waits to see itself in the watched view.
const viewWait = 10 * time.Second

// clusterMeta is the broker's window on etcd (package meta): a watched view for reads (no I/O
// on the request path), the membership registration and the batched offset store of this
// broker group.
type clusterMeta struct {
	c           *meta.Client
	cluster     string
	brokerGroup string
	view        *meta.View
	offsets     *meta.OffsetStore
	fences      resetFences // offsets.go: queues just reset ignore stale commits
	reg         *meta.Registration
}

// openClusterMeta loads the view and this group's offsets and registers the broker.
func openClusterMeta(ctx context.Context, c *meta.Client, cfg *Config, info meta.BrokerInfo) (_ *clusterMeta, err error) {
	// The result is not named m: a failing return sets it to nil before the deferred close
	// runs, and closing nil crashed every broker that could not reach etcd.
	m := &clusterMeta{c: c, cluster: cfg.ClusterName, brokerGroup: cfg.BrokerName}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startCleanupTimeout)
			defer cancel()
			_ = m.close(cctx)
		}
	}()
	if m.view, err = c.NewView(ctx); err != nil {
		return nil, fmt.Errorf("load cluster view from etcd: %w", err)
	}
	if m.offsets, err = c.NewOffsetStore(ctx, meta.OffsetStoreConfig{BrokerGroup: cfg.BrokerName}); err != nil {
		return nil, fmt.Errorf("load consumer offsets from etcd: %w", err)
	}
	if m.reg, err = c.Register(ctx, info, 0); err != nil {
		return nil, fmt.Errorf("register broker in etcd: %w", err)
	}
	if err := m.waitView(ctx, func(s *meta.Snapshot) bool { _, ok := s.Brokers[info.Group+"/"+info.Name]; return ok }); err != nil {
		return nil, fmt.Errorf("wait for own registration: %w", err)
	}
	return m, nil
}

// close flushes offsets and leaves the cluster; idempotent parts make it safe to call twice,
// and it closes only the parts a failed open got to.
func (m *clusterMeta) close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	var errs []error
	if m.offsets != nil {
		if err := m.offsets.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if m.reg != nil {
		if err := m.reg.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.view != nil {
		_ = m.view.Close()
	}
	return errors.Join(errs...)
}

// waitView waits until the view satisfies cond.
func (m *clusterMeta) waitView(ctx context.Context, cond func(*meta.Snapshot) bool) error {
	ctx, cancel := context.WithTimeout(ctx, viewWait)
	defer cancel()
	for {
		s, changed := m.view.Current()
		if cond(s) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("etcd change not seen by the watch: %w", ctx.Err())
		}
	}
}

func (m *clusterMeta) brokers() []brokerInfo {
	s := m.view.Snapshot()
	groups := map[string]bool{}
	for _, b := range s.Brokers {
		groups[b.Group] = true
	}
	out := make([]brokerInfo, 0, len(groups))
	for g := range groups {
		bd := s.BrokerGroup(m.cluster, g)
		if len(bd.Addrs) > 0 {
			out = append(out, brokerInfo{Cluster: m.cluster, BrokerName: g, Addr: bd.Addrs[0], Addrs: bd.Addrs})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].BrokerName < out[j].BrokerName })
	return out
}

func topicFrom(s *meta.Snapshot, name string) (topicInfo, bool) {
	t, ok := s.Topics[name]
	if !ok {
		return topicInfo{}, false
	}
	ti := topicInfo{Name: name, ReadQueueNums: int(t.ReadQueues), WriteQueueNums: int(t.WriteQueues), Perm: int(t.Perm),
		Incarnation: t.Incarnation, RetentionMs: t.RetentionMs}
	for _, q := range s.Routes[name].Queues {
		ti.Queues = append(ti.Queues, groupQueues{BrokerName: q.Group, ReadQueueNums: int(q.ReadQueues), WriteQueueNums: int(q.WriteQueues)})
	}
	return ti, true
}

func (m *clusterMeta) topic(name string) (topicInfo, bool) { return topicFrom(m.view.Snapshot(), name) }

func (m *clusterMeta) topics() []topicInfo {
	s := m.view.Snapshot()
	out := make([]topicInfo, 0, len(s.Topics))
	for name := range s.Topics {
		t, _ := topicFrom(s, name)
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func metaTopic(t topicInfo) meta.TopicConfig {
	return meta.TopicConfig{Name: t.Name, ReadQueues: int32(t.ReadQueueNums), WriteQueues: int32(t.WriteQueueNums), Perm: int32(t.Perm), RetentionMs: t.RetentionMs}
}

// routed reports whether the view holds topic with a route.
func routed(name string) func(*meta.Snapshot) bool {
	return func(s *meta.Snapshot) bool {
		_, t := s.Topics[name]
		_, r := s.Routes[name]
		return t && r
	}
}

// waitRoute waits until the view shows topic with route r.
func (m *clusterMeta) waitRoute(ctx context.Context, topic string, r meta.Route) error {
	return m.waitView(ctx, func(s *meta.Snapshot) bool {
		cur, ok := s.Routes[topic]
		_, t := s.Topics[topic]
		return t && ok && cur.Equal(r)
	})
}

// putTopic creates t with its queue counts on each of groups (every live group when nil), or,
// if it exists, sets those counts on those groups (every group of its route when nil) as
// RocketMQ's UPDATE_AND_CREATE_TOPIC does: growing at once, shrinking write queues first
// (read queues follow once drained, drainReadQueues). It waits until the view shows the result.
func (m *clusterMeta) putTopic(ctx context.Context, t topicInfo, groups []string) error {
	mt := metaTopic(t)
	err := m.c.CreateTopic(ctx, mt, groups...)
	if errors.Is(err, meta.ErrExists) {
		var r meta.Route
		if r, err = m.c.UpdateQueues(ctx, t.Name, mt.ReadQueues, mt.WriteQueues, groups...); err == nil {
			if cur, ok := m.topic(t.Name); ok && cur.Perm != t.Perm {
				err = m.c.UpdateTopic(ctx, mt)
			}
			if err == nil {
				return m.waitRoute(ctx, t.Name, r)
			}
		}
	}
	if err != nil {
		return err
	}
	return m.waitView(ctx, routed(t.Name))
}

// createTopicIfAbsent creates t on every live group unless it exists, makes sure group has a
// share of it (system topics must be writable on every group), and returns the topic as the
// view holds it.
func (m *clusterMeta) createTopicIfAbsent(ctx context.Context, t topicInfo, group string) (topicInfo, error) {
	cur, ok := m.topic(t.Name)
	if !ok {
		err := m.c.CreateTopic(ctx, metaTopic(t))
		if errors.Is(err, meta.ErrNoBrokerGroup) {
			// Only this broker's own registration is not visible yet.
			err = m.c.CreateTopic(ctx, metaTopic(t), group)
		}
		if err != nil && !errors.Is(err, meta.ErrExists) {
			return topicInfo{}, err
		}
		if err := m.waitView(ctx, routed(t.Name)); err != nil {
			return topicInfo{}, err
		}
		cur, _ = m.topic(t.Name)
	}
	if _, ok := cur.share(group); ok {
		return cur, nil
	}
	r, err := m.c.AddGroup(ctx, t.Name, group, int32(t.WriteQueueNums))
	if err != nil {
		return topicInfo{}, err
	}
	if err := m.waitRoute(ctx, t.Name, r); err != nil {
		return topicInfo{}, err
	}
	cur, _ = m.topic(t.Name)
	return cur, nil
}

func (m *clusterMeta) deleteTopic(ctx context.Context, name string) error {
	if err := m.c.DeleteTopic(ctx, name); err != nil && !errors.Is(err, meta.ErrNotFound) {
		return err
	}
	return m.waitView(ctx, func(s *meta.Snapshot) bool { _, ok := s.Topics[name]; return !ok })
}

func groupFrom(g meta.SubscriptionGroup) groupInfo {
	return groupInfo{Name: g.Name, ConsumeEnable: g.ConsumeEnable, RetryQueueNums: int(g.RetryQueueNums),
		RetryMaxTimes: int(g.MaxReconsumeTimes), BroadcastEnable: g.ConsumeBroadcast}
}

func (m *clusterMeta) group(name string) (groupInfo, bool) {
	g, ok := m.view.Snapshot().SubscriptionGroups[name]
	if !ok {
		return groupInfo{}, false
	}
	return groupFrom(g), true
}

func (m *clusterMeta) groups() []groupInfo {
	s := m.view.Snapshot()
	out := make([]groupInfo, 0, len(s.SubscriptionGroups))
	for _, g := range s.SubscriptionGroups {
		out = append(out, groupFrom(g))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (m *clusterMeta) createGroupIfAbsent(ctx context.Context, g groupInfo) (groupInfo, error) {
	if cur, ok := m.group(g.Name); ok {
		return cur, nil
	}
	sg := meta.SubscriptionGroup{Name: g.Name, ConsumeEnable: g.ConsumeEnable, ConsumeBroadcast: g.BroadcastEnable,
		ConsumeFromMinEnable: true, RetryQueueNums: int32(g.RetryQueueNums), MaxReconsumeTimes: int32(g.RetryMaxTimes)}
	if err := m.c.PutSubscriptionGroup(ctx, sg); err != nil {
		return groupInfo{}, err
	}
	if err := m.waitView(ctx, func(s *meta.Snapshot) bool { _, ok := s.SubscriptionGroups[g.Name]; return ok }); err != nil {
		return groupInfo{}, err
	}
	cur, _ := m.group(g.Name)
	return cur, nil
}

func (m *clusterMeta) commitOffset(group, topic string, queueID int32, offset int64) {
	k := meta.QueueKey{Group: group, Topic: topic, QueueID: queueID}
	if m.fences.hold(k, offset, time.Now()) {
		return
	}
	m.offsets.Commit(k, offset)
}

func (m *clusterMeta) offset(group, topic string, queueID int32) (int64, bool) {
	return m.offsets.Get(meta.QueueKey{Group: group, Topic: topic, QueueID: queueID})
}

// healthy reports nil while every meta worker is in touch with etcd, else the reasons.
func (m *clusterMeta) healthy() error {
	h := m.c.Health()
	if !h.Degraded {
		return nil
	}
	return fmt.Errorf("degraded since %s: %s", h.Since.Format(time.RFC3339), strings.Join(h.Reasons, "; "))
}
