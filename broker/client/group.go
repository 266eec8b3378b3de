package client

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/stratamq/strata/broker/remoting"
)

// ResetRequest asks to move a consumer group's offsets on a topic (INVOKE_BROKER_TO_RESET_OFFSET,
// with Strata's offset and queueId extensions).
type ResetRequest struct {
	Group, Topic string
	// TimestampMs resets each queue to the first message stored at or after it; used when
	// Offset is negative.
	TimestampMs int64
	// Offset, when 0 or more, resets to this queue offset (clamped into the queue's range).
	Offset int64
	// QueueID, when 0 or more, resets only this queue id (on every broker group serving the
	// topic); -1 resets every queue.
	QueueID int32
	// KeepNewer keeps a queue's offset when it is already older than the target (RocketMQ's
	// isForce=false).
	KeepNewer bool
}

// ResetOffset resets the group's offsets on every broker group serving the topic; each broker
// stores them in etcd and tells the group's connected consumers. It returns the new offsets.
func (c *Client) ResetOffset(ctx context.Context, r ResetRequest) (map[Queue]int64, error) {
	route, err := c.Route(ctx, r.Topic)
	if err != nil {
		return nil, err
	}
	out := map[Queue]int64{}
	for _, bd := range route.BrokerDatas {
		addr := bd.BrokerAddrs["0"]
		ext := remoting.ExtFields{"topic": r.Topic, "group": r.Group, "timestamp": strconv.FormatInt(r.TimestampMs, 10)}
		ext.SetBool("isForce", !r.KeepNewer)
		if r.Offset >= 0 {
			ext.SetInt64("offset", r.Offset)
		}
		if r.QueueID >= 0 {
			ext.SetInt64("queueId", int64(r.QueueID))
		}
		resp, err := c.invoke(ctx, addr, remoting.NewRequest(remoting.CodeInvokeBrokerToResetOffset, ext, nil))
		if err != nil {
			return out, fmt.Errorf("reset offsets of group %s on broker %s: %w", r.Group, bd.BrokerName, err)
		}
		table, err := decodeResetOffsetBody(resp.Body)
		if err != nil {
			return out, fmt.Errorf("reset offsets of group %s on broker %s: %w", r.Group, bd.BrokerName, err)
		}
		for q, off := range table {
			q.Addr = addr
			out[q] = off
		}
	}
	return out, nil
}

// decodeResetOffsetBody parses {"offsetTable":[[{"topic":..,"brokerName":..,"queueId":..},N],...]}.
func decodeResetOffsetBody(body []byte) (map[Queue]int64, error) {
	var b struct {
		OffsetTable [][2]json.RawMessage `json:"offsetTable"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("reset answer is not a ResetOffsetBody: %w", err)
	}
	out := make(map[Queue]int64, len(b.OffsetTable))
	for _, pair := range b.OffsetTable {
		var mq struct {
			Topic      string `json:"topic"`
			BrokerName string `json:"brokerName"`
			QueueID    int32  `json:"queueId"`
		}
		var off int64
		if err := json.Unmarshal(pair[0], &mq); err != nil {
			return nil, fmt.Errorf("reset answer: bad queue %s: %w", pair[0], err)
		}
		if err := json.Unmarshal(pair[1], &off); err != nil {
			return nil, fmt.Errorf("reset answer: bad offset %s: %w", pair[1], err)
		}
		out[Queue{Topic: mq.Topic, BrokerName: mq.BrokerName, QueueID: mq.QueueID}] = off
	}
	return out, nil
}

// QueueStats is one queue of a consumer group, as `strata group describe` shows it.
type QueueStats struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int32  `json:"queueId"`
	// MinOffset is the oldest offset held in either tier, HotMinOffset the first on the
	// broker's disk (offsets below it are in the cold tier only).
	MinOffset    int64 `json:"minOffset"`
	HotMinOffset int64 `json:"hotMinOffset"`
	MaxOffset    int64 `json:"maxOffset"`
	// ConsumerOffset is the group's committed offset, -1 if none; Lag is -1 then.
	ConsumerOffset int64 `json:"consumerOffset"`
	Lag            int64 `json:"lag"`
	// Tier is where the consumer offset lies: "cold", "hot" or "—".
	Tier string `json:"tier"`
	// Clients counts the group's consumer connections on the queue's broker.
	Clients int `json:"clients"`
}

// ConsumeStats describes a consumer group queue by queue (GET_CONSUME_STATS with Strata's
// body): on topic's brokers, or, with topic "", on every broker for every topic the group
// has offsets for or subscribes to. Queues are sorted by topic, broker and id.
func (c *Client) ConsumeStats(ctx context.Context, group, topic string) ([]QueueStats, error) {
	var addrs map[string]string // broker name → address
	if topic != "" {
		route, err := c.Route(ctx, topic)
		if err != nil {
			return nil, err
		}
		addrs = map[string]string{}
		for _, bd := range route.BrokerDatas {
			addrs[bd.BrokerName] = bd.BrokerAddrs["0"]
		}
	} else {
		var err error
		if addrs, err = c.brokers(ctx); err != nil {
			return nil, err
		}
	}
	var out []QueueStats
	for name, addr := range addrs {
		ext := remoting.ExtFields{"consumerGroup": group}
		if topic != "" {
			ext["topic"] = topic
		}
		resp, err := c.invoke(ctx, addr, remoting.NewRequest(remoting.CodeGetConsumeStats, withStrataFormat(ext), nil))
		if err != nil {
			return nil, fmt.Errorf("consume stats of group %s on broker %s: %w", group, name, err)
		}
		var st struct {
			Version    int          `json:"v"`
			BrokerName string       `json:"brokerName"`
			Clients    int          `json:"clients"`
			Queues     []QueueStats `json:"queues"`
		}
		if err := json.Unmarshal(resp.Body, &st); err != nil || st.Version != 1 {
			return nil, fmt.Errorf("consume stats of group %s on broker %s: not a Strata v1 answer (%v); is it a Strata broker of the same version?", group, name, err)
		}
		for _, q := range st.Queues {
			q.BrokerName, q.Clients = st.BrokerName, st.Clients
			out = append(out, q)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.BrokerName != b.BrokerName {
			return a.BrokerName < b.BrokerName
		}
		return a.QueueID < b.QueueID
	})
	return out, nil
}

// brokers returns every broker group's master address from the name server's cluster info.
func (c *Client) brokers(ctx context.Context) (map[string]string, error) {
	resp, err := c.invoke(ctx, c.namesrv, remoting.NewRequest(remoting.CodeGetBrokerClusterInfo, nil, nil))
	if err != nil {
		return nil, err
	}
	var info struct {
		BrokerAddrTable map[string]struct {
			BrokerAddrs map[string]string `json:"brokerAddrs"`
		} `json:"brokerAddrTable"`
	}
	if err := json.Unmarshal(resp.Body, &info); err != nil {
		return nil, fmt.Errorf("cluster info: bad JSON from %s: %w", c.namesrv, err)
	}
	out := map[string]string{}
	for name, e := range info.BrokerAddrTable {
		if a := e.BrokerAddrs["0"]; a != "" {
			out[name] = a
		}
	}
	return out, nil
}

// withStrataFormat asks GET_CONSUME_STATS for Strata's own body (with the tiers) instead of
// RocketMQ's ConsumeStats.
func withStrataFormat(ext remoting.ExtFields) remoting.ExtFields {
	ext["strataFormat"] = "1"
	return ext
}
