package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
)

// brokerHandler serves the broker role: sends take the asynchronous path where they can
// (sendAsync), everything else serveBroker.
type brokerHandler struct{ b *Broker }

func (h brokerHandler) ServeRemoting(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	return h.b.serveBroker(ctx, conn, req)
}

func (h brokerHandler) ServeAsync(ctx context.Context, conn *remoting.Conn, req *remoting.Command, reply func(*remoting.Command)) bool {
	switch req.Code {
	case remoting.CodeSendMessage, remoting.CodeSendMessageV2, remoting.CodeSendReplyMessage:
		return h.b.sendAsync(ctx, conn, req, reply)
	}
	return false
}

// ServeInline answers on the read goroutine the pulls that need no wait (pullInline).
func (h brokerHandler) ServeInline(ctx context.Context, conn *remoting.Conn, req *remoting.Command) (*remoting.Command, bool) {
	if req.Code != remoting.CodePullMessage {
		return nil, false
	}
	return h.b.pullInline(ctx, conn, req)
}

// serveBroker dispatches the broker role's requests.
func (b *Broker) serveBroker(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	start := time.Now()
	ctx, deny := b.checkACL(ctx, acl.RoleBroker, conn, req)
	if deny != nil {
		b.metrics.request(roleBroker, req.Code, deny.Code, start)
		return deny
	}
	var resp *remoting.Command
	switch req.Code {
	case remoting.CodeSendMessage, remoting.CodeSendMessageV2, remoting.CodeSendReplyMessage:
		resp = b.handleSend(ctx, conn, req)
	case remoting.CodeSendBatchMessage:
		resp = b.handleSendBatch(ctx, conn, req)
	case remoting.CodePullMessage:
		pctx, clock := withHoldClock(ctx)
		resp = b.handlePull(pctx, conn, req)
		start = start.Add(clock.held) // held waiting for messages: not service time
	case remoting.CodeHeartBeat:
		resp = b.handleHeartbeat(ctx, conn, req)
	case remoting.CodeGetConsumerListByGroup:
		resp = b.handleConsumerList(req)
	case remoting.CodeQueryConsumerOffset:
		resp = b.handleQueryOffset(req)
	case remoting.CodeUpdateConsumerOffset:
		resp = b.handleUpdateOffset(req)
	case remoting.CodeGetMaxOffset, remoting.CodeGetMinOffset, remoting.CodeSearchOffsetByTimestamp, remoting.CodeGetEarliestMsgStoreTime:
		resp = b.handleOffsetQuery(ctx, req)
	case remoting.CodeInvokeBrokerToResetOffset:
		resp = b.handleResetOffset(ctx, req)
	case remoting.CodeGetConsumeStats:
		resp = b.handleConsumeStats(ctx, req)
	case remoting.CodeGetTopicStatsInfo:
		resp = b.handleTopicStats(ctx, req)
	case remoting.CodeGetAllTopicConfig:
		resp = b.handleAllTopicConfig(req)
	case remoting.CodeGetBrokerRuntimeInfo:
		resp = b.handleRuntimeInfo(req)
	case remoting.CodeQueryTopicConsumeByWho:
		resp = b.handleConsumeByWho(req)
	case remoting.CodeDeleteSubscriptionGroup:
		resp = b.handleDeleteGroup(ctx, req)
	case remoting.CodeGetConsumerConnectionList:
		resp = b.handleConsumerConnections(req)
	case remoting.CodeGetConsumerRunningInfo:
		resp = b.handleConsumerRunningInfo(ctx, req)
	case remoting.CodeQueryMessage, remoting.CodeViewMessageByID, CodeGetTierLocation:
		resp = b.serveQuery(ctx, req)
	case remoting.CodeUpdateAndCreateTopic:
		resp = b.handleCreateTopic(ctx, req, []string{b.cfg.BrokerName})
	case remoting.CodeDeleteTopicInBroker:
		resp = b.handleDeleteTopic(ctx, req, true)
	case remoting.CodeGetAllSubscriptionGroupConfig:
		resp = b.handleSubscriptionGroups(req)
	case remoting.CodeConsumerSendMsgBack:
		resp = b.handleSendBack(ctx, conn, req)
	case remoting.CodeEndTransaction:
		resp = b.handleEndTransaction(ctx, conn, req)
	case remoting.CodeLockBatchMQ, remoting.CodeUnlockBatchMQ:
		resp = b.handleLock(req)
	case remoting.CodeUnregisterClient:
		b.clients.unregister(conn.ID(), req.ExtFields.StringOr("producerGroup", ""), req.ExtFields.StringOr("consumerGroup", ""))
		resp = remoting.NewResponse(req, remoting.RespSuccess, "")
	case remoting.CodeUpdateAndCreateACLConfig, remoting.CodeDeleteACLConfig, remoting.CodeGetBrokerClusterACLInfo,
		remoting.CodeUpdateGlobalWhiteAddrsConfig, remoting.CodeGetBrokerClusterACLConfig, remoting.CodeACLGrant, remoting.CodeACLRevoke:
		resp = b.serveACLAdmin(ctx, req)
	case remoting.CodeGetRouteInfoByTopic, remoting.CodeGetAllTopicListFromNameServer, remoting.CodeGetBrokerClusterInfo:
		// Tools sometimes ask a broker address for routes; answer as the name server would.
		return b.serveNameServer(ctx, conn, req)
	default:
		resp = remoting.NewResponse(req, remoting.RespRequestCodeNotSupported,
			fmt.Sprintf("request code %d is not supported by this Strata broker", req.Code))
	}
	b.metrics.request(roleBroker, req.Code, resp.Code, start)
	return resp
}

// handleHeartbeat registers producers and consumers of the connection synchronously (§6.1),
// creating each consumer group's config and retry topic.
func (b *Broker) handleHeartbeat(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	var hb heartbeatData
	if err := json.Unmarshal(req.Body, &hb); err != nil {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, fmt.Sprintf("heartbeat body is not valid JSON: %v", err))
	}
	for _, cd := range hb.ConsumerDataSet {
		if cd.GroupName == "" {
			continue
		}
		if _, ok := b.meta.group(cd.GroupName); !ok {
			if _, err := b.meta.createGroupIfAbsent(ctx, defaultGroupInfo(cd.GroupName)); err != nil {
				b.log.Warn("heartbeat: create subscription group", "group", cd.GroupName, "err", err)
			}
		}
		retry := retryTopicPrefix + cd.GroupName
		if t, ok := b.meta.topic(retry); !ok || !t.hasShare(b.cfg.BrokerName) {
			if _, err := b.ensureTopic(ctx, retry, 1); err != nil {
				b.log.Warn("heartbeat: create retry topic", "topic", retry, "err", err)
			}
		}
	}
	hb.language, hb.version = req.Language, req.Version
	if refused := b.clients.register(conn, &hb, time.Now()); len(refused) > 0 {
		// Everything else in the heartbeat is registered; the Go client logs this remark
		// as a warning ("send heart beat to broker failed"), which is where a push
		// consumer's developer can see it.
		msgs := make([]string, len(refused))
		for i, r := range refused {
			msgs[i] = fmt.Sprintf("consumer group %s: the subscription to topic %s is refused: %v", r.group, r.topic, r.err)
		}
		return remoting.NewResponse(req, remoting.RespSubscriptionParseFailed,
			strings.Join(msgs, "; ")+"; fix the expression in the consumer (pulls of the topic fail with this error until then)")
	}
	return remoting.NewResponse(req, remoting.RespSuccess, "")
}

func (b *Broker) handleConsumerList(req *remoting.Command) *remoting.Command {
	group, err := req.ExtFields.String("consumerGroup")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	ids := b.clients.consumerIDs(group)
	if len(ids) == 0 {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("no consumer of group %s is connected to this broker", group))
	}
	body, _ := json.Marshal(struct {
		ConsumerIDList []string `json:"consumerIdList"`
	}{ids})
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

type queueRef struct {
	topic   string
	queueID int32
}

func parseQueueRef(ext remoting.ExtFields) (queueRef, error) {
	t, err := ext.String("topic")
	if err != nil {
		return queueRef{}, err
	}
	q, err := ext.Int32("queueId")
	if err != nil {
		return queueRef{}, err
	}
	return queueRef{t, q}, nil
}

// handleQueryOffset answers the committed offset, or QUERY_NOT_FOUND (22). As RocketMQ's
// broker does, a group with no offset on a queue that never lost a message (min offset 0 in
// both tiers, empty queues included) gets 0, so a new group on a young topic reads from the
// start (§6.7); otherwise QUERY_NOT_FOUND with Java's remark, which clients treat as "no
// offset yet" and answer with their ConsumeFromWhere.
func (b *Broker) handleQueryOffset(req *remoting.Command) *remoting.Command {
	group, err := req.ExtFields.String("consumerGroup")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	q, err := parseQueueRef(req.ExtFields)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	off, ok := b.meta.offset(group, q.topic, q.queueID)
	if !ok && b.queueMinOffset(q.topic, q.queueID) == 0 && !b.clients.consumesFromTimestamp(group) {
		off, ok = 0, true
	}
	if !ok {
		return remoting.NewResponse(req, remoting.RespQueryNotFound, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.ExtFields.SetInt64("offset", off)
	return resp
}

func (b *Broker) handleUpdateOffset(req *remoting.Command) *remoting.Command {
	group, err := req.ExtFields.String("consumerGroup")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	q, err := parseQueueRef(req.ExtFields)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	off, err := req.ExtFields.Int64("commitOffset")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if off < 0 {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, fmt.Sprintf("commitOffset %d is negative", off))
	}
	b.meta.commitOffset(group, q.topic, q.queueID, off)
	return remoting.NewResponse(req, remoting.RespSuccess, "")
}

// handleCreateTopic serves UPDATE_AND_CREATE_TOPIC (17): it creates the topic, or sets its
// queue counts, on groups and writes it to etcd, so its route is visible at once. The broker
// role passes its own group, as a RocketMQ broker creates the topic on itself; the name-server
// role passes the groups of Strata's brokerGroups extField (comma-separated), or nil for every
// live group (new topic) or every group of its route (existing topic), as mqadmin's
// updateTopic -c does for a cluster. Queue counts are per group; a shrink lowers write queues
// at once and read queues once drained (drainReadQueues).
func (b *Broker) handleCreateTopic(ctx context.Context, req *remoting.Command, groups []string) *remoting.Command {
	topic, err := req.ExtFields.String("topic")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if err := validTopicName(topic); err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if topic == autoCreateTopicKey {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, "TBW102 is reserved for topic auto-creation")
	}
	if isInternalTopic(topic) {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, fmt.Sprintf("%s is a system topic of the broker; choose another name", topic))
	}
	read, err := req.ExtFields.Int32Or("readQueueNums", int32(b.cfg.DefaultQueueNums))
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	write, err := req.ExtFields.Int32Or("writeQueueNums", read)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	perm, err := req.ExtFields.Int32Or("perm", int32(permRW))
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if read < 1 || write < 1 || read > 1024 || write > 1024 {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, fmt.Sprintf("queue counts read=%d write=%d must be in 1..1024", read, write))
	}
	if read < write {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, fmt.Sprintf(
			"readQueueNums %d < writeQueueNums %d: messages on the extra write queues could never be read", read, write))
	}
	if err := b.meta.putTopic(ctx, topicInfo{Name: topic, ReadQueueNums: int(read), WriteQueueNums: int(write), Perm: int(perm) & (permRW | permInherit)}, groups); err != nil {
		code := int16(remoting.RespSystemError)
		if errors.Is(err, meta.ErrNoBrokerGroup) || errors.Is(err, meta.ErrInvalidName) {
			code = remoting.RespInvalidParameter
		}
		return remoting.NewResponse(req, code, fmt.Sprintf("create topic %s: %v", topic, err))
	}
	return remoting.NewResponse(req, remoting.RespSuccess, "")
}

// handleDeleteTopic serves DELETE_TOPIC_IN_BROKER (215, also drops local data at once) and
// DELETE_TOPIC_IN_NAMESRV (216). Every broker group drops its data of the deleted topic when
// its view shows the deletion (topicdelete.go): the hot store, a tombstone in the cold tier,
// and the consumer offsets, so a recreated topic starts at offset 0 for every group.
func (b *Broker) handleDeleteTopic(ctx context.Context, req *remoting.Command, local bool) *remoting.Command {
	topic, err := req.ExtFields.String("topic")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if isInternalTopic(topic) {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, fmt.Sprintf("%s is a system topic of the broker; it cannot be deleted", topic))
	}
	if err := b.meta.deleteTopic(ctx, topic); err != nil {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("delete topic %s: %v", topic, err))
	}
	if local {
		if err := b.dropTopic(ctx, topic); err != nil {
			return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("delete topic %s data: %v", topic, err))
		}
	}
	return remoting.NewResponse(req, remoting.RespSuccess, "")
}

func (b *Broker) handleSubscriptionGroups(req *remoting.Command) *remoting.Command {
	type groupJSON struct {
		GroupName                      string `json:"groupName"`
		ConsumeEnable                  bool   `json:"consumeEnable"`
		ConsumeFromMinEnable           bool   `json:"consumeFromMinEnable"`
		ConsumeBroadcastEnable         bool   `json:"consumeBroadcastEnable"`
		RetryMaxTimes                  int    `json:"retryMaxTimes"`
		RetryQueueNums                 int    `json:"retryQueueNums"`
		BrokerID                       int64  `json:"brokerId"`
		WhichBrokerWhenConsumeSlowly   int64  `json:"whichBrokerWhenConsumeSlowly"`
		NotifyConsumerIdsChangedEnable bool   `json:"notifyConsumerIdsChangedEnable"`
	}
	table := map[string]groupJSON{}
	for _, g := range b.meta.groups() {
		table[g.Name] = groupJSON{GroupName: g.Name, ConsumeEnable: g.ConsumeEnable, ConsumeFromMinEnable: true,
			ConsumeBroadcastEnable: g.BroadcastEnable, RetryMaxTimes: g.RetryMaxTimes, RetryQueueNums: g.RetryQueueNums,
			WhichBrokerWhenConsumeSlowly: 1, NotifyConsumerIdsChangedEnable: true}
	}
	body, _ := json.Marshal(map[string]any{
		"subscriptionGroupTable": table,
		"dataVersion":            map[string]int64{"timestamp": time.Now().UnixMilli(), "counter": 0},
	})
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

// handleSendBack serves CONSUMER_SEND_MSG_BACK (36): the message goes to %RETRY%<group>, or
// to %DLQ%<group> past the retry limit (§6.8). It never answers SUCCESS without storing,
// because v2.1.2 clients treat any answer as success.
func (b *Broker) handleSendBack(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	ext := req.ExtFields
	group, err := ext.String("group")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	pos, err := ext.Int64("offset")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	delayLevel, err := ext.Int32Or("delayLevel", 0)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	maxTimes, err := ext.Int32Or("maxReconsumeTimes", 0)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	g, ok := b.meta.group(group)
	if !ok {
		if g, err = b.meta.createGroupIfAbsent(ctx, defaultGroupInfo(group)); err != nil {
			return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("create subscription group %s: %v", group, err))
		}
	}
	if maxTimes <= 0 {
		maxTimes = int32(max(g.RetryMaxTimes, 1))
	}
	rec, err := b.store.ReadAt(pos, 0)
	if err != nil {
		code := remoting.RespSystemError
		if errors.Is(err, store.ErrOffsetNotFound) {
			return remoting.NewResponse(req, code, fmt.Sprintf("no message at commit-log offset %d to send back: %v", pos, err))
		}
		return remoting.NewResponse(req, code, fmt.Sprintf("read message at commit-log offset %d: %v", pos, err))
	}
	old, _, err := message.Decode(rec)
	if err != nil {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("decode message at commit-log offset %d: %v", pos, err))
	}
	// The client names the message by offset: it may send back only what it may read.
	if deny := b.authorizeStored(ctx, req, old.Topic); deny != nil {
		return deny
	}
	props := old.Properties
	if props == nil {
		props = map[string]string{}
	}
	if props[message.PropertyRetryTopic] == "" {
		props[message.PropertyRetryTopic] = old.Topic
	}
	if props[message.PropertyOriginMessageID] == "" {
		origin := ext.StringOr("originMsgId", "")
		if origin == "" {
			origin = old.OffsetMsgID()
		}
		props[message.PropertyOriginMessageID] = origin
	}
	target := retryTopicPrefix + group
	if old.ReconsumeTimes >= maxTimes || delayLevel < 0 {
		target = dlqTopicPrefix + group
		props[message.PropertyDelayLevel] = "-1"
	} else {
		// The retry waits its level (the timer clamps it to the table): 3 + reconsume
		// times unless the client names one, so attempts back off 10s, 30s, 1m, 2m, ...
		level := delayLevel
		if level == 0 {
			level = 3 + old.ReconsumeTimes
		}
		props[message.PropertyDelayLevel] = strconv.Itoa(int(level))
	}
	_, qid, err := b.writableQueue(ctx, target, -1, false)
	if err != nil {
		return sendErrorResponse(req, err)
	}
	m := &message.Message{
		Topic: target, QueueID: qid, Flag: old.Flag, SysFlag: old.SysFlag &^ (message.FlagBornHostV6 | message.FlagStoreHostV6),
		BornTimestamp: old.BornTimestamp, BornHost: old.BornHost, StoreHost: b.storeHost,
		ReconsumeTimes: old.ReconsumeTimes + 1, Body: old.Body, Properties: props,
	}
	p, parked, err := b.timerService().Intercept(props, target, qid)
	if err != nil {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("schedule the retry of the message at commit-log offset %d: %v", pos, err))
	}
	if parked {
		m.Topic, m.QueueID = p.Topic, p.QueueID
	}
	out, err := m.AppendEncoded(nil)
	if err != nil {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("re-encode message for %s: %v", target, err))
	}
	if refused := b.refuseWrite(req); refused != nil {
		return refused
	}
	var res []store.AppendResult
	if parked {
		res, err = b.timerService().Park(ctx, out)
	} else {
		res, err = b.store.Append(ctx, out)
	}
	if err != nil {
		return b.appendErrorResponse(req, target, err)
	}
	if unconfirmed := b.awaitReplicated(ctx, req, recordsEnd(res)); unconfirmed != nil {
		return unconfirmed
	}
	b.metrics.messagesIn.WithLabelValues(target).Inc()
	return remoting.NewResponse(req, remoting.RespSuccess, "")
}

// lockBody is LOCK_BATCH_MQ / UNLOCK_BATCH_MQ's request body (§6.6).
type lockBody struct {
	ConsumerGroup string         `json:"consumerGroup"`
	ClientID      string         `json:"clientId"`
	MQSet         []messageQueue `json:"mqSet"`
}

func (b *Broker) handleLock(req *remoting.Command) *remoting.Command {
	var lb lockBody
	if err := json.Unmarshal(req.Body, &lb); err != nil {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, fmt.Sprintf("lock body is not valid JSON: %v", err))
	}
	if lb.ConsumerGroup == "" || lb.ClientID == "" {
		return remoting.NewResponse(req, remoting.RespInvalidParameter, "lock body needs consumerGroup and clientId")
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	if req.Code == remoting.CodeUnlockBatchMQ {
		b.locks.unlock(lb.ConsumerGroup, lb.ClientID, lb.MQSet)
		return resp
	}
	got := b.locks.lock(lb.ConsumerGroup, lb.ClientID, lb.MQSet, time.Now())
	resp.Body, _ = json.Marshal(struct {
		LockOKMQSet []messageQueue `json:"lockOKMQSet"`
	}{got})
	return resp
}
