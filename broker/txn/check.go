package txn

import (
	"context"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

// loop runs check rounds and checkpoints until Close.
func (s *Service) loop() {
	defer close(s.done)
	timer := time.NewTimer(s.cfg.CheckResolution)
	defer timer.Stop()
	lastCk := time.Now()
	// A new half message is first due Timeout (or its immunity) after it is stored; never
	// sleeping longer than that finds it on time.
	longest := min(s.cfg.Timeout, s.cfg.CheckInterval, time.Second)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-timer.C:
		}
		next := s.checkRound(s.ctx)
		if time.Since(lastCk) >= s.cfg.CheckpointInterval {
			// A replication follower refuses appends: the group's master checkpoints.
			if err := s.checkpointNow(s.ctx); err != nil && s.ctx.Err() == nil && !errors.Is(err, store.ErrFollower) {
				s.cfg.Logger.Warn("txn: writing the recovery checkpoint failed; retrying", "err", err)
			}
			lastCk = time.Now()
		}
		wait := time.Until(next)
		timer.Reset(min(max(wait, s.cfg.CheckResolution), longest))
	}
}

type dueHalf struct {
	pos    int64
	group  string
	checks uint16
	dueMs  int64
}

// scanChunk bounds how many entries a round looks at per hold of the table's lock, so
// Prepare and End wait microseconds, not the whole scan.
const scanChunk = 4096

// checkRound checks back every live half message that is due (at most MaxChecksPerRound),
// parks those checked CheckMax times, records the check-backs in one op record per
// maxOpEntries, and returns when the next one is due. Before the earliest due time it does
// not look at the table at all.
func (s *Service) checkRound(ctx context.Context) time.Time {
	now := s.cfg.Clock.Now()
	nowMs := now.UnixMilli()
	s.mu.Lock()
	if s.minDueMs > nowMs {
		next := time.UnixMilli(s.minDueMs)
		s.mu.Unlock()
		return next
	}
	// From here entries registered or made live again lower minDueMs themselves.
	s.minDueMs = math.MaxInt64
	s.mu.Unlock()
	nextMs := int64(math.MaxInt64)
	var due []dueHalf
	for from := int64(math.MinInt64); ; {
		s.mu.Lock()
		i := s.t.search(from)
		n := min(len(s.t.entries), i+scanChunk)
		for ; i < n; i++ {
			e := &s.t.entries[i]
			if e.state != stateLive {
				continue
			}
			if e.dueMs > nowMs || len(due) == s.cfg.MaxChecksPerRound {
				nextMs = min(nextMs, e.dueMs) // more due than a round takes: the next round
				continue
			}
			due = append(due, dueHalf{pos: e.pos, group: s.t.groups.name(e.group), checks: e.checks, dueMs: e.dueMs})
		}
		end := n >= len(s.t.entries)
		if !end {
			from = s.t.entries[n].pos
		}
		s.mu.Unlock()
		if end {
			break
		}
	}
	next := s.round(ctx, now, due, nextMs)
	s.mu.Lock()
	s.minDueMs = min(s.minDueMs, next.UnixMilli())
	s.mu.Unlock()
	return next
}

// round checks back or parks the due half messages and returns when the next one is due
// (nextMs: the earliest due time of the others).
func (s *Service) round(ctx context.Context, now time.Time, due []dueHalf, nextMs int64) time.Time {
	nowMs := now.UnixMilli()
	var checked []opEntry
	absent := map[string]bool{} // groups with no producer connected this round
	for _, d := range due {
		if ctx.Err() != nil {
			nextMs = min(nextMs, d.dueMs) // still due
			continue
		}
		if int(d.checks) >= s.cfg.CheckMax {
			s.discard(ctx, d.pos, int(d.checks)) // on failure finish makes it due again
			continue
		}
		s.m.checkDelay.Observe(float64(max(nowMs-d.dueMs, 0)) / 1000)
		if absent[d.group] {
			// Counted as RocketMQ counts a check with no producer to ask.
			s.m.checks.WithLabelValues("no_producer").Inc()
			checked = append(checked, opEntry{kind: opCheck, halfPos: d.pos})
			continue
		}
		half, err := s.readHalf(ctx, d.pos)
		if err != nil {
			s.cfg.Logger.Warn("txn: cannot read a half message to check it back; trying again next round", "commit_log_offset", d.pos, "err", err)
			nextMs = min(nextMs, d.dueMs)
			continue
		}
		req := checkRequest(half)
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckSendTimeout)
		err = s.check.CheckBack(cctx, req)
		cancel()
		switch {
		case err == nil:
			s.m.checks.WithLabelValues("sent").Inc()
		case errors.Is(err, ErrNoProducer):
			absent[d.group] = true
			s.m.checks.WithLabelValues("no_producer").Inc()
		default:
			s.m.checks.WithLabelValues("failed").Inc()
			s.cfg.Logger.Warn("txn: check-back failed on every connection of the producer group", "group", d.group, "uniq_key", req.MsgID, "err", err)
		}
		checked = append(checked, opEntry{kind: opCheck, halfPos: d.pos})
	}
	if len(checked) > 0 {
		for i := 0; i < len(checked); i += maxOpEntries {
			chunk := checked[i:min(i+maxOpEntries, len(checked))]
			rec, err := opRecord(s.cfg.StoreHost, nowMs, chunk)
			if err == nil {
				_, err = s.log.Append(ctx, rec)
			}
			if err != nil && ctx.Err() == nil {
				// The counts hold in memory; a restart before the next record counts fewer.
				s.cfg.Logger.Warn("txn: recording check-backs failed", "count", len(chunk), "err", err)
			}
		}
		again := nowMs + s.cfg.CheckInterval.Milliseconds()
		s.mu.Lock()
		for _, c := range checked {
			if i, ok := s.t.find(c.halfPos); ok && s.t.entries[i].state == stateLive {
				e := &s.t.entries[i]
				e.checks = min(e.checks+1, 1<<15)
				e.dueMs = again
			}
		}
		s.mu.Unlock()
		nextMs = min(nextMs, again)
	}
	if nextMs == math.MaxInt64 {
		return now.Add(time.Hour)
	}
	return time.UnixMilli(nextMs)
}

// discard parks a half message checked back checks times in CheckMaxTopic and forgets it.
func (s *Service) discard(ctx context.Context, pos int64, checks int) {
	s.mu.Lock()
	i, ok := s.t.find(pos)
	if ok && s.t.entries[i].state != stateLive {
		ok = false
	}
	if ok {
		s.t.entries[i].state = stateDeciding
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	half, err := s.readHalf(ctx, pos)
	if err == nil {
		err = s.park(ctx, half, checks)
	}
	s.finish(pos, err == nil)
	if err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("txn: parking a half message checked the maximum number of times failed; trying again next round", "commit_log_offset", pos, "err", err)
	}
}

// park appends the discard op and the parked copy in one append.
func (s *Service) park(ctx context.Context, half *message.Message, checks int) error {
	if err := s.appendWithCompanion(ctx, opDiscard, half, parkedCopy(half, s.cfg.StoreHost)); err != nil {
		return err
	}
	s.m.discards.Inc()
	p := half.Properties
	s.cfg.Logger.Warn("txn: half message discarded: no decision after the maximum number of check-backs (transaction check_max); it is parked in "+CheckMaxTopic,
		"group", p[message.PropertyProducerGroup], "topic", p[message.PropertyRealTopic], "uniq_key", p[message.PropertyUniqKey],
		"checks", checks, "age", s.cfg.Clock.Now().Sub(time.UnixMilli(half.StoreTimestamp)).Round(time.Second))
	return nil
}

// checkRequest builds the check-back of a half message: the header fields of §5.7 step 5
// and the stored record with the real topic and queue (§4.7).
func checkRequest(half *message.Message) CheckRequest {
	p := half.Properties
	view := *half
	view.Topic = p[message.PropertyRealTopic]
	if view.Topic == "" {
		view.Topic = half.Topic
	}
	if q, err := strconv.ParseInt(p[message.PropertyRealQueueID], 10, 32); err == nil && q >= 0 {
		view.QueueID = int32(q)
	}
	body, err := view.AppendEncoded(nil)
	if err != nil { // the half message itself encoded; the real topic is a stored one too
		body, _ = half.AppendEncoded(nil)
	}
	uniq := p[message.PropertyUniqKey]
	txID := p[message.PropertyTransactionID]
	if txID == "" {
		txID = uniq
	}
	return CheckRequest{
		Group: p[message.PropertyProducerGroup], TranStateTableOffset: half.QueueOffset, CommitLogOffset: half.CommitLogOffset,
		MsgID: uniq, TransactionID: txID, OffsetMsgID: message.OffsetMsgID(half.StoreHost, half.CommitLogOffset),
		Topic: view.Topic, Body: body,
	}
}
