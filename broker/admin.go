package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
)

// Admin requests answered in the JSON RocketMQ's Java broker sends, so mqadmin and
// rocketmq-dashboard read them. The Java broker serialises with fastjson, whose output
// differs from encoding/json in two ways these encoders reproduce:
//
//   - a map whose keys are objects (MessageQueue) is written with the key object itself as
//     the key: {"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{...}}}; and
//   - object fields are written in alphabetical order.
//
// integration/testdata/admin/ holds one recorded answer per request with where each field
// comes from (README.md there).

// fastjsonMQ is a MessageQueue as fastjson writes it: fields in alphabetical order.
type fastjsonMQ struct {
	BrokerName string `json:"brokerName"`
	QueueID    int32  `json:"queueId"`
	Topic      string `json:"topic"`
}

// mqEntry is one entry of a map keyed by MessageQueue.
type mqEntry struct {
	mq  fastjsonMQ
	val any
}

// writeMQMap writes entries as fastjson writes a HashMap<MessageQueue, V>, sorted by topic
// and queue id so the output is stable.
func writeMQMap(buf *bytes.Buffer, entries []mqEntry) error {
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i].mq, entries[j].mq
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.BrokerName != b.BrokerName {
			return a.BrokerName < b.BrokerName
		}
		return a.QueueID < b.QueueID
	})
	buf.WriteByte('{')
	for i, e := range entries {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, err := json.Marshal(e.mq)
		if err != nil {
			return err
		}
		v, err := json.Marshal(e.val)
		if err != nil {
			return err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return nil
}

// offsetWrapper is RocketMQ's OffsetWrapper.
type offsetWrapper struct {
	BrokerOffset   int64 `json:"brokerOffset"`
	ConsumerOffset int64 `json:"consumerOffset"`
	LastTimestamp  int64 `json:"lastTimestamp"`
}

// javaConsumeStats answers GET_CONSUME_STATS (208) as RocketMQ's ConsumeStats:
// {"consumeTps":0.0,"offsetTable":{mq:{"brokerOffset","consumerOffset","lastTimestamp"}}}.
// brokerOffset is the queue's max offset across both tiers, consumerOffset the group's
// committed offset (0 without one, as Java), lastTimestamp the store time of the last
// consumed message (0 if none).
func (b *Broker) javaConsumeStats(ctx context.Context, group string, topics []string) ([]byte, error) {
	l := b.retroLog()
	var entries []mqEntry
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
			w := offsetWrapper{BrokerOffset: l.MaxOffset(topic, q)}
			if off, ok := b.meta.offset(group, topic, q); ok {
				w.ConsumerOffset = off
				if off > 0 {
					w.LastTimestamp = b.storeTimeAt(ctx, topic, q, off-1)
				}
			}
			entries = append(entries, mqEntry{fastjsonMQ{b.cfg.BrokerName, q, topic}, w})
		}
	}
	var buf bytes.Buffer
	buf.WriteString(`{"consumeTps":0.0,"offsetTable":`)
	if err := writeMQMap(&buf, entries); err != nil {
		return nil, err
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// storeTimeAt is the store time of the message at offset, from local disk (0 when it is
// only in the bucket or gone: admin views show it as unknown).
func (b *Broker) storeTimeAt(ctx context.Context, topic string, queueID int32, offset int64) int64 {
	res, err := b.store.Read(ctx, store.ReadRequest{Topic: topic, QueueID: queueID, Offset: offset, MaxMessages: 1, MaxBytes: 1})
	if err != nil || len(res.Entries) == 0 || res.Entries[0].QueueOffset != offset {
		return 0
	}
	return res.Entries[0].StoreTimestamp
}

// handleTopicStats serves GET_TOPIC_STATS_INFO (202) as RocketMQ's TopicStatsTable:
// {"offsetTable":{mq:{"lastUpdateTimestamp","maxOffset","minOffset"}}} for this broker
// group's queues of the topic.
func (b *Broker) handleTopicStats(ctx context.Context, req *remoting.Command) *remoting.Command {
	topic, err := req.ExtFields.String("topic")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	t, ok := b.meta.topic(topic)
	if !ok {
		return remoting.NewResponse(req, remoting.RespTopicNotExist, fmt.Sprintf("topic %s does not exist", topic))
	}
	type topicOffset struct {
		LastUpdateTimestamp int64 `json:"lastUpdateTimestamp"`
		MaxOffset           int64 `json:"maxOffset"`
		MinOffset           int64 `json:"minOffset"`
	}
	l := b.retroLog()
	var entries []mqEntry
	if share, ok := t.share(b.cfg.BrokerName); ok {
		for i := 0; i < share.ReadQueueNums; i++ {
			q := int32(i)
			bd := l.Bounds(topic, q)
			to := topicOffset{MinOffset: bd.Min, MaxOffset: bd.Max}
			if bd.Max > 0 {
				to.LastUpdateTimestamp = b.storeTimeAt(ctx, topic, q, bd.Max-1)
			}
			entries = append(entries, mqEntry{fastjsonMQ{b.cfg.BrokerName, q, topic}, to})
		}
	}
	var buf bytes.Buffer
	buf.WriteString(`{"offsetTable":`)
	if err := writeMQMap(&buf, entries); err != nil {
		return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
	}
	buf.WriteByte('}')
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = buf.Bytes()
	return resp
}

// javaTopicConfig is RocketMQ's TopicConfig, fields in fastjson's order.
type javaTopicConfig struct {
	Order           bool              `json:"order"`
	Perm            int               `json:"perm"`
	ReadQueueNums   int               `json:"readQueueNums"`
	TopicFilterType string            `json:"topicFilterType"`
	TopicName       string            `json:"topicName"`
	TopicSysFlag    int               `json:"topicSysFlag"`
	WriteQueueNums  int               `json:"writeQueueNums"`
	Attributes      map[string]string `json:"attributes"`
}

// handleAllTopicConfig serves GET_ALL_TOPIC_CONFIG (21) as RocketMQ's
// TopicConfigSerializeWrapper: every topic this broker group serves, with its own queue
// counts, and a dataVersion.
func (b *Broker) handleAllTopicConfig(req *remoting.Command) *remoting.Command {
	table := map[string]javaTopicConfig{}
	for _, t := range b.meta.topics() {
		share, ok := t.share(b.cfg.BrokerName)
		if !ok {
			continue
		}
		table[t.Name] = javaTopicConfig{Perm: t.Perm, ReadQueueNums: share.ReadQueueNums, WriteQueueNums: share.WriteQueueNums,
			TopicFilterType: "SINGLE_TAG", TopicName: t.Name, Attributes: map[string]string{}}
	}
	body, err := json.Marshal(struct {
		DataVersion      dataVersion                `json:"dataVersion"`
		TopicConfigTable map[string]javaTopicConfig `json:"topicConfigTable"`
	}{b.dataVersion(), table})
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

// dataVersion is RocketMQ's DataVersion: the etcd revision of the view stands in for its
// counter, so it moves whenever the metadata does.
type dataVersion struct {
	Counter   int64 `json:"counter"`
	Timestamp int64 `json:"timestamp"`
}

func (b *Broker) dataVersion() dataVersion {
	// Clients decode the counter as an int32 (the Go admin API does).
	return dataVersion{Counter: b.meta.view.Snapshot().Revision & 0x7fffffff, Timestamp: b.started.UnixMilli()}
}

// handleConsumeByWho serves QUERY_TOPIC_CONSUME_BY_WHO (300) as RocketMQ's GroupList: the
// consumer groups with a committed offset on the topic in this broker group or a connected
// consumer subscribed to it.
func (b *Broker) handleConsumeByWho(req *remoting.Command) *remoting.Command {
	topic, err := req.ExtFields.String("topic")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	groups := map[string]bool{}
	for k := range b.meta.offsets.Offsets() {
		if k.Topic == topic {
			groups[k.Group] = true
		}
	}
	for _, g := range b.clients.groupsSubscribedTo(topic) {
		groups[g] = true
	}
	list := make([]string, 0, len(groups))
	for g := range groups {
		list = append(list, g)
	}
	sort.Strings(list)
	body, _ := json.Marshal(struct {
		GroupList []string `json:"groupList"`
	}{list})
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

// handleDeleteGroup serves DELETE_SUBSCRIPTIONGROUP (207): the group's config goes from etcd
// and, with cleanOffset (the default here, as deleting a group in Strata's etcd removes it
// everywhere), this broker group's committed offsets of it.
func (b *Broker) handleDeleteGroup(ctx context.Context, req *remoting.Command) *remoting.Command {
	group, err := req.ExtFields.String("groupName")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	clean, err := req.ExtFields.BoolOr("cleanOffset", true)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if err := b.mc.DeleteSubscriptionGroup(ctx, group); err != nil && !isNotFound(err) {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("delete subscription group %s: %v", group, err))
	}
	if clean {
		if err := b.meta.offsets.ForgetGroup(ctx, group); err != nil {
			return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("delete offsets of group %s: %v; is etcd reachable?", group, err))
		}
	}
	return remoting.NewResponse(req, remoting.RespSuccess, "")
}

// handleRuntimeInfo serves GET_BROKER_RUNTIME_INFO (28) as RocketMQ's KVTable
// {"table":{...}}: the keys rocketmq-dashboard and mqadmin brokerStatus read, from what
// Strata measures (message counters since start, offsets, the cold tier).
func (b *Broker) handleRuntimeInfo(req *remoting.Command) *remoting.Command {
	in := counterTotal(b.metrics.reg, "strata_broker_messages_in_total")
	out := counterTotal(b.metrics.reg, "strata_broker_messages_out_total")
	up := time.Since(b.started)
	tps := func(n float64) string { return strconv.FormatFloat(n/max(up.Seconds(), 1), 'f', 2, 64) }
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	table := map[string]string{
		"brokerVersionDesc":           "V5_3_0",
		"brokerVersion":               "493",
		"msgPutTotalTodayNow":         strconv.FormatInt(int64(in), 10),
		"msgGetTotalTodayNow":         strconv.FormatInt(int64(out), 10),
		"msgPutTotalYesterdayMorning": "0",
		"msgPutTotalTodayMorning":     "0",
		"msgGetTotalYesterdayMorning": "0",
		"msgGetTotalTodayMorning":     "0",
		"putTps":                      tps(in),
		"getTransferedTps":            tps(out),
		"bootTimestamp":               strconv.FormatInt(b.started.UnixMilli(), 10),
		"runtime":                     fmt.Sprintf("[ %d days, %d hours, %d minutes, %d seconds ]", int(up.Hours())/24, int(up.Hours())%24, int(up.Minutes())%60, int(up.Seconds())%60),
		"commitLogMinOffset":          strconv.FormatInt(b.store.MinCommitLogOffset(), 10),
		"commitLogMaxOffset":          strconv.FormatInt(b.store.MaxCommitLogOffset(), 10),
		"brokerActive":                "true",
		"brokerRole":                  "ASYNC_MASTER",
		"heldPulls":                   strconv.FormatInt(b.held.Load(), 10),
		"goHeapInuseBytes":            strconv.FormatUint(ms.HeapInuse, 10),
	}
	if b.repl != nil {
		// RocketMQ's brokerRole, plus what `strata cluster status` shows of replication.
		st := b.repl.status()
		switch {
		case !st.master:
			table["brokerRole"] = "SLAVE"
		case b.repl.cfg.Mode == ReplicationSync:
			table["brokerRole"] = "SYNC_MASTER"
		}
		if st.master {
			table["replicationInSync"] = strings.Join(st.inSync, ",")
			for _, f := range st.followers {
				table["replicationLagBytes."+f.Member] = strconv.FormatInt(f.LagBytes, 10)
				table["replicationLagMillis."+f.Member] = strconv.FormatInt(f.LagTime.Milliseconds(), 10)
			}
		}
	}
	if b.tier != nil {
		table["tierOffloadWatermark"] = strconv.FormatInt(b.tier.OffloadWatermark(), 10)
		table["tierOffloadLagBytes"] = strconv.FormatInt(max(0, b.store.MaxCommitLogOffset()-b.tier.OffloadWatermark()), 10)
	}
	body, _ := json.Marshal(struct {
		Table map[string]string `json:"table"`
	}{table})
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

// handleConsumerRunningInfo serves GET_CONSUMER_RUNNING_INFO (307) from an admin tool by
// relaying it to the named client's connection, as RocketMQ's broker does; the client's
// answer (its ConsumerRunningInfo) comes back unchanged.
func (b *Broker) handleConsumerRunningInfo(ctx context.Context, req *remoting.Command) *remoting.Command {
	group, err := req.ExtFields.String("consumerGroup")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	clientID, err := req.ExtFields.String("clientId")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	conn := b.clients.consumerConn(group, clientID)
	if conn == nil {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("The Consumer <%s> <%s> not online", group, clientID))
	}
	ext := remoting.ExtFields{"consumerGroup": group, "clientId": clientID, "jstackEnable": req.ExtFields.StringOr("jstackEnable", "false")}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := conn.Invoke(ictx, remoting.NewRequest(remoting.CodeGetConsumerRunningInfo, ext, nil))
	if err != nil {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("ask consumer %s of group %s for its running info: %v", clientID, group, err))
	}
	resp := remoting.NewResponse(req, out.Code, out.Remark)
	resp.Body = out.Body
	return resp
}

// handleConsumerConnections serves GET_CONSUMER_CONNECTION_LIST (203) as RocketMQ's
// ConsumerConnection: the group's connections and subscriptions as their heartbeats
// registered them.
func (b *Broker) handleConsumerConnections(req *remoting.Command) *remoting.Command {
	group, err := req.ExtFields.String("consumerGroup")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	cc, ok := b.clients.connectionsOf(group)
	if !ok {
		return remoting.NewResponse(req, remoting.RespConsumerNotOnline, fmt.Sprintf("the consumer group %s not online", group))
	}
	body, err := json.Marshal(cc)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

// javaConnection is RocketMQ's Connection.
type javaConnection struct {
	ClientAddr string `json:"clientAddr"`
	ClientID   string `json:"clientId"`
	Language   string `json:"language"`
	Version    int16  `json:"version"`
}

// javaSubscription is RocketMQ's SubscriptionData.
type javaSubscription struct {
	ClassFilterMode bool            `json:"classFilterMode"`
	CodeSet         []int64         `json:"codeSet"`
	ExpressionType  string          `json:"expressionType"`
	SubString       string          `json:"subString"`
	SubVersion      json.RawMessage `json:"subVersion"`
	TagsSet         []string        `json:"tagsSet"`
	Topic           string          `json:"topic"`
}

// consumerConnection is RocketMQ's ConsumerConnection.
type consumerConnection struct {
	ConnectionSet     []javaConnection            `json:"connectionSet"`
	ConsumeFromWhere  string                      `json:"consumeFromWhere"`
	ConsumeType       string                      `json:"consumeType"`
	MessageModel      string                      `json:"messageModel"`
	SubscriptionTable map[string]javaSubscription `json:"subscriptionTable"`
}

// connectionsOf builds the group's ConsumerConnection; ok is false when none is connected.
func (r *clientRegistry) connectionsOf(group string) (consumerConnection, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.consumers[group]
	if g == nil || len(g.channels) == 0 {
		return consumerConnection{}, false
	}
	cc := consumerConnection{ConnectionSet: []javaConnection{}, SubscriptionTable: map[string]javaSubscription{}}
	var newest time.Time
	for _, ch := range g.channels {
		cc.ConnectionSet = append(cc.ConnectionSet, javaConnection{ClientAddr: ch.conn.RemoteAddr().String(), ClientID: ch.clientID,
			Language: ch.language, Version: ch.version})
		if ch.lastHeartbeat.After(newest) {
			newest = ch.lastHeartbeat
			cc.ConsumeFromWhere, cc.ConsumeType, cc.MessageModel = ch.fromWhere, ch.consumeType, ch.messageModel
		}
		for _, sd := range ch.subData {
			js := javaSubscription{ClassFilterMode: sd.ClassFilterMode, CodeSet: []int64{}, ExpressionType: sd.ExpressionType,
				SubString: sd.SubString, SubVersion: sd.SubVersion, TagsSet: sd.TagsSet, Topic: sd.Topic}
			for _, c := range sd.CodeSet {
				js.CodeSet = append(js.CodeSet, int64(c))
			}
			if js.TagsSet == nil {
				js.TagsSet = []string{}
			}
			if len(js.SubVersion) == 0 {
				js.SubVersion = json.RawMessage("0")
			}
			cc.SubscriptionTable[sd.Topic] = js
		}
	}
	sort.Slice(cc.ConnectionSet, func(i, j int) bool { return cc.ConnectionSet[i].ClientID < cc.ConnectionSet[j].ClientID })
	return cc, true
}

// consumerConn finds the connection of a group's consumer by client id.
func (r *clientRegistry) consumerConn(group, clientID string) *remoting.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g := r.consumers[group]; g != nil {
		for _, ch := range g.channels {
			if ch.clientID == clientID {
				return ch.conn
			}
		}
	}
	return nil
}

// groupsSubscribedTo lists the consumer groups with a connected consumer subscribed to topic.
func (r *clientRegistry) groupsSubscribedTo(topic string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for name, g := range r.consumers {
		for _, ch := range g.channels {
			if _, ok := ch.subs[topic]; ok {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// counterTotal sums a counter family of reg over its labels (admin answers only; it gathers
// the whole registry).
func counterTotal(reg *prometheus.Registry, name string) float64 {
	fams, err := reg.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func isNotFound(err error) bool { return errors.Is(err, meta.ErrNotFound) }
