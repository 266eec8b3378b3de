package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/txn"
)

// Transactional messages (PROTOCOL.md §5.7) live in broker/txn; this file wires them to the
// remoting handlers: half sends (handleSend), END_TRANSACTION, check-backs to the producers
// of a group, and GET /txn/pending.

// openTxn recovers the pending half messages from the log; called by Start once the store
// and the tier are open, before serving.
func (b *Broker) openTxn(ctx context.Context) error {
	cfg := b.cfg.Transaction
	cfg.StoreHost = b.storeHost
	cfg.Logger = b.log
	cfg.Registerer = b.metrics.reg
	s, err := txn.Open(ctx, cfg, txn.Deps{
		Log:     txn.StoreLog{Store: b.store, Tier: b.tier},
		Checker: txnChecker{b},
		Route:   b.routeCommitted,
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.txnP.Store(s)
	return nil
}

// routeCommitted routes a committed transactional message as every visible message is
// routed (routeVisible), so a delayed one is delivered after its delay counted from the
// commit.
func (b *Broker) routeCommitted(m *message.Message) error {
	p := sendProps{m: m.Properties}
	if _, err := b.routeVisible(m, &p); err != nil {
		return err
	}
	m.Properties = p.m
	return nil
}

// handleHalfSend stores a half message (m with its real topic and queue) and answers with
// the ids the client's END_TRANSACTION echoes (§5.7 step 2).
func (b *Broker) handleHalfSend(ctx context.Context, conn *remoting.Conn, req *remoting.Command, h sendHeader, props *sendProps, m *message.Message) *remoting.Command {
	if busy := b.tierBackpressure(req); busy != nil {
		return busy
	}
	if props.m == nil {
		props.m = props.list.Map()
	}
	m.Properties = props.m
	qid := m.QueueID
	group := h.producerGroup
	if group == "" {
		group = props.m[message.PropertyProducerGroup]
	}
	if group != "" {
		b.clients.noteProducer(conn, group, time.Now())
	}
	res, err := b.txnService().Prepare(ctx, m, group)
	if err != nil {
		if errors.Is(err, txn.ErrTooManyPending) {
			return remoting.NewResponse(req, remoting.RespSystemBusy, err.Error())
		}
		if errors.Is(err, txn.ErrClosed) {
			return remoting.NewResponse(req, remoting.RespServiceNotAvailable, "broker is shutting down; retry on another broker")
		}
		return b.appendErrorResponse(req, txn.HalfTopic, err)
	}
	b.metrics.messagesIn.WithLabelValues(txn.HalfTopic).Inc()
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.ExtFields["msgId"] = message.OffsetMsgID(b.storeHost, res.CommitLogOffset)
	resp.ExtFields["queueId"] = strconv.Itoa(int(qid))
	resp.ExtFields.SetInt64("queueOffset", res.QueueOffset)
	resp.ExtFields["transactionId"] = res.TransactionID
	resp.ExtFields["MSG_REGION"] = "DefaultRegion"
	resp.ExtFields["TRACE_ON"] = "true"
	return resp
}

// handleEndTransaction serves END_TRANSACTION (37), oneway from the Go client: commit,
// rollback or unknown, from the local transaction or from the answer to a check-back.
func (b *Broker) handleEndTransaction(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
	ext := req.ExtFields
	var r txn.EndRequest
	var err error
	r.ProducerGroup = ext.StringOr("producerGroup", "")
	if r.TranStateTableOffset, err = ext.Int64("tranStateTableOffset"); err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	if r.CommitLogOffset, err = ext.Int64("commitLogOffset"); err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	d, err := ext.Int32("commitOrRollback")
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	r.Decision = txn.Decision(d)
	if r.FromCheck, err = ext.BoolOr("fromTransactionCheck", false); err != nil {
		return remoting.NewErrorResponse(req, remoting.RespInvalidParameter, err)
	}
	r.MsgID, r.TransactionID = ext.StringOr("msgId", ""), ext.StringOr("transactionId", "")
	if r.ProducerGroup != "" {
		// A producer whose heartbeat has not come yet (it sends one every 30 s) can still be
		// checked back on the connection it ends transactions on.
		b.clients.noteProducer(conn, r.ProducerGroup, time.Now())
	}
	if denied := b.authorizeEnd(ctx, req, r.CommitLogOffset); denied != nil {
		return denied
	}
	res, err := b.txnService().End(ctx, r)
	if err != nil {
		b.log.Warn("END_TRANSACTION refused", "group", r.ProducerGroup, "commit_log_offset", r.CommitLogOffset,
			"tran_state_table_offset", r.TranStateTableOffset, "decision", d, "from_check", r.FromCheck, "msg_id", r.MsgID, "err", err)
		return remoting.NewResponse(req, remoting.RespSystemError, err.Error())
	}
	if res.Outcome == txn.OutcomeCommitted {
		b.metrics.messagesIn.WithLabelValues(res.Topic).Inc()
	}
	if req.Remark != "" {
		b.log.Debug("END_TRANSACTION remark from the producer", "group", r.ProducerGroup, "msg_id", r.MsgID, "remark", req.Remark)
	}
	return remoting.NewResponse(req, remoting.RespSuccess, "")
}

// txnChecker sends check-backs to the producers of a group registered on this broker (by
// heartbeat, or by the half messages and END_TRANSACTIONs they sent).
type txnChecker struct{ b *Broker }

// CheckBack implements txn.Checker: CHECK_TRANSACTION_STATE (39), oneway, to one live
// connection of the group, the next one if a write fails.
func (c txnChecker) CheckBack(ctx context.Context, r txn.CheckRequest) error {
	conns := c.b.clients.producerConns(r.Group)
	if len(conns) == 0 {
		return fmt.Errorf("check back transaction %s of group %s: %w", r.MsgID, r.Group, txn.ErrNoProducer)
	}
	ext := remoting.ExtFields{
		"msgId": r.MsgID, "transactionId": r.TransactionID, "offsetMsgId": r.OffsetMsgID,
		"topic": r.Topic, "bname": c.b.cfg.BrokerName,
	}
	ext.SetInt64("tranStateTableOffset", r.TranStateTableOffset)
	ext.SetInt64("commitLogOffset", r.CommitLogOffset)
	var errs []error
	for _, conn := range conns { // the registry lists them in no particular order
		if err := conn.InvokeOneway(ctx, remoting.NewRequest(remoting.CodeCheckTransactionState, ext, r.Body)); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	return fmt.Errorf("check back transaction %s of group %s: %w", r.MsgID, r.Group, errors.Join(errs...))
}

// noteProducer registers conn as a producer of group, as a heartbeat would, until it closes
// or ClientExpiry passes without a heartbeat or another note.
func (r *clientRegistry) noteProducer(conn *remoting.Conn, group string, now time.Time) {
	r.mu.Lock()
	m := r.producers[group]
	if m == nil {
		m = make(map[uint64]*producerChannel)
		r.producers[group] = m
	}
	if p := m[conn.ID()]; p != nil {
		p.lastHeartbeat = now
	} else {
		m[conn.ID()] = &producerChannel{conn: conn, lastHeartbeat: now}
	}
	hook := !r.watched[conn.ID()]
	r.watched[conn.ID()] = true
	r.mu.Unlock()
	if hook {
		conn.OnClose(func() { r.removeConn(conn.ID()) })
	}
}

// Default and largest page of GET /txn/pending.
const (
	defaultTxnPendingLimit = 100
	maxTxnPendingLimit     = 10000
)

// TxnPending lists up to limit pending half messages of group ("" for all), oldest first.
func (b *Broker) TxnPending(ctx context.Context, group string, limit int) txn.PendingList {
	return b.txnService().Pending(ctx, group, limit)
}

// serveTxnPending serves GET /txn/pending?group=G&limit=N as JSON (txn.PendingList).
func (b *Broker) serveTxnPending(w http.ResponseWriter, r *http.Request) {
	limit := defaultTxnPendingLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("limit %q is not a count; use 0..%d", v, maxTxnPendingLimit), http.StatusBadRequest)
			return
		}
		limit = min(n, maxTxnPendingLimit)
	}
	if b.txnService() == nil {
		http.Error(w, "broker is not started", http.StatusServiceUnavailable)
		return
	}
	l := b.TxnPending(r.Context(), r.URL.Query().Get("group"), limit)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(l)
}

// authorizeEnd answers NO_PERMISSION unless the request may publish to the real topic of the
// half message at pos: ending a transaction makes a message visible there. A half message that
// cannot be read is left to txn.End to report.
func (b *Broker) authorizeEnd(ctx context.Context, req *remoting.Command, pos int64) *remoting.Command {
	if b.acl == nil {
		return nil
	}
	rec, err := b.store.ReadAt(pos, 0)
	if err != nil {
		return nil
	}
	m, _, err := message.Decode(rec)
	if err != nil || m.Properties[message.PropertyRealTopic] == "" {
		return nil
	}
	return b.authorizeTopic(ctx, req, m.Properties[message.PropertyRealTopic], acl.PermPub)
}

// txnService is the open transaction service, nil before Start opened it.
func (b *Broker) txnService() *txn.Service { return b.txnP.Load() }
