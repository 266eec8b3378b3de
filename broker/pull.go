package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
)

// Pull sysFlag bits (PROTOCOL.md §7.1).
const (
	pullCommitOffset = 1
	pullSuspend      = 2
	pullSubscription = 4
)

type pullHeader struct {
	group        string
	topic        string
	queueID      int32
	queueOffset  int64
	maxMsgNums   int32
	sysFlag      int32
	commitOffset int64
	suspend      time.Duration
	subscription string
	exprType     string
}

func parsePullHeader(ext remoting.ExtFields) (pullHeader, error) {
	var h pullHeader
	var err error
	if h.group, err = ext.String("consumerGroup"); err != nil {
		return h, err
	}
	if h.topic, err = ext.String("topic"); err != nil {
		return h, err
	}
	if h.queueID, err = ext.Int32("queueId"); err != nil {
		return h, err
	}
	if h.queueOffset, err = ext.Int64("queueOffset"); err != nil {
		return h, err
	}
	if h.maxMsgNums, err = ext.Int32Or("maxMsgNums", 32); err != nil {
		return h, err
	}
	if h.sysFlag, err = ext.Int32Or("sysFlag", 0); err != nil {
		return h, err
	}
	if h.commitOffset, err = ext.Int64Or("commitOffset", -1); err != nil {
		return h, err
	}
	ms, err := ext.Int64Or("suspendTimeoutMillis", 0)
	if err != nil {
		return h, err
	}
	h.suspend = time.Duration(ms) * time.Millisecond
	h.subscription = ext.StringOr("subscription", "")
	h.exprType = ext.StringOr("expressionType", "TAG")
	return h, nil
}

// handlePull serves PULL_MESSAGE (11) with long polling (§7).
func (b *Broker) handlePull(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	p, refused := b.planPull(conn, req)
	if refused != nil {
		return refused
	}
	resp, err := b.readPull(ctx, p, p.h.queueOffset, false)
	if err != nil {
		return b.pullError(req, p.h, err)
	}
	if !p.holds(resp) {
		return resp
	}
	return b.holdPull(ctx, p, resp)
}

// pullInline answers a pull on the connection's read goroutine (remoting.InlineHandler)
// when that needs no wait: its records are in memory or the page cache, or it is refused.
// A pull that must wait — for the disk, the cold tier, or new messages to hold for — is
// left to handlePull on a worker goroutine, which checks and reads it again: a few
// microseconds, against the hand-off a pull served here saves.
func (b *Broker) pullInline(ctx context.Context, conn *remoting.Conn, req *remoting.Command) (*remoting.Command, bool) {
	start := time.Now()
	resp, ok := b.pullAtOnce(ctx, conn, req)
	if ok {
		b.metrics.request(roleBroker, req.Code, resp.Code, start)
	}
	return resp, ok
}

// pullAtOnce is pullInline's answer, without the request metric.
func (b *Broker) pullAtOnce(ctx context.Context, conn *remoting.Conn, req *remoting.Command) (*remoting.Command, bool) {
	ctx, deny := b.checkACL(ctx, acl.RoleBroker, conn, req)
	if deny != nil {
		return deny, true
	}
	p, refused := b.planPull(conn, req)
	if refused != nil {
		return refused, true
	}
	resp, err := b.readPull(ctx, p, p.h.queueOffset, true)
	switch {
	case errors.Is(err, store.ErrWouldBlock):
		return nil, false
	case err != nil:
		return b.pullError(req, p.h, err), true
	case p.holds(resp):
		return nil, false
	}
	return resp, true
}

// pullPlan is a pull that passed its checks (§7.3): what remains is to read it.
type pullPlan struct {
	req     *remoting.Command
	h       pullHeader
	f       *filter.Filter // nil keeps everything
	maxMsgs int
}

// holds reports whether the pull waits for new messages when its first read, resp, found
// none (§7.6).
func (p pullPlan) holds(resp *remoting.Command) bool {
	return resp.Code == remoting.RespPullNotFound && p.h.sysFlag&pullSuspend != 0 && p.h.suspend > 0
}

// planPull checks a pull — topic, permission, queue, group, subscription (§7.3 steps 1–3)
// — and commits the offset it carries; it returns the plan, or the refusal to answer.
// Committing the same offset twice is harmless, so a pull may be planned again.
func (b *Broker) planPull(conn *remoting.Conn, req *remoting.Command) (pullPlan, *remoting.Command) {
	h, err := parsePullHeader(req.ExtFields)
	if err != nil {
		return pullPlan{}, remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	// §7.3 step 1: topic, permission, queue.
	t, ok := b.meta.topic(h.topic)
	if !ok {
		return pullPlan{}, remoting.NewResponse(req, remoting.RespTopicNotExist, fmt.Sprintf("topic %s does not exist; create it with `strata topic create`", h.topic))
	}
	if t.Perm&permRead == 0 {
		return pullPlan{}, remoting.NewResponse(req, remoting.RespNoPermission, fmt.Sprintf("topic %s is not readable (perm %d)", h.topic, t.Perm))
	}
	share, _ := t.share(b.cfg.BrokerName)
	if h.queueID < 0 || int(h.queueID) >= max(share.ReadQueueNums, share.WriteQueueNums) {
		return pullPlan{}, remoting.NewResponse(req, remoting.RespInvalidParameter,
			fmt.Sprintf("queue %d of topic %s does not exist on broker %s (it has %d read queues); refresh the route", h.queueID, h.topic, b.cfg.BrokerName, share.ReadQueueNums))
	}
	// Step 2: the group.
	if g, ok := b.meta.group(h.group); ok && !g.ConsumeEnable {
		return pullPlan{}, remoting.NewResponse(req, remoting.RespNoPermission, fmt.Sprintf("consumer group %s has consumption disabled", h.group))
	}
	// Step 3: the subscription.
	f, refused := b.pullFilter(req, conn, h)
	if refused != nil {
		return pullPlan{}, refused
	}
	// Commit-in-pull (§6.7).
	if h.sysFlag&pullCommitOffset != 0 && h.commitOffset >= 0 {
		b.meta.commitOffset(h.group, h.topic, h.queueID, h.commitOffset)
	}
	maxMsgs := int(h.maxMsgNums)
	if maxMsgs <= 0 || maxMsgs > b.cfg.MaxPullMessages {
		maxMsgs = b.cfg.MaxPullMessages
	}
	return pullPlan{req: req, h: h, f: f, maxMsgs: maxMsgs}, nil
}

// readPull reads p from offset into its answer. With noWait it fails with
// store.ErrWouldBlock rather than wait (store.ReadRequest.NoWait).
func (b *Broker) readPull(ctx context.Context, p pullPlan, offset int64, noWait bool) (*remoting.Command, error) {
	res, err := b.readFiltered(ctx, p.h.topic, p.h.queueID, offset, p.maxMsgs, p.f, noWait)
	if err != nil {
		return nil, err
	}
	code, next := pullCode(res.Status, offset), res.NextOffset
	if b.offsetMovedOnSlave(code) {
		code, next = remoting.RespPullRetryImmediately, offset // the master decides (slaveread.go)
	}
	resp := remoting.NewResponse(p.req, code, "")
	resp.ExtFields.SetInt64("nextBeginOffset", next)
	resp.ExtFields.SetInt64("minOffset", res.MinOffset)
	resp.ExtFields.SetInt64("maxOffset", res.MaxOffset)
	b.pullSuggestion(resp, p.h.queueID, res.ReadResult)
	if code == remoting.RespSuccess {
		resp.Body, resp.BodyParts, resp.Written = res.Records, res.parts, res.release
		b.metrics.messagesOut.WithLabelValues(p.h.topic).Add(float64(len(res.Entries)))
		b.metrics.bytesOut.WithLabelValues(p.h.topic).Add(float64(res.bodyBytes()))
	}
	return resp, nil
}

// holdPull holds a pull whose first read found nothing, resp, until an append lands past
// its offset, then reads again. New messages that the filter drops move the offset on and
// keep the pull held until the suspend time is up (§7.6).
func (b *Broker) holdPull(ctx context.Context, p pullPlan, resp *remoting.Command) *remoting.Command {
	h := p.h
	if b.held.Add(1) > int64(b.cfg.MaxHeldPulls) {
		b.held.Add(-1)
		return resp
	}
	b.metrics.heldPulls.Inc()
	heldAt := time.Now()
	defer func() {
		b.held.Add(-1)
		b.metrics.heldPulls.Dec()
		addHeld(ctx, time.Since(heldAt))
	}()
	deadline := time.Now().Add(min(h.suspend, b.cfg.MaxSuspend))
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(b.ctx, cancel)
	defer stop()
	wait := h.queueOffset
	for {
		if _, err := b.store.WaitForAppend(hctx, h.topic, h.queueID, wait); err != nil {
			// Timed out, connection closed or shutting down: the empty answer.
			resp.ExtFields.SetInt64("nextBeginOffset", wait)
			resp.ExtFields.SetInt64("maxOffset", max(wait, b.store.MaxOffset(h.topic, h.queueID)))
			return resp
		}
		again, err := b.readPull(ctx, p, wait, false)
		if err != nil {
			return b.pullError(p.req, h, err)
		}
		switch again.Code {
		case remoting.RespPullNotFound:
			continue
		case remoting.RespPullRetryImmediately:
			n, _ := again.ExtFields.Int64("nextBeginOffset")
			if n <= wait {
				return again
			}
			wait = n
			continue
		}
		return again
	}
}

// pullFilter resolves the filter of a pull (§7.3 step 3), or the error answer. A nil filter
// keeps everything.
func (b *Broker) pullFilter(req *remoting.Command, conn *remoting.Conn, h pullHeader) (*filter.Filter, *remoting.Command) {
	if strings.HasPrefix(h.topic, retryTopicPrefix) {
		return nil, nil // retries are not re-filtered (filterSupportRetry=false, §9.3)
	}
	if h.sysFlag&pullSubscription != 0 {
		exprType := h.exprType
		// The Go client's lite pull (Poll) and PostSubscriptionWhenPull send an SQL92
		// subscription labelled TAG (§7.2). When the group registered that very text as
		// SQL92 for the topic, that is what the client means.
		if !strings.EqualFold(exprType, filter.TypeSQL92) {
			if sub, ok := b.clients.subscription(h.group, h.topic, conn); ok &&
				strings.EqualFold(sub.exprType, filter.TypeSQL92) && sub.expression == h.subscription {
				exprType = filter.TypeSQL92
			}
		}
		f, err := b.filters.compile(exprType, h.subscription)
		if err != nil {
			return nil, remoting.NewResponse(req, remoting.RespSubscriptionParseFailed,
				fmt.Sprintf("consumer group %s: the subscription to topic %s is refused: %v", h.group, h.topic, err))
		}
		return f, nil
	}
	sub, ok := b.clients.subscription(h.group, h.topic, conn)
	if !ok {
		return nil, remoting.NewResponse(req, remoting.RespSubscriptionNotExist,
			fmt.Sprintf("consumer group %s has no subscription to %s registered by heartbeat", h.group, h.topic))
	}
	if sub.err != nil {
		return nil, remoting.NewResponse(req, remoting.RespSubscriptionParseFailed,
			fmt.Sprintf("consumer group %s: the subscription to topic %s registered by heartbeat was refused: %v; fix the expression in the consumer", h.group, h.topic, sub.err))
	}
	return sub.filter, nil
}

// pullRead is the answer of a read for a pull. The body is Records, or for a cold read parts:
// the records where the tier decoded them (adjacent ones as one slice), sent as they are
// (remoting.Command.BodyParts), with Records nil.
type pullRead struct {
	store.ReadResult
	parts [][]byte
	// release, when set, lets the store or the tier reuse the buffers Records or parts are
	// in (their ReadResult.Release): the response that sends them calls it once written
	// (remoting.Command.Written).
	release func()
}

// bodyBytes is the length of the pull body.
func (r pullRead) bodyBytes() int {
	n := len(r.Records)
	for _, p := range r.parts {
		n += len(p)
	}
	return n
}

// readFiltered reads a queue through f. The hot tier applies a TAG filter's tag codes in the
// consume queue, then the exact TAGS here drops hash collisions (§9.2); an SQL92 filter is
// evaluated here on every record's properties, reading on in growing windows until maxMsgs
// match, MaxFilterScanMessages were examined or the queue ends. The cold tier filters in
// its block reader (readCold). The body is rebuilt only when something drops.
func (b *Broker) readFiltered(ctx context.Context, topic string, queueID int32, offset int64, maxMsgs int, f *filter.Filter, noWait bool) (pullRead, error) {
	rr := store.ReadRequest{Topic: topic, QueueID: queueID, Offset: offset, MaxMessages: maxMsgs, MaxBytes: b.cfg.MaxPullBytes, TagCodes: f.TagCodes(), NoWait: noWait}
	res, err := b.store.Read(ctx, rr)
	if err == nil && b.tier != nil {
		// Offsets no longer on local disk come from the cold tier; otherwise res stands,
		// with the tier's first offset as the queue's min offset.
		cold, ok, cerr := b.readCold(ctx, topic, queueID, offset, maxMsgs, f, res, noWait)
		if ok || cerr != nil {
			return cold, cerr
		}
		res = cold.ReadResult
	}
	if err != nil || f.MatchesAll() || res.Status != store.ReadFound {
		return pullRead{ReadResult: res, release: res.Release}, err
	}
	out := res
	out.Records, out.Entries = nil, nil
	scanned, window := 0, maxMsgs
	for {
		full := b.keepMatching(&out, res, f, maxMsgs)
		scanned += len(res.Entries)
		if full || f.SQL() == nil || scanned >= b.cfg.MaxFilterScanMessages || out.NextOffset >= res.MaxOffset {
			break
		}
		window = min(window*2, b.cfg.MaxFilterScanMessages-scanned)
		rr.Offset, rr.MaxMessages = out.NextOffset, window
		if res, err = b.store.Read(ctx, rr); err != nil {
			return pullRead{}, err
		}
		if res.Status != store.ReadFound {
			break // retention moved the queue on, or nothing newer: answer what matched
		}
	}
	if len(out.Entries) == 0 {
		out.Status, out.Records = store.ReadNoMatch, nil
	}
	return pullRead{ReadResult: out}, nil
}

// keepMatching adds to out the records of res that f keeps, until maxMsgs or MaxPullBytes
// are reached, and sets out.NextOffset to the first record it did not examine. When out is
// empty and every record of res passes, it takes res as it is, without copying. It reports
// whether out is full.
func (b *Broker) keepMatching(out *store.ReadResult, res store.ReadResult, f *filter.Filter, maxMsgs int) bool {
	keep := make([]bool, len(res.Entries))
	n, bytes, stop := len(out.Entries), len(out.Records), len(res.Entries)
	out.NextOffset = res.NextOffset
	pos := 0
	for i, e := range res.Entries {
		rec := res.Records[pos : pos+int(e.Size)]
		pos += int(e.Size)
		if !f.MatchStoredRecord(rec) {
			continue
		}
		if n >= maxMsgs || n > 0 && bytes+len(rec) > b.cfg.MaxPullBytes {
			stop, out.NextOffset = i, e.QueueOffset // the next pull starts here
			break
		}
		keep[i] = true
		n, bytes = n+1, bytes+len(rec)
	}
	if len(out.Entries) == 0 && n == len(res.Entries) {
		out.Records, out.Entries = res.Records, res.Entries
		return n >= maxMsgs
	}
	pos = 0
	for i, e := range res.Entries[:stop] {
		if keep[i] {
			out.Records = append(out.Records, res.Records[pos:pos+int(e.Size)]...)
			out.Entries = append(out.Entries, e)
		}
		pos += int(e.Size)
	}
	return n >= maxMsgs || stop < len(res.Entries)
}

// pullCode maps a store outcome to the response code (§7.4).
func pullCode(s store.ReadStatus, requested int64) int16 {
	switch s {
	case store.ReadFound:
		return remoting.RespSuccess
	case store.ReadNoMatch:
		return remoting.RespPullRetryImmediately
	case store.ReadNoNewMessage:
		return remoting.RespPullNotFound
	case store.ReadNoMessageInQueue:
		if requested == 0 {
			return remoting.RespPullNotFound
		}
		return remoting.RespPullOffsetMoved
	default: // too small, overflow
		return remoting.RespPullOffsetMoved
	}
}

func (b *Broker) pullError(req *remoting.Command, h pullHeader, err error) *remoting.Command {
	if errors.Is(err, context.Canceled) || errors.Is(err, store.ErrClosed) {
		return remoting.NewResponse(req, remoting.RespServiceNotAvailable, "broker is shutting down")
	}
	b.log.Error("pull failed", "topic", h.topic, "queue", h.queueID, "offset", h.queueOffset, "err", err)
	return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("read %s queue %d at %d: %v", h.topic, h.queueID, h.queueOffset, err))
}
