package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Route says which broker groups serve a topic's queues, stored at routes/<Topic>. Each group
// numbers its own queues 0..n-1, exactly as RocketMQ's QueueData (brokerName, readQueueNums,
// writeQueueNums), so a (topic, broker group, queue id) triple names one queue, and a queue
// keeps its group for life: membership changes never rewrite a route. Only topic creation,
// an explicit queue-count change (UpdateQueues, AddGroup) and the drain of shrunk read queues
// (LowerReadQueues) do.
type Route struct {
	Version int           `json:"v"`
	Topic   string        `json:"topic"`
	Queues  []GroupQueues `json:"queues"` // sorted by Group
}

// GroupQueues is one broker group's share of a topic. ReadQueues ≥ WriteQueues always: a
// shrink lowers the write count first, and the read count only once the removed queues are
// drained, so no written message becomes unreadable.
type GroupQueues struct {
	Group       string `json:"group"`
	ReadQueues  int32  `json:"read"`
	WriteQueues int32  `json:"write"`
}

const routeVersion = 1

// ErrNoBrokerGroup is returned when a topic would be placed on no broker group.
var ErrNoBrokerGroup = errors.New("meta: no broker group to place the topic on")

// placeRoute puts queues read and write queues on each of groups.
func placeRoute(topic string, groups []string, read, write int32) Route {
	gs := slices.Clone(groups)
	sort.Strings(gs)
	gs = slices.Compact(gs)
	r := Route{Version: routeVersion, Topic: topic, Queues: make([]GroupQueues, 0, len(gs))}
	for _, g := range gs {
		r.Queues = append(r.Queues, GroupQueues{Group: g, ReadQueues: read, WriteQueues: write})
	}
	return r
}

// Share returns group's share of the route.
func (r Route) Share(group string) (GroupQueues, bool) {
	for _, q := range r.Queues {
		if q.Group == group {
			return q, true
		}
	}
	return GroupQueues{}, false
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

// LiveGroups returns the broker groups with at least one registered broker, sorted.
func (c *Client) LiveGroups(ctx context.Context) ([]string, error) { return c.liveGroups(ctx) }

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

// maxTxnOps is etcd's default --max-txn-ops; every transaction here stays within it.
const maxTxnOps = 128

// editRoute applies edit to topic's current route and stores the result in one transaction
// guarded by the route's and the topic's mod revisions, retrying when someone else changed
// either meanwhile. edit returns false to leave the route as it is.
func (c *Client) editRoute(ctx context.Context, topic string, edit func(t *TopicConfig, r *Route) (bool, error)) (Route, error) {
	tk, rk := c.key(dirTopics, topic), c.key(dirRoutes, topic)
	for {
		rctx, cancel := c.reqCtx(ctx)
		resp, err := c.cli.Txn(rctx).Then(clientv3.OpGet(tk), clientv3.OpGet(rk)).Commit()
		cancel()
		if err != nil {
			return Route{}, fmt.Errorf("route of %s: %w", topic, err)
		}
		tr, rr := resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()
		if len(tr.Kvs) == 0 {
			return Route{}, fmt.Errorf("topic %s: %w", topic, ErrNotFound)
		}
		var t TopicConfig
		if err := json.Unmarshal(tr.Kvs[0].Value, &t); err != nil {
			return Route{}, fmt.Errorf("decode topic %s: %w", topic, err)
		}
		r := Route{Version: routeVersion, Topic: topic}
		var rrev int64
		if len(rr.Kvs) > 0 {
			rrev = rr.Kvs[0].ModRevision
			if err := json.Unmarshal(rr.Kvs[0].Value, &r); err != nil {
				return Route{}, fmt.Errorf("decode route of %s: %w", topic, err)
			}
		}
		before := t
		changed, err := edit(&t, &r)
		if err != nil || !changed {
			return r, err
		}
		sort.Slice(r.Queues, func(i, j int) bool { return r.Queues[i].Group < r.Queues[j].Group })
		rv, _ := json.Marshal(r)
		ops := []clientv3.Op{clientv3.OpPut(rk, string(rv))}
		if t != before {
			tv, _ := json.Marshal(t)
			ops = append(ops, clientv3.OpPut(tk, string(tv)))
		}
		rctx, cancel = c.reqCtx(ctx)
		put, err := c.cli.Txn(rctx).If(
			clientv3.Compare(clientv3.ModRevision(tk), "=", tr.Kvs[0].ModRevision),
			clientv3.Compare(clientv3.ModRevision(rk), "=", rrev),
		).Then(ops...).Commit()
		cancel()
		if err != nil {
			return Route{}, fmt.Errorf("store route of %s: %w", topic, err)
		}
		if put.Succeeded {
			return r, nil
		}
		if err := ctx.Err(); err != nil {
			return Route{}, err
		}
	}
}

// UpdateQueues sets topic's write queue count to write and its read queue count to read
// (at least write) on groups: every group of its route when none are named; named groups not
// yet in the route join it. Growing takes effect at once. Shrinking lowers the write count
// only: producers stop using the removed queues at once, and the group's broker lowers the
// read count (LowerReadQueues) once consumers have drained them. The counts also become the
// topic's per-group defaults.
func (c *Client) UpdateQueues(ctx context.Context, topic string, read, write int32, groups ...string) (Route, error) {
	read = max(read, write)
	if write < 1 || read > MaxQueuesPerTopic {
		return Route{}, fmt.Errorf("topic %s: %d read / %d write queues per broker group; use 1..%d", topic, read, write, MaxQueuesPerTopic)
	}
	for _, g := range groups {
		if err := validateName("broker group", g); err != nil {
			return Route{}, err
		}
	}
	return c.editRoute(ctx, topic, func(t *TopicConfig, r *Route) (bool, error) {
		t.ReadQueues, t.WriteQueues = read, write
		targets := groups
		if len(targets) == 0 {
			for _, q := range r.Queues {
				targets = append(targets, q.Group)
			}
		}
		if len(targets) == 0 {
			return false, fmt.Errorf("topic %s is on no broker group; name the groups to place it on: %w", topic, ErrNoBrokerGroup)
		}
		for _, g := range targets {
			i := slices.IndexFunc(r.Queues, func(q GroupQueues) bool { return q.Group == g })
			if i < 0 {
				r.Queues = append(r.Queues, GroupQueues{Group: g, ReadQueues: read, WriteQueues: write})
				continue
			}
			q := &r.Queues[i]
			q.WriteQueues = write
			q.ReadQueues = max(q.ReadQueues, read)
		}
		return true, nil
	})
}

// AddGroup gives group n queues of topic unless it already has a share; it is how a broker
// group that joined after a topic was created gets queues of the group-local system topics
// (%RETRY%, %DLQ%). It returns the route as stored.
func (c *Client) AddGroup(ctx context.Context, topic, group string, n int32) (Route, error) {
	if err := validateName("broker group", group); err != nil {
		return Route{}, err
	}
	return c.editRoute(ctx, topic, func(_ *TopicConfig, r *Route) (bool, error) {
		if _, ok := r.Share(group); ok {
			return false, nil
		}
		r.Queues = append(r.Queues, GroupQueues{Group: group, ReadQueues: n, WriteQueues: n})
		return true, nil
	})
}

// LowerReadQueues lowers group's read queue count of topic to read, never below its write
// count. The caller (the group's broker) has checked that the queues removed are drained.
func (c *Client) LowerReadQueues(ctx context.Context, topic, group string, read int32) (Route, error) {
	return c.editRoute(ctx, topic, func(_ *TopicConfig, r *Route) (bool, error) {
		i := slices.IndexFunc(r.Queues, func(q GroupQueues) bool { return q.Group == group })
		if i < 0 {
			return false, nil
		}
		q := &r.Queues[i]
		read = max(read, q.WriteQueues)
		if read >= q.ReadQueues {
			return false, nil
		}
		q.ReadQueues = read
		return true, nil
	})
}
