package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
	h, err := parsePullHeader(req.ExtFields)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	// §7.3 step 1: topic, permission, queue.
	t, ok := b.meta.topic(h.topic)
	if !ok {
		return remoting.NewResponse(req, remoting.RespTopicNotExist, fmt.Sprintf("topic %s does not exist; create it with `strata topic create`", h.topic))
	}
	if t.Perm&permRead == 0 {
		return remoting.NewResponse(req, remoting.RespNoPermission, fmt.Sprintf("topic %s is not readable (perm %d)", h.topic, t.Perm))
	}
	share, _ := t.share(b.cfg.BrokerName)
	if h.queueID < 0 || int(h.queueID) >= max(share.ReadQueueNums, share.WriteQueueNums) {
		return remoting.NewResponse(req, remoting.RespInvalidParameter,
			fmt.Sprintf("queue %d of topic %s does not exist on broker %s (it has %d read queues); refresh the route", h.queueID, h.topic, b.cfg.BrokerName, share.ReadQueueNums))
	}
	// Step 2: the group.
	if g, ok := b.meta.group(h.group); ok && !g.ConsumeEnable {
		return remoting.NewResponse(req, remoting.RespNoPermission, fmt.Sprintf("consumer group %s has consumption disabled", h.group))
	}
	// Step 3: the subscription.
	f, refused := b.pullFilter(req, conn, h)
	if refused != nil {
		return refused
	}
	// Commit-in-pull, on the first execution only (§6.7).
	if h.sysFlag&pullCommitOffset != 0 && h.commitOffset >= 0 {
		b.meta.commitOffset(h.group, h.topic, h.queueID, h.commitOffset)
	}

	maxMsgs := int(h.maxMsgNums)
	if maxMsgs <= 0 || maxMsgs > b.cfg.MaxPullMessages {
		maxMsgs = b.cfg.MaxPullMessages
	}
	read := func(offset int64) (*remoting.Command, error) {
		res, err := b.readFiltered(ctx, h.topic, h.queueID, offset, maxMsgs, f)
		if err != nil {
			return nil, err
		}
		code, next := pullCode(res.Status, offset), res.NextOffset
		if b.offsetMovedOnSlave(code) {
			code, next = remoting.RespPullRetryImmediately, offset // the master decides (slaveread.go)
		}
		resp := remoting.NewResponse(req, code, "")
		resp.ExtFields.SetInt64("nextBeginOffset", next)
		resp.ExtFields.SetInt64("minOffset", res.MinOffset)
		resp.ExtFields.SetInt64("maxOffset", res.MaxOffset)
		b.pullSuggestion(resp, h.queueID, res.ReadResult)
		if code == remoting.RespSuccess {
			resp.Body, resp.BodyParts, resp.Written = res.Records, res.parts, res.release
			b.metrics.messagesOut.WithLabelValues(h.topic).Add(float64(len(res.Entries)))
			b.metrics.bytesOut.WithLabelValues(h.topic).Add(float64(res.bodyBytes()))
		}
		return resp, nil
	}
	resp, err := read(h.queueOffset)
	if err != nil {
		return b.pullError(req, h, err)
	}
	if resp.Code != remoting.RespPullNotFound || h.sysFlag&pullSuspend == 0 || h.suspend <= 0 {
		return resp
	}
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
	// Hold until an append lands past the offset, then re-run. New messages that the filter
	// drops move the offset on and keep the pull held until the suspend time is up (§7.6).
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
		again, err := read(wait)
		if err != nil {
			return b.pullError(req, h, err)
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
func (b *Broker) readFiltered(ctx context.Context, topic string, queueID int32, offset int64, maxMsgs int, f *filter.Filter) (pullRead, error) {
	rr := store.ReadRequest{Topic: topic, QueueID: queueID, Offset: offset, MaxMessages: maxMsgs, MaxBytes: b.cfg.MaxPullBytes, TagCodes: f.TagCodes()}
	res, err := b.store.Read(ctx, rr)
	if err == nil && b.tier != nil {
		// Offsets no longer on local disk come from the cold tier; otherwise res stands,
		// with the tier's first offset as the queue's min offset.
		cold, ok, cerr := b.readCold(ctx, topic, queueID, offset, maxMsgs, f, res)
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
