package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/retro"
)

// Offsets across the tiers (retro): the offset queries of PROTOCOL.md §8, group offset resets
// and the consume stats behind `strata group describe`.
//
// INVOKE_BROKER_TO_RESET_OFFSET (222), admin → broker. extFields:
//
//	topic, group       required
//	timestamp          ms; reset each queue to the first offset stored at or after it
//	isForce            default true; false keeps a queue's offset when it is already older
//	offset             Strata extension: reset to this queue offset (clamped into
//	                   [min, max]) instead of a time; timestamp is then ignored
//	queueId            Strata extension: only this queue (default: every queue of the topic
//	                   this broker group serves)
//
// The broker writes the new offsets to etcd at once (meta.OffsetStore.Reset), then sends
// RESET_CONSUMER_CLIENT_OFFSET (220, oneway) to every connected consumer of the group with
// extFields topic, group, timestamp, isForce and the body ResetOffsetBody in gson's array
// form, which the Go client parses: {"offsetTable":[[{"topic":"T","brokerName":"b","queueId":0},42],...]}.
// The answer is SUCCESS with that same body.
//
// A client receiving 220 (Go v2.1.2, Java) suspends, waits about 10 s, then persists the new
// offsets; meanwhile its periodic commits still carry the old, higher offsets. Offsets only
// move forward within a reset generation, so the broker fences each reset queue: commits
// other than the reset offset are ignored until the client acknowledges it by committing
// exactly the reset offset, or resetFenceTTL passes.
//
// GET_CONSUME_STATS (208), admin → broker. extFields consumerGroup, topic (optional: every
// topic the group has offsets for or subscribes to). Strata answers with Java's ConsumeStats
// (admin.go), or with its own JSON body, consumeStats below, when asked (strataFormat=1).

// resetFenceTTL bounds how long a reset queue ignores stale commits.
const resetFenceTTL = 30 * time.Second

// retroLog returns the broker's queues as one log over the hot store and the cold tier.
func (b *Broker) retroLog() *retro.Log { return retro.New(b.store, b.Tier()) }

// handleOffsetQuery serves GET_MAX_OFFSET, GET_MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP and
// GET_EARLIEST_MSG_STORETIME (§8) across both tiers.
func (b *Broker) handleOffsetQuery(ctx context.Context, req *remoting.Command) *remoting.Command {
	q, err := parseQueueRef(req.ExtFields)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	l := b.retroLog()
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	switch req.Code {
	case remoting.CodeGetMaxOffset:
		resp.ExtFields.SetInt64("offset", l.MaxOffset(q.topic, q.queueID))
	case remoting.CodeGetMinOffset:
		resp.ExtFields.SetInt64("offset", l.MinOffset(q.topic, q.queueID))
	case remoting.CodeSearchOffsetByTimestamp:
		ts, err := req.ExtFields.Int64("timestamp")
		if err != nil {
			return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
		}
		if bt := req.ExtFields.StringOr("boundaryType", "LOWER"); bt != "LOWER" {
			return remoting.NewResponse(req, remoting.RespInvalidParameter,
				fmt.Sprintf("boundaryType %s is not supported; Strata answers LOWER (the first offset stored at or after the time)", bt))
		}
		off, err := l.OffsetForTime(ctx, q.topic, q.queueID, ts)
		if err != nil {
			return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
		}
		resp.ExtFields.SetInt64("offset", off)
	case remoting.CodeGetEarliestMsgStoreTime:
		ts, err := l.EarliestStoreTime(ctx, q.topic, q.queueID)
		if err != nil {
			return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
		}
		resp.ExtFields.SetInt64("timestamp", ts)
	}
	return resp
}

// resetMQ is a MessageQueue key of ResetOffsetBody; field order as the Go client expects.
type resetMQ struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int32  `json:"queueId"`
}

// encodeResetOffsetBody writes {"offsetTable":[[mq,offset],...]} (gson's map form). The Go
// client splits this text on "],[" and "}," without a JSON parser, so it must stay compact.
func encodeResetOffsetBody(table map[resetMQ]int64) []byte {
	keys := make([]resetMQ, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Topic != keys[j].Topic {
			return keys[i].Topic < keys[j].Topic
		}
		return keys[i].QueueID < keys[j].QueueID
	})
	var buf bytes.Buffer
	buf.WriteString(`{"offsetTable":[`)
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.WriteByte('[')
		buf.Write(kb)
		buf.WriteByte(',')
		buf.WriteString(strconv.FormatInt(table[k], 10))
		buf.WriteByte(']')
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

// handleResetOffset serves INVOKE_BROKER_TO_RESET_OFFSET (222) with Strata's offset and queueId
// extensions (see above).
func (b *Broker) handleResetOffset(ctx context.Context, req *remoting.Command) *remoting.Command {
	topic, err := req.ExtFields.String("topic")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	group, err := req.ExtFields.String("group")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	force, err := req.ExtFields.BoolOr("isForce", true)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	toOffset, err := req.ExtFields.Int64Or("offset", -1)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	ts, err := req.ExtFields.Int64Or("timestamp", -1)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if toOffset < 0 && ts < 0 {
		return remoting.NewResponse(req, remoting.RespInvalidParameter,
			"reset offset needs timestamp (ms) or Strata's offset extField; give one of them")
	}
	only, err := req.ExtFields.Int32Or("queueId", -1)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	t, ok := b.meta.topic(topic)
	if !ok {
		return remoting.NewResponse(req, remoting.RespTopicNotExist, fmt.Sprintf("topic %s does not exist; check the name with `strata topic list`", topic))
	}
	share, ok := t.share(b.cfg.BrokerName)
	if !ok {
		return remoting.NewResponse(req, remoting.RespTopicNotExist, fmt.Sprintf("broker group %s serves no queue of topic %s", b.cfg.BrokerName, topic))
	}
	queues := make([]int32, 0, share.ReadQueueNums)
	for i := 0; i < share.ReadQueueNums; i++ {
		if only < 0 || int32(i) == only {
			queues = append(queues, int32(i))
		}
	}
	if len(queues) == 0 {
		return remoting.NewResponse(req, remoting.RespInvalidParameter,
			fmt.Sprintf("queue %d is not one of the %d queues broker group %s serves for topic %s", only, share.ReadQueueNums, b.cfg.BrokerName, topic))
	}

	l := b.retroLog()
	table := make(map[resetMQ]int64, len(queues))
	for _, q := range queues {
		var off int64
		if toOffset >= 0 {
			off = l.Clamp(topic, q, toOffset)
		} else if off, err = l.OffsetForTime(ctx, topic, q, ts); err != nil {
			return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
		}
		if cur, ok := b.meta.offset(group, topic, q); ok && !force && cur <= off {
			off = cur
		}
		table[resetMQ{Topic: topic, BrokerName: b.cfg.BrokerName, QueueID: q}] = off
	}
	conns := b.clients.groupConns(group)
	for mq, off := range table {
		k := meta.QueueKey{Group: group, Topic: topic, QueueID: mq.QueueID}
		if len(conns) > 0 {
			b.meta.fences.set(k, off, time.Now().Add(resetFenceTTL))
		}
		if err := b.meta.offsets.Reset(ctx, k, off); err != nil {
			b.meta.fences.clear(k)
			return remoting.NewErrorResponse(req, remoting.RespSystemError, fmt.Errorf("reset offset of group %s: %w; is etcd reachable?", group, err))
		}
	}
	body := encodeResetOffsetBody(table)
	ext := remoting.ExtFields{"topic": topic, "group": group, "timestamp": strconv.FormatInt(ts, 10)}
	ext.SetBool("isForce", force)
	for _, c := range conns {
		note := remoting.NewRequest(remoting.CodeResetConsumerClientOffset, ext, body)
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if err := c.InvokeOneway(wctx, note); err != nil {
			b.log.Warn("reset offset: telling a consumer failed; it reads the new offset at its next rebalance",
				"group", group, "topic", topic, "conn", c.String(), "err", err)
		}
		cancel()
	}
	b.log.Info("consumer offsets reset", "group", group, "topic", topic, "queues", len(table), "clients", len(conns),
		"timestamp", ts, "offset", toOffset)
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

// resetFences holds, per reset queue, the offset a reset wrote and until when commits of any
// other offset are ignored (see above). The zero value is ready to use.
type resetFences struct {
	mu sync.Mutex
	m  map[meta.QueueKey]resetFence
}

type resetFence struct {
	offset int64
	until  time.Time
}

func (f *resetFences) set(k meta.QueueKey, offset int64, until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[meta.QueueKey]resetFence)
	}
	f.m[k] = resetFence{offset: offset, until: until}
}

func (f *resetFences) clear(k meta.QueueKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, k)
}

// hold reports whether a commit of offset to k must be ignored. A commit of exactly the
// reset offset is the client's acknowledgement and lifts the fence.
func (f *resetFences) hold(k meta.QueueKey, offset int64, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[k]
	if !ok {
		return false
	}
	if offset == e.offset || now.After(e.until) {
		delete(f.m, k)
		return false
	}
	return true
}

// groupConns lists the connections of the group's consumers.
func (r *clientRegistry) groupConns(group string) []*remoting.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g := r.consumers[group]; g != nil {
		return g.connsLocked()
	}
	return nil
}

// groupTopics lists the topics the group's connected consumers subscribe to.
func (r *clientRegistry) groupTopics(group string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	if g := r.consumers[group]; g != nil {
		for _, ch := range g.channels {
			for t := range ch.subs {
				out = append(out, t)
			}
		}
	}
	return out
}

// consumesFromTimestamp reports whether a connected consumer of the group registered
// CONSUME_FROM_TIMESTAMP: a group without an offset then gets QUERY_NOT_FOUND, so the client
// searches its start offset by time instead of starting at 0.
func (r *clientRegistry) consumesFromTimestamp(group string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g := r.consumers[group]; g != nil {
		for _, ch := range g.channels {
			if ch.fromWhere == "CONSUME_FROM_TIMESTAMP" {
				return true
			}
		}
	}
	return false
}

// consumeStats is Strata's GET_CONSUME_STATS (208) body, version 1.
type consumeStats struct {
	Version    int          `json:"v"`
	Group      string       `json:"group"`
	BrokerName string       `json:"brokerName"`
	Clients    int          `json:"clients"` // connected consumer connections of the group
	Queues     []queueStats `json:"queues"`
}

// queueStats is one queue of consumeStats.
type queueStats struct {
	Topic     string `json:"topic"`
	QueueID   int32  `json:"queueId"`
	MinOffset int64  `json:"minOffset"` // oldest held in either tier
	MaxOffset int64  `json:"maxOffset"`
	// HotMinOffset is the first offset on local disk; below it, offsets are cold.
	HotMinOffset int64 `json:"hotMinOffset"`
	// ConsumerOffset is the group's committed offset, -1 if it has none.
	ConsumerOffset int64 `json:"consumerOffset"`
	// Lag is MaxOffset-ConsumerOffset, -1 without a committed offset.
	Lag int64 `json:"lag"`
	// Tier is where ConsumerOffset lies: "cold", "hot" or "—".
	Tier string `json:"tier"`
}

// handleConsumeStats serves GET_CONSUME_STATS (208): RocketMQ's ConsumeStats (admin.go), or
// Strata's own body (consumeStats, with the tiers) when the request carries the extField
// strataFormat=1, as `strata group describe` sends it.
func (b *Broker) handleConsumeStats(ctx context.Context, req *remoting.Command) *remoting.Command {
	group, err := req.ExtFields.String("consumerGroup")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	var topics []string
	if t := req.ExtFields.StringOr("topic", ""); t != "" {
		topics = []string{t}
	} else {
		seen := map[string]bool{}
		for k := range b.meta.offsets.Offsets() {
			if k.Group == group && !seen[k.Topic] {
				seen[k.Topic] = true
				topics = append(topics, k.Topic)
			}
		}
		for _, t := range b.clients.groupTopics(group) {
			if !seen[t] {
				seen[t] = true
				topics = append(topics, t)
			}
		}
		sort.Strings(topics)
	}
	if req.ExtFields.StringOr("strataFormat", "") != "1" {
		body, err := b.javaConsumeStats(ctx, group, topics)
		if err != nil {
			return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
		}
		resp := remoting.NewResponse(req, remoting.RespSuccess, "")
		resp.Body = body
		return resp
	}
	l := b.retroLog()
	st := consumeStats{Version: 1, Group: group, BrokerName: b.cfg.BrokerName, Clients: len(b.clients.groupConns(group)), Queues: []queueStats{}}
	for _, topic := range topics {
		t, ok := b.meta.topic(topic)
		if !ok {
			continue
		}
		share, ok := t.share(b.cfg.BrokerName)
		if !ok {
			continue
		}
		for i := 0; i < share.ReadQueueNums; i++ {
			q := int32(i)
			bd := l.Bounds(topic, q)
			qs := queueStats{Topic: topic, QueueID: q, MinOffset: bd.Min, MaxOffset: bd.Max, HotMinOffset: bd.HotMin,
				ConsumerOffset: -1, Lag: -1, Tier: retro.Nowhere.String()}
			if off, ok := b.meta.offset(group, topic, q); ok {
				qs.ConsumerOffset, qs.Lag, qs.Tier = off, max(0, bd.Max-off), bd.Locate(off).String()
			}
			st.Queues = append(st.Queues, qs)
		}
	}
	body, err := json.Marshal(st)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}
