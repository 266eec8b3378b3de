package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RocketMQ permission bits of a topic.
const (
	PermInherit int32 = 1
	PermWrite   int32 = 2
	PermRead    int32 = 4
	PermDefault       = PermRead | PermWrite
)

// Message types of a topic (RocketMQ 5 TopicMessageType names).
const (
	MessageNormal      = "NORMAL"
	MessageFIFO        = "FIFO"
	MessageDelay       = "DELAY"
	MessageTransaction = "TRANSACTION"
	MessageMixed       = "MIXED"
)

// TopicConfig is a topic's configuration, stored at topics/<Name>.
type TopicConfig struct {
	Name string `json:"name"`
	// ReadQueues and WriteQueues are the queue counts a broker group gets when the topic is
	// placed on it (at creation, or when a group joins it with AddGroup). The counts each
	// group serves now are in the topic's Route, which is the truth.
	ReadQueues  int32  `json:"readQueues"`
	WriteQueues int32  `json:"writeQueues"`
	Perm        int32  `json:"perm"`
	MessageType string `json:"messageType"`
	// RetentionMs is how long messages are kept across both tiers; 0 means the cluster default.
	RetentionMs int64 `json:"retentionMs"`
	// Incarnation tells a topic from a deleted one of the same name: the etcd create revision
	// of its key, filled in when read (not stored in the value). Brokers drop local data of an
	// older incarnation (a topic deleted and created again while they were down).
	Incarnation int64 `json:"-"`
}

// MaxQueuesPerTopic bounds a topic's queue count per broker group so its route value stays small.
const MaxQueuesPerTopic = 1024

// Validate fills defaults and reports a config that cannot be stored.
func (t *TopicConfig) Validate() error {
	if err := validateName("topic", t.Name); err != nil {
		return err
	}
	if t.WriteQueues <= 0 {
		t.WriteQueues = 8
	}
	if t.ReadQueues <= 0 {
		t.ReadQueues = t.WriteQueues
	}
	if t.WriteQueues > MaxQueuesPerTopic || t.ReadQueues > MaxQueuesPerTopic {
		return fmt.Errorf("topic %s: %d read / %d write queues per broker group; at most %d", t.Name, t.ReadQueues, t.WriteQueues, MaxQueuesPerTopic)
	}
	if t.ReadQueues < t.WriteQueues {
		return fmt.Errorf("topic %s: %d read queues < %d write queues; messages on the extra write queues could never be read", t.Name, t.ReadQueues, t.WriteQueues)
	}
	if t.Perm == 0 {
		t.Perm = PermDefault
	}
	if t.Perm&^(PermRead|PermWrite|PermInherit) != 0 {
		return fmt.Errorf("topic %s: perm %d has unknown bits; use 2 (write), 4 (read) or 6", t.Name, t.Perm)
	}
	switch t.MessageType {
	case "":
		t.MessageType = MessageNormal
	case MessageNormal, MessageFIFO, MessageDelay, MessageTransaction, MessageMixed:
	default:
		return fmt.Errorf("topic %s: message type %q; use NORMAL, FIFO, DELAY, TRANSACTION or MIXED", t.Name, t.MessageType)
	}
	if t.RetentionMs < 0 {
		return fmt.Errorf("topic %s: negative retention %dms", t.Name, t.RetentionMs)
	}
	return nil
}

// CreateTopic stores a new topic and places its queues: ReadQueues and WriteQueues on each
// of groups, or on every live broker group when none are named (RocketMQ's updateTopic over a
// cluster). The queues keep their groups for life. It fails with ErrExists if the topic is
// already there and with ErrNoBrokerGroup if there is nowhere to place it.
func (c *Client) CreateTopic(ctx context.Context, t TopicConfig, groups ...string) error {
	if err := t.Validate(); err != nil {
		return err
	}
	for _, g := range groups {
		if err := validateName("broker group", g); err != nil {
			return err
		}
	}
	if len(groups) == 0 {
		var err error
		if groups, err = c.liveGroups(ctx); err != nil {
			return fmt.Errorf("create topic %s: %w", t.Name, err)
		}
		if len(groups) == 0 {
			return fmt.Errorf("create topic %s: no broker group is live; start a broker first or name the groups: %w", t.Name, ErrNoBrokerGroup)
		}
	}
	val, _ := json.Marshal(t)
	route, _ := json.Marshal(placeRoute(t.Name, groups, t.ReadQueues, t.WriteQueues))
	tk := c.key(dirTopics, t.Name)
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(tk), "=", 0)).Then(
		clientv3.OpPut(tk, string(val)),
		clientv3.OpPut(c.key(dirRoutes, t.Name), string(route)),
	).Commit()
	if err != nil {
		return fmt.Errorf("store topic %s: %w", t.Name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("create topic %s: %w", t.Name, ErrExists)
	}
	return nil
}

// UpdateTopic replaces an existing topic's permission, message type and retention. Queue
// counts change only through UpdateQueues, so the route is left as it is.
func (c *Client) UpdateTopic(ctx context.Context, t TopicConfig) error {
	if err := t.Validate(); err != nil {
		return err
	}
	_, err := c.editRoute(ctx, t.Name, func(cur *TopicConfig, _ *Route) (bool, error) {
		cur.Perm, cur.MessageType, cur.RetentionMs = t.Perm, t.MessageType, t.RetentionMs
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("update topic %s: %w", t.Name, err)
	}
	return nil
}

// GetTopic reads one topic's config.
func (c *Client) GetTopic(ctx context.Context, name string) (TopicConfig, error) {
	var t TopicConfig
	rev, err := c.getJSONRev(ctx, c.key(dirTopics, name), &t)
	if err != nil {
		return t, fmt.Errorf("get topic %s: %w", name, err)
	}
	t.Incarnation = rev
	return t, nil
}

// ListTopics returns every topic, sorted by name.
func (c *Client) ListTopics(ctx context.Context) ([]TopicConfig, error) {
	var out []TopicConfig
	_, err := c.scanAt(ctx, c.key(dirTopics), 0, func(kv *mvccpb.KeyValue) error {
		var t TopicConfig
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		t.Incarnation = kv.CreateRevision
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteTopic removes a topic and its route. Offsets of groups on it stay until those groups
// are deleted or reset.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	tk := c.key(dirTopics, name)
	resp, err := c.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(tk), ">", 0)).Then(
		clientv3.OpDelete(tk), clientv3.OpDelete(c.key(dirRoutes, name)),
	).Commit()
	if err != nil {
		return fmt.Errorf("delete topic %s: %w", name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("delete topic %s: %w", name, ErrNotFound)
	}
	return nil
}

// SubscriptionGroup is a consumer group's configuration, stored at subgroups/<Name>.
type SubscriptionGroup struct {
	Name          string `json:"name"`
	ConsumeEnable bool   `json:"consumeEnable"`
	// ConsumeBroadcast is broadcasting mode (every consumer gets every message); false is
	// clustering mode.
	ConsumeBroadcast     bool  `json:"consumeBroadcast"`
	ConsumeFromMinEnable bool  `json:"consumeFromMinEnable"`
	RetryQueueNums       int32 `json:"retryQueueNums"`
	// MaxReconsumeTimes is how often a message is retried before it goes to the dead-letter
	// queue %DLQ%<group>.
	MaxReconsumeTimes int32 `json:"maxReconsumeTimes"`
	// RetryPolicy names the retry delay schedule: "delay-levels" (RocketMQ's 1s 5s 10s 30s 1m
	// ... 2h) or "exponential".
	RetryPolicy string `json:"retryPolicy"`
}

// Validate fills RocketMQ's defaults and reports a config that cannot be stored.
func (g *SubscriptionGroup) Validate() error {
	if err := validateName("group", g.Name); err != nil {
		return err
	}
	if g.RetryQueueNums <= 0 {
		g.RetryQueueNums = 1
	}
	if g.MaxReconsumeTimes == 0 {
		g.MaxReconsumeTimes = 16
	}
	if g.MaxReconsumeTimes < 0 {
		return fmt.Errorf("group %s: negative max reconsume times", g.Name)
	}
	switch g.RetryPolicy {
	case "":
		g.RetryPolicy = "delay-levels"
	case "delay-levels", "exponential":
	default:
		return fmt.Errorf("group %s: retry policy %q; use delay-levels or exponential", g.Name, g.RetryPolicy)
	}
	return nil
}

// PutSubscriptionGroup creates or replaces a subscription group.
func (c *Client) PutSubscriptionGroup(ctx context.Context, g SubscriptionGroup) error {
	if err := g.Validate(); err != nil {
		return err
	}
	val, _ := json.Marshal(g)
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	if _, err := c.cli.Put(rctx, c.key(dirSubGroups, g.Name), string(val)); err != nil {
		return fmt.Errorf("put subscription group %s: %w", g.Name, err)
	}
	return nil
}

// GetSubscriptionGroup reads one subscription group.
func (c *Client) GetSubscriptionGroup(ctx context.Context, name string) (SubscriptionGroup, error) {
	var g SubscriptionGroup
	if err := c.getJSON(ctx, c.key(dirSubGroups, name), &g); err != nil {
		return g, fmt.Errorf("get subscription group %s: %w", name, err)
	}
	return g, nil
}

// ListSubscriptionGroups returns every subscription group, sorted by name.
func (c *Client) ListSubscriptionGroups(ctx context.Context) ([]SubscriptionGroup, error) {
	var out []SubscriptionGroup
	err := c.listJSON(ctx, c.key(dirSubGroups), func(v []byte) error {
		var g SubscriptionGroup
		if err := json.Unmarshal(v, &g); err != nil {
			return err
		}
		out = append(out, g)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list subscription groups: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteSubscriptionGroup removes a subscription group and all its committed offsets.
func (c *Client) DeleteSubscriptionGroup(ctx context.Context, name string) error {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Delete(rctx, c.key(dirSubGroups, name))
	if err != nil {
		return fmt.Errorf("delete subscription group %s: %w", name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("delete subscription group %s: %w", name, ErrNotFound)
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, key string, v any) error {
	_, err := c.getJSONRev(ctx, key, v)
	return err
}

// getJSONRev decodes key's value into v and returns the key's create revision.
func (c *Client) getJSONRev(ctx context.Context, key string, v any) (int64, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, key)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, ErrNotFound
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return resp.Kvs[0].CreateRevision, nil
}

// listJSON visits every value under prefix, a page at a time so no response grows large.
func (c *Client) listJSON(ctx context.Context, prefix string, visit func([]byte) error) error {
	return c.scan(ctx, prefix, 0, func(k, v []byte) error {
		if err := visit(v); err != nil {
			return fmt.Errorf("decode %s: %w", k, err)
		}
		return nil
	})
}

const scanPage = 2000

// scanKV visits every key under prefix with its mod revision, at one revision, paging.
func (c *Client) scanKV(ctx context.Context, prefix string, visit func(k string, v []byte, modRev int64) error) error {
	_, err := c.scanAt(ctx, prefix, 0, func(kv *mvccpb.KeyValue) error {
		return visit(string(kv.Key), kv.Value, kv.ModRevision)
	})
	return err
}

// scan visits every key under prefix at one revision (rev 0 = latest), paging.
func (c *Client) scan(ctx context.Context, prefix string, rev int64, visit func(k, v []byte) error) error {
	_, err := c.scanAt(ctx, prefix, rev, func(kv *mvccpb.KeyValue) error { return visit(kv.Key, kv.Value) })
	return err
}

// scanAt visits every key under prefix at revision rev (0 = latest) and returns the revision read.
func (c *Client) scanAt(ctx context.Context, prefix string, rev int64, visit func(*mvccpb.KeyValue) error) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		rctx, cancel := c.reqCtx(ctx)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(scanPage)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := c.cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			return 0, err
		}
		for _, kv := range resp.Kvs {
			if err := visit(kv); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return resp.Header.Revision, nil
		}
		rev = resp.Header.Revision
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
