package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Route says which broker groups serve a topic's queues, stored at routes/<Topic>. Each group
// numbers its own queues 0..n-1, exactly as RocketMQ's QueueData (brokerName, readQueueNums,
// writeQueueNums), so a (topic, broker group, queue id) triple names one queue.
type Route struct {
	Version int           `json:"v"`
	Topic   string        `json:"topic"`
	Queues  []GroupQueues `json:"queues"` // sorted by Group; groups with no queue are absent
}

// GroupQueues is one broker group's share of a topic.
type GroupQueues struct {
	Group       string `json:"group"`
	ReadQueues  int32  `json:"read"`
	WriteQueues int32  `json:"write"`
}

const routeVersion = 1

// AssignRoute spreads a topic's queues evenly over groups. It is a pure function of the topic
// name, its queue counts and the set of groups, so every broker computing it agrees. When a
// topic has fewer queues than there are groups, the topic's name picks which groups get one,
// so small topics do not all land on the first group.
func AssignRoute(t TopicConfig, groups []string) Route {
	r := Route{Version: routeVersion, Topic: t.Name, Queues: []GroupQueues{}}
	gs := slices.Clone(groups)
	sort.Strings(gs)
	gs = slices.Compact(gs)
	n := int32(len(gs))
	if n == 0 {
		return r
	}
	h := fnv.New32a()
	h.Write([]byte(t.Name))
	start := int32(h.Sum32() % uint32(n))
	for i, g := range gs {
		pos := (int32(i) - start + n) % n // rank of this group for the remainder
		share := func(total int32) int32 {
			q := total / n
			if pos < total%n {
				q++
			}
			return q
		}
		gq := GroupQueues{Group: g, ReadQueues: share(t.ReadQueues), WriteQueues: share(t.WriteQueues)}
		if gq.ReadQueues > 0 || gq.WriteQueues > 0 {
			r.Queues = append(r.Queues, gq)
		}
	}
	return r
}

// Equal reports whether two routes assign the same queues.
func (r Route) Equal(o Route) bool {
	return r.Topic == o.Topic && slices.Equal(r.Queues, o.Queues)
}

// GetRoute reads one topic's route.
func (c *Client) GetRoute(ctx context.Context, topic string) (Route, error) {
	var r Route
	if err := c.getJSON(ctx, c.key(dirRoutes, topic), &r); err != nil {
		return r, fmt.Errorf("get route of %s: %w", topic, err)
	}
	return r, nil
}

// liveGroups returns the broker groups with at least one registered broker.
func (c *Client) liveGroups(ctx context.Context) ([]string, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.key(dirBrokers), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list live broker groups: %w", err)
	}
	return groupsOfBrokerKeys(c.key(dirBrokers), resp), nil
}

func groupsOfBrokerKeys(prefix string, resp *clientv3.GetResponse) []string {
	var groups []string
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), prefix)
		if i := strings.IndexByte(rest, '/'); i > 0 {
			groups = append(groups, rest[:i])
		}
	}
	sort.Strings(groups)
	return slices.Compact(groups)
}

// Rebalance recomputes the routes of the named topics (all topics if none are named) over the
// broker groups live now and writes those that changed, in transactions of at most 128
// operations guarded by guards (e.g. "I am still the route keeper"). It returns how many routes
// changed.
func (c *Client) Rebalance(ctx context.Context, topics []string, guards ...clientv3.Cmp) (int, error) {
	groups, err := c.liveGroups(ctx)
	if err != nil {
		return 0, err
	}
	var cfgs []TopicConfig
	if len(topics) == 0 {
		if cfgs, err = c.ListTopics(ctx); err != nil {
			return 0, err
		}
	} else {
		for _, name := range topics {
			t, err := c.GetTopic(ctx, name)
			if err == nil {
				cfgs = append(cfgs, t)
			} else if !isNotFound(err) {
				return 0, err
			}
		}
	}
	current := map[string]Route{}
	if len(topics) == 0 {
		err = c.listJSON(ctx, c.key(dirRoutes), func(v []byte) error {
			var r Route
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			current[r.Topic] = r
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("rebalance: list routes: %w", err)
		}
	} else {
		for _, t := range cfgs {
			if r, err := c.GetRoute(ctx, t.Name); err == nil {
				current[t.Name] = r
			}
		}
	}
	var ops []clientv3.Op
	for _, t := range cfgs {
		want := AssignRoute(t, groups)
		if have, ok := current[t.Name]; ok && have.Equal(want) {
			continue
		}
		val, _ := json.Marshal(want)
		ops = append(ops, clientv3.OpPut(c.key(dirRoutes, t.Name), string(val)))
	}
	changed := 0
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		rctx, cancel := c.reqCtx(ctx)
		resp, err := c.cli.Txn(rctx).If(guards...).Then(ops[:n]...).Commit()
		cancel()
		if err != nil {
			return changed, fmt.Errorf("rebalance: write routes: %w", err)
		}
		if !resp.Succeeded {
			return changed, fmt.Errorf("rebalance: guard failed (no longer the route keeper)")
		}
		changed += n
		ops = ops[n:]
	}
	return changed, nil
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// maxTxnOps is etcd's default --max-txn-ops; every transaction here stays within it.
const maxTxnOps = 128

// RouteKeeper keeps routes matching the live broker groups. Every broker runs one; they elect
// a single leader (election key routekeeper), and only the leader rewrites routes, when
// membership changes or a topic is created or updated.
type RouteKeeper struct {
	c      *Client
	name   string
	ttl    int
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	leader bool

	closeOnce sync.Once
}

// StartRouteKeeper starts campaigning as brokerName with a session of ttl (DefaultBrokerTTL if
// 0); it returns at once and works in the background until Close.
func (c *Client) StartRouteKeeper(brokerName string, ttl time.Duration) *RouteKeeper {
	if ttl <= 0 {
		ttl = DefaultBrokerTTL
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &RouteKeeper{c: c, name: brokerName, ttl: int((ttl + time.Second - 1) / time.Second), cancel: cancel, done: make(chan struct{})}
	go k.run(ctx)
	return k
}

// IsLeader reports whether this keeper is the one writing routes now.
func (k *RouteKeeper) IsLeader() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.leader
}

func (k *RouteKeeper) setLeader(v bool) {
	k.mu.Lock()
	k.leader = v
	k.mu.Unlock()
}

const keeperComponent = "route keeper"

func (k *RouteKeeper) run(ctx context.Context) {
	defer close(k.done)
	bo := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for ctx.Err() == nil {
		err := k.term(ctx)
		k.setLeader(false)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			k.c.setFault(keeperComponent, err)
		}
		sleepCtx(ctx, bo.next())
	}
	k.c.clearFault(keeperComponent)
}

// term campaigns, then keeps routes while leader; it returns when leadership or the session ends.
func (k *RouteKeeper) term(ctx context.Context) error {
	sess, err := concurrency.NewSession(k.c.cli, concurrency.WithTTL(k.ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	defer func() {
		// The session's context may be cancelled already; revoke with a fresh one so a
		// stopped keeper hands over at once instead of after the TTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		k.c.cli.Revoke(rctx, sess.Lease())
		cancel()
		sess.Close()
	}()
	el := concurrency.NewElection(sess, k.c.key(dirKeeper))
	if err := el.Campaign(ctx, k.name); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	k.c.clearFault(keeperComponent)
	k.setLeader(true)
	guard := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	// Watch from the revision we campaign at, after a full rebalance, so nothing falls between.
	start := el.Rev()
	brokersW := k.c.cli.Watch(clientv3.WithRequireLeader(wctx), k.c.key(dirBrokers), clientv3.WithPrefix(), clientv3.WithRev(start+1))
	topicsW := k.c.cli.Watch(clientv3.WithRequireLeader(wctx), k.c.key(dirTopics), clientv3.WithPrefix(), clientv3.WithRev(start+1))
	if _, err := k.c.Rebalance(ctx, nil, guard); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			return fmt.Errorf("session lost")
		case wr, ok := <-brokersW:
			if !ok || wr.Err() != nil {
				return fmt.Errorf("watch brokers: %v", wr.Err())
			}
			if _, err := k.c.Rebalance(ctx, nil, guard); err != nil {
				return err
			}
		case wr, ok := <-topicsW:
			if !ok || wr.Err() != nil {
				return fmt.Errorf("watch topics: %v", wr.Err())
			}
			var names []string
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					names = append(names, strings.TrimPrefix(string(ev.Kv.Key), k.c.key(dirTopics)))
				}
			}
			if len(names) > 0 {
				if _, err := k.c.Rebalance(ctx, names, guard); err != nil {
					return err
				}
			}
		}
	}
}

// Close stops the keeper, resigning if it leads; idempotent.
func (k *RouteKeeper) Close() error {
	k.closeOnce.Do(func() {
		k.cancel()
		<-k.done
	})
	return nil
}
