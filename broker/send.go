package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/broker/timer"
)

// Topic prefixes of RocketMQ's per-group system topics.
const (
	retryTopicPrefix = "%RETRY%"
	dlqTopicPrefix   = "%DLQ%"
)

// sendHeader is a SEND_MESSAGE request header, V1 keys (§5.1) or V2 one-letter keys (§5.2).
type sendHeader struct {
	producerGroup     string
	topic             string
	queueID           int32
	sysFlag           int32
	bornTimestamp     int64
	flag              int32
	properties        string
	reconsumeTimes    int32
	maxReconsumeTimes int32
	batch             bool
}

func parseSendHeader(ext remoting.ExtFields, v2 bool) (sendHeader, error) {
	k := func(v1, short string) string {
		if v2 {
			return short
		}
		return v1
	}
	var h sendHeader
	var err error
	h.producerGroup = ext.StringOr(k("producerGroup", "a"), "")
	if h.topic, err = ext.String(k("topic", "b")); err != nil {
		return h, err
	}
	if h.queueID, err = ext.Int32Or(k("queueId", "e"), -1); err != nil {
		return h, err
	}
	if h.sysFlag, err = ext.Int32Or(k("sysFlag", "f"), 0); err != nil {
		return h, err
	}
	if born := k("bornTimestamp", "g"); ext.StringOr(born, "") == "" {
		h.bornTimestamp = time.Now().UnixMilli() // read only when needed: it showed in profiles
	} else if h.bornTimestamp, err = ext.Int64(born); err != nil {
		return h, err
	}
	if h.flag, err = ext.Int32Or(k("flag", "h"), 0); err != nil {
		return h, err
	}
	h.properties = ext.StringOr(k("properties", "i"), "")
	if h.reconsumeTimes, err = ext.Int32Or(k("reconsumeTimes", "j"), 0); err != nil {
		return h, err
	}
	if h.maxReconsumeTimes, err = ext.Int32Or(k("maxReconsumeTimes", "l"), 0); err != nil {
		return h, err
	}
	if h.batch, err = ext.BoolOr(k("batch", "m"), false); err != nil {
		return h, err
	}
	return h, nil
}

// validTopicName applies RocketMQ's topic rules (§5.3 step 1).
func validTopicName(t string) error {
	limit := message.MaxTopicBytes
	if len(t) > limit {
		return fmt.Errorf("topic name %.40q... is %d bytes; the limit is %d", t, len(t), limit)
	}
	if !validTopicChars(t) {
		return fmt.Errorf("topic name %q may use only letters, digits, '_', '-', '%%' and '|'", t)
	}
	return nil
}

// validTopicChars reports whether t is non-empty and matches topicNameRE, without the regexp
// (it runs on every send).
func validTopicChars(t string) bool {
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '%', c == '|':
		default:
			return false
		}
	}
	return t != ""
}

// sendError is a failed send: the response code and a remark the user can act on.
type sendError struct {
	code   int16
	remark string
}

func (e *sendError) Error() string { return e.remark }

func sendErrorf(code int16, format string, args ...any) error {
	return &sendError{code: code, remark: fmt.Sprintf(format, args...)}
}

// writableQueue finds (or auto-creates) topic and resolves the queue this broker appends to.
// queueID < 0 picks one at random.
func (b *Broker) writableQueue(ctx context.Context, topic string, queueID int32, autoCreate bool) (*writableTopic, int32, error) {
	t, err := b.writableTopic(ctx, topic, autoCreate)
	if err != nil {
		return nil, 0, err
	}
	if queueID < 0 {
		queueID = rand.Int32N(t.writeQueueNums)
	}
	if queueID >= t.writeQueueNums {
		return nil, 0, sendErrorf(remoting.RespInvalidParameter, "queue %d of topic %s is not writable on broker %s (it has %d write queues); refresh the route",
			queueID, topic, b.cfg.BrokerName, t.writeQueueNums)
	}
	return t, queueID, nil
}

// isGroupSystemTopic reports whether topic is a consumer group's retry or dead-letter topic,
// which every broker group writes to (send-back lands on the broker that served the pull).
func isGroupSystemTopic(topic string) bool {
	return strings.HasPrefix(topic, retryTopicPrefix) || strings.HasPrefix(topic, dlqTopicPrefix)
}

// ensureTopic creates topic with n queues per group unless it exists, gives this broker's
// group a share if it has none, and returns it.
func (b *Broker) ensureTopic(ctx context.Context, topic string, n int) (topicInfo, error) {
	return b.meta.createTopicIfAbsent(ctx, topicInfo{Name: topic, ReadQueueNums: n, WriteQueueNums: n, Perm: permRW}, b.cfg.BrokerName)
}

// handleSend serves SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_REPLY_MESSAGE (324).
func (b *Broker) handleSend(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	h, err := parseSendHeader(req.ExtFields, req.Code == remoting.CodeSendMessageV2)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	p, refused := b.planSend(ctx, conn, req, h, nil)
	if refused != nil {
		return refused
	}
	return b.completeSend(ctx, p)
}

// sendAsync serves a send without a goroutine of its own where nothing on the way can wait:
// its topic is known and writable as checked by an earlier send, and no in-sync set has to
// confirm it (replication waits on the send's goroutine). The append is answered by the
// store's callback. It reports false, having done nothing, for any other send; handleSend
// serves those.
func (b *Broker) sendAsync(ctx context.Context, conn *remoting.Conn, req *remoting.Command, reply func(*remoting.Command)) bool {
	if b.repl != nil {
		return false
	}
	h, err := parseSendHeader(req.ExtFields, req.Code == remoting.CodeSendMessageV2)
	if err != nil || strings.HasPrefix(h.topic, retryTopicPrefix) || !b.sendTopicReady(h.topic) {
		return false
	}
	start := time.Now()
	answer := func(resp *remoting.Command) {
		b.metrics.request(roleBroker, req.Code, resp.Code, start)
		reply(resp)
	}
	ctx, deny := b.checkACL(ctx, acl.RoleBroker, conn, req)
	if deny != nil {
		answer(deny)
		return true
	}
	p, refused := b.planSend(ctx, conn, req, h, getRecordBuf())
	switch {
	case refused != nil:
		answer(refused)
	case p.half || p.parked:
		// The transaction log and the timer answer on the caller's goroutine.
		go func() { answer(b.completeSend(ctx, p)) }()
	default:
		// h and the record hold all the header said: its map serves the next request.
		req.ReleaseExtFields()
		err := b.store.AppendAsync(p.wt.queue(p.qid), [][]byte{p.rec}, func(res []store.AppendResult, err error) {
			if err != nil {
				answer(b.appendErrorResponse(req, p.topic, err))
			} else {
				answer(b.sendResponse(p, res))
			}
			putRecordBuf(p.rec) // the store holds no reference once it answers
		})
		if err != nil {
			answer(b.appendErrorResponse(req, p.topic, err))
		}
	}
	return true
}

// sendTopicReady reports whether a send to topic finds it writable without looking further
// than the topics already checked (no etcd, no auto-creation).
func (b *Broker) sendTopicReady(topic string) bool {
	_, ok := b.sendTopics.current(topic, b.meta.view.Snapshot(), b.incarnations.version.Load())
	return ok
}

// sendPlan is a validated send with its record built: what remains is to append it and
// answer.
type sendPlan struct {
	req    *remoting.Command
	conn   *remoting.Conn
	h      sendHeader
	props  sendProps
	m      *message.Message
	wt     *writableTopic
	qid    int32
	topic  string // where it is stored: h.topic, or a dead-letter topic
	uniq   string
	half   bool   // a transaction's half message; rec is not built
	parked bool   // scheduled: rec is the parked record
	rec    []byte // the record to append
}

// planSend checks a send with header h and builds its record. A non-nil response refuses it.
// buf, when not nil, is where the record is built.
func (b *Broker) planSend(ctx context.Context, conn *remoting.Conn, req *remoting.Command, h sendHeader, buf []byte) (*sendPlan, *remoting.Command) {
	if len(req.Body) > b.cfg.MaxMessageBytes {
		return nil, remoting.NewResponse(req, remoting.RespMessageIllegal,
			fmt.Sprintf("message body is %d bytes, over this broker's limit of %d bytes (MaxMessageBytes); send smaller messages or raise the limit", len(req.Body), b.cfg.MaxMessageBytes))
	}
	if timer.IsSystemTopic(h.topic) {
		return nil, remoting.NewResponse(req, remoting.RespNoPermission,
			fmt.Sprintf("topic %s is a system topic of scheduled delivery; send to your own topic with a delay level or a delivery time", h.topic))
	}
	if refused := b.refuseWrite(req); refused != nil {
		return nil, refused
	}
	p := &sendPlan{req: req, conn: conn, h: h}
	p.props.parse(h.properties)
	p.half = p.props.get(message.PropertyTransactionPrep) == "true" || h.sysFlag&message.FlagTransactionMask == message.FlagTransactionPrepared
	topic := h.topic
	if strings.HasPrefix(topic, retryTopicPrefix) {
		// Fallback retries (§5.3 step 4): past the max, or while the group holds orderly
		// locks, the message goes to the dead-letter queue.
		group := strings.TrimPrefix(topic, retryTopicPrefix)
		maxTimes := int32(16)
		if g, ok := b.meta.group(group); ok && g.RetryMaxTimes > 0 {
			maxTimes = int32(g.RetryMaxTimes)
		}
		if h.maxReconsumeTimes > 0 {
			maxTimes = h.maxReconsumeTimes
		}
		if h.reconsumeTimes > maxTimes || b.locks.holdsUnexpired(group, time.Now()) {
			topic = dlqTopicPrefix + group
			p.h.queueID = 0
			p.props.set(message.PropertyDelayLevel, "-1")
		}
	}
	if topic != h.topic {
		p.h.queueID = -1
	}
	wt, qid, err := b.writableQueue(ctx, topic, p.h.queueID, true)
	if err != nil {
		return nil, sendErrorResponse(req, err)
	}
	p.wt, p.qid, p.topic = wt, qid, topic
	p.uniq = p.props.get(message.PropertyUniqKey)
	if p.uniq == "" {
		p.uniq = b.newUniqKey()
		p.props.set(message.PropertyUniqKey, p.uniq)
	}
	p.m = &message.Message{
		Topic: topic, QueueID: qid, Flag: h.flag, SysFlag: h.sysFlag, BornTimestamp: h.bornTimestamp,
		BornHost: conn.RemoteAddrPort(), StoreHost: b.storeHost, ReconsumeTimes: h.reconsumeTimes,
		Body: req.Body,
	}
	if p.half {
		return p, nil
	}
	if p.parked, err = b.routeVisible(p.m, &p.props); err != nil {
		return nil, sendErrorResponse(req, err)
	}
	if p.rec, err = p.props.encodeInto(buf, p.m); err != nil {
		return nil, remoting.NewResponse(req, remoting.RespMessageIllegal, fmt.Sprintf("message cannot be stored: %v", err))
	}
	if busy := b.tierBackpressure(req); busy != nil {
		return nil, busy
	}
	return p, nil
}

// completeSend appends a planned send (to the store, the timer or the transaction log),
// waits for the in-sync set where replication asks it to, and answers.
func (b *Broker) completeSend(ctx context.Context, p *sendPlan) *remoting.Command {
	if p.half {
		return b.handleHalfSend(ctx, p.conn, p.req, p.h, &p.props, p.m)
	}
	var res []store.AppendResult
	var err error
	if p.parked {
		// RocketMQ answers with the parked record: its offset id and queue offset.
		res, err = b.timerService().Park(ctx, p.rec)
	} else {
		res, err = b.store.AppendVia(ctx, p.wt.queue(p.qid), p.rec)
	}
	if err != nil {
		return b.appendErrorResponse(p.req, p.topic, err)
	}
	if unconfirmed := b.awaitReplicated(ctx, p.req, recordsEnd(res)); unconfirmed != nil {
		return unconfirmed
	}
	return b.sendResponse(p, res)
}

// sendResponse counts a stored send and answers it with where it was stored.
func (b *Broker) sendResponse(p *sendPlan, res []store.AppendResult) *remoting.Command {
	p.wt.countIn(b.metrics, 1, len(p.rec))
	resp := remoting.NewResponse(p.req, remoting.RespSuccess, "")
	// A fixed header, written as it stands (Command.ExtOrdered): no map to fill, iterate and
	// sort per message. The keys are in the order the map's would sort to.
	resp.ReleaseExtFields()
	resp.ExtOrdered = []string{
		"MSG_REGION", "DefaultRegion",
		"TRACE_ON", "true",
		"msgId", message.OffsetMsgID(b.storeHost, res[0].CommitLogOffset),
		"queueId", strconv.Itoa(int(p.qid)),
		"queueOffset", strconv.FormatInt(res[0].QueueOffset, 10),
		"transactionId", p.uniq,
	}
	return resp
}

// routeVisible is where every message about to become visible to consumers learns the topic
// and queue it is stored in: a message whose properties ask for a delay level or a delivery
// time (§5.6: DELAY, TIMER_*, __STARTDELIVERTIME) is rewritten into its parked form in the
// timer's topic (m.Topic, m.QueueID and props changed) and parked is true; it becomes visible
// on its real topic when due. Plain sends and committed transactional messages both come
// here, so a delayed transactional message is delayed from its commit.
func (b *Broker) routeVisible(m *message.Message, props *sendProps) (parked bool, err error) {
	if b.timerService() == nil || !timer.WantsSchedule(props.get) {
		return false, nil
	}
	p, parked, err := b.timerService().Intercept(props.toMap(), m.Topic, m.QueueID)
	if err != nil {
		return false, sendErrorf(remoting.RespMessageIllegal, "message not scheduled: %v", err)
	}
	if parked {
		m.Topic, m.QueueID = p.Topic, p.QueueID
	}
	return parked, nil
}

// sendProps holds a sent message's properties without the map DecodeProperties builds, unless
// the message has more than a PropertyList holds. Either way it stores the same bytes.
type sendProps struct {
	list message.PropertyList
	m    map[string]string // non-nil once the list overflowed
}

func (p *sendProps) parse(s string) {
	var ok bool
	if p.list, ok = message.ParsePropertyList(s); !ok {
		p.m = message.DecodeProperties(s)
	}
}

func (p *sendProps) get(key string) string {
	if p.m != nil {
		return p.m[key]
	}
	v, _ := p.list.Get(key)
	return v
}

// toMap switches to the map form (scheduling edits properties) and returns the map.
func (p *sendProps) toMap() map[string]string {
	if p.m == nil {
		p.m = p.list.Map()
	}
	return p.m
}

func (p *sendProps) set(key, value string) {
	if p.m == nil && !p.list.Set(key, value) {
		p.m = p.list.Map()
	}
	if p.m != nil {
		p.m[key] = value
	}
}

// encodeInto appends m, with these properties, in the stored record layout to dst.
func (p *sendProps) encodeInto(dst []byte, m *message.Message) ([]byte, error) {
	if p.m != nil {
		m.Properties = p.m
		return m.AppendEncoded(dst)
	}
	return m.AppendEncodedList(dst, &p.list)
}

// recordBufs recycles the records of asynchronous sends once the store has copied them (its
// callback), saving an allocation of the record's size per send.
var recordBufs sync.Pool

// maxPooledRecord bounds the records kept in recordBufs, so a burst of large messages does
// not stay resident.
const maxPooledRecord = 64 << 10

func getRecordBuf() []byte {
	if b, ok := recordBufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

func putRecordBuf(b []byte) {
	if cap(b) <= maxPooledRecord {
		recordBufs.Put(&b)
	}
}

// handleSendBatch serves SEND_BATCH_MESSAGE (320): each inner message becomes its own record
// with consecutive queue offsets, appended as one unit (§5.2).
func (b *Broker) handleSendBatch(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	h, err := parseSendHeader(req.ExtFields, true)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if strings.HasPrefix(h.topic, retryTopicPrefix) {
		return remoting.NewResponse(req, remoting.RespMessageIllegal, "batch messages cannot be sent to a %RETRY% topic; send them one by one")
	}
	if timer.IsSystemTopic(h.topic) {
		return remoting.NewResponse(req, remoting.RespNoPermission, fmt.Sprintf("topic %s is a system topic of scheduled delivery; send to your own topic", h.topic))
	}
	if h.sysFlag&message.FlagTransactionMask != 0 {
		return remoting.NewResponse(req, remoting.RespMessageIllegal, "batch messages cannot be transactional")
	}
	entries, err := message.DecodeBatch(req.Body, b.cfg.MaxBatchMessages)
	if errors.Is(err, message.ErrBatchTooLong) {
		return remoting.NewResponse(req, remoting.RespMessageIllegal, fmt.Sprintf(
			"batch holds more than %d messages, this broker's limit (MaxBatchMessages); split it into smaller batches", b.cfg.MaxBatchMessages))
	}
	if err != nil {
		return remoting.NewResponse(req, remoting.RespMessageIllegal, fmt.Sprintf("bad batch body: %v", err))
	}
	if len(entries) == 0 {
		return remoting.NewResponse(req, remoting.RespMessageIllegal, "empty batch")
	}
	wt, qid, err := b.writableQueue(ctx, h.topic, h.queueID, true)
	if err != nil {
		return sendErrorResponse(req, err)
	}
	born := conn.RemoteAddrPort()
	recs := make([][]byte, 0, len(entries))
	uniq := make([]string, 0, len(entries))
	total := 0
	for i, e := range entries {
		if len(e.Body) > b.cfg.MaxMessageBytes {
			return remoting.NewResponse(req, remoting.RespMessageIllegal,
				fmt.Sprintf("message %d of the batch has a %d-byte body, over this broker's limit of %d bytes (MaxMessageBytes)", i, len(e.Body), b.cfg.MaxMessageBytes))
		}
		if e.Properties[message.PropertyUniqKey] == "" {
			e.Properties[message.PropertyUniqKey] = b.newUniqKey()
		}
		m := &message.Message{
			Topic: h.topic, QueueID: qid, Flag: e.Flag, SysFlag: h.sysFlag, BornTimestamp: h.bornTimestamp,
			BornHost: born, StoreHost: b.storeHost, Body: e.Body, Properties: e.Properties,
		}
		rec, err := m.AppendEncoded(nil)
		if err != nil {
			return remoting.NewResponse(req, remoting.RespMessageIllegal, fmt.Sprintf("message %d of the batch cannot be stored: %v", i, err))
		}
		total += len(rec)
		recs = append(recs, rec)
		uniq = append(uniq, e.Properties[message.PropertyUniqKey])
	}
	if limit := b.cfg.maxBatchStoredBytes(len(recs)); total > limit {
		return remoting.NewResponse(req, remoting.RespMessageIllegal, fmt.Sprintf(
			"batch of %d messages takes %d bytes as stored, over this broker's limit of %d bytes for %d messages (MaxMessageBytes %d plus %d per message for headers and properties); split it into smaller batches",
			len(recs), total, limit, len(recs), b.cfg.MaxMessageBytes, recordRoomBytes))
	}
	if busy := b.tierBackpressure(req); busy != nil {
		return busy
	}
	if refused := b.refuseWrite(req); refused != nil {
		return refused
	}
	res, err := b.store.AppendVia(ctx, wt.queue(qid), recs...)
	if err != nil {
		return b.appendErrorResponse(req, h.topic, err)
	}
	if unconfirmed := b.awaitReplicated(ctx, req, recordsEnd(res)); unconfirmed != nil {
		return unconfirmed
	}
	wt.countIn(b.metrics, len(recs), total)
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = message.OffsetMsgID(b.storeHost, r.CommitLogOffset)
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.ExtFields["msgId"] = strings.Join(ids, ",")
	resp.ExtFields["queueId"] = strconv.Itoa(int(qid))
	resp.ExtFields.SetInt64("queueOffset", res[0].QueueOffset)
	resp.ExtFields["transactionId"] = strings.Join(uniq, ",")
	resp.ExtFields["MSG_REGION"] = "DefaultRegion"
	resp.ExtFields["TRACE_ON"] = "true"
	return resp
}

// recordsEnd is the commit-log position just past the last of res.
func recordsEnd(res []store.AppendResult) int64 {
	if len(res) == 0 {
		return 0
	}
	last := res[len(res)-1]
	return store.NextRecordPos(last.CommitLogOffset, last.Size)
}

func sendErrorResponse(req *remoting.Command, err error) *remoting.Command {
	var se *sendError
	if errors.As(err, &se) {
		return remoting.NewResponse(req, se.code, se.remark)
	}
	return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
}

func (b *Broker) appendErrorResponse(req *remoting.Command, topic string, err error) *remoting.Command {
	switch {
	case errors.Is(err, store.ErrMessageTooLarge):
		return remoting.NewResponse(req, remoting.RespMessageIllegal, fmt.Sprintf("message too large for the store: %v; send smaller messages", err))
	case errors.Is(err, store.ErrFollower):
		return remoting.NewResponse(req, remoting.RespServiceNotAvailable, fmt.Sprintf(
			"broker %s is a slave of broker group %s: send to the group's master, brokerId 0 in the route", b.memberName(), b.cfg.BrokerName))
	case errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled):
		return remoting.NewResponse(req, remoting.RespServiceNotAvailable, "broker is shutting down; retry on another broker")
	}
	b.log.Error("append failed", "topic", topic, "err", err)
	return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("store append failed: %v", err))
}

var (
	uniqCounter atomic.Uint32
	uniqPID     = uint16(os.Getpid())
	uniqSalt    = rand.Uint32()
)

// newUniqKey makes a UNIQ_KEY for a message that has none, in the Java layout (§4.8): IPv4,
// pid, a per-process salt, milliseconds since the start of the month, counter; upper-case hex.
func (b *Broker) newUniqKey() string {
	var buf [16]byte
	ip := b.storeHost.Addr().Unmap().As4()
	copy(buf[:4], ip[:])
	binary.BigEndian.PutUint16(buf[4:], uniqPID)
	binary.BigEndian.PutUint32(buf[6:], uniqSalt)
	binary.BigEndian.PutUint32(buf[10:], uint32(sinceMonthStart(time.Now()).Milliseconds()))
	binary.BigEndian.PutUint16(buf[14:], uint16(uniqCounter.Add(1)))
	const digits = "0123456789ABCDEF"
	var out [2 * len(buf)]byte
	for i, c := range buf {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&0xF]
	}
	return string(out[:])
}

// monthStart caches the start of the current month for newUniqKey: working it out with
// time.Date on every send cost more than the rest of the key.
var monthStart atomic.Pointer[[2]time.Time] // [start, start of the next month]

// sinceMonthStart is how long after the start of its month (local time) now is.
func sinceMonthStart(now time.Time) time.Duration {
	if m := monthStart.Load(); m != nil && !now.Before(m[0]) && now.Before(m[1]) {
		return now.Sub(m[0])
	}
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, now.Location())
	monthStart.Store(&[2]time.Time{start, start.AddDate(0, 1, 0)})
	return now.Sub(start)
}
