package timer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/tier"
)

// Service is scheduled delivery for one broker: it parks scheduled messages in ParkTopic,
// indexes them by due time, and delivers each to its real topic and queue when due.
type Service struct {
	cfg   Config
	log   Log
	ix    *index
	clock Clock
	m     *metrics

	enqCtx, fireCtx       context.Context
	enqCancel, fireCancel context.CancelFunc
	stopFire              chan struct{} // closed by Close: fire what is due, checkpoint, stop
	stopFlush             chan struct{}
	wake                  chan struct{} // new entries: the fire loop re-plans
	flushWake             chan struct{} // the memtable is full
	enqDone, fireDone     chan struct{}
	flushDone             chan struct{}

	scheduledN, firedN, droppedN atomic.Int64

	mu         sync.Mutex
	retry      []retryEntry
	backoffs   map[int64]time.Duration // qoff → last retry wait, until it fires
	lastCkAt   time.Time
	ckOwed     bool // timers fired since the last checkpoint
	lastCk     checkpoint
	rebuiltAt  int64 // ParkTopic offset a rebuild started from, -1 if none
	lateness   latenessRing
	closed     bool
	closeErr   error
	closedDone chan struct{}
}

type retryEntry struct {
	e       entry
	atMs    int64
	backoff time.Duration
	err     error
}

// Open recovers the timer index from cfg.Dir and the log (the fired-state checkpoint is read
// from the log, the index is rebuilt from ParkTopic if it is missing or unusable) and starts
// indexing, firing and flushing. Close stops it.
func Open(ctx context.Context, cfg Config, log Log) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxAppendBytes < checkpointBytes+512 {
		return nil, fmt.Errorf("timer config: MaxAppendBytes %d cannot hold a checkpoint record", cfg.MaxAppendBytes)
	}
	skip, err := readCheckpoint(ctx, log, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("timer: read the fired-state checkpoint from %s: %w; check the cold tier and restart", CheckpointTopic, err)
	}
	ix := newIndex(cfg.Dir, cfg.Logger)
	rebuilt, err := ix.open(skip, log.MaxOffset(ParkTopic, 0))
	if err != nil {
		ix.close()
		return nil, err
	}
	s := &Service{
		cfg: cfg, log: log, ix: ix, clock: cfg.Clock, m: newMetrics(cfg.Registerer),
		stopFire: make(chan struct{}), stopFlush: make(chan struct{}),
		wake: make(chan struct{}, 1), flushWake: make(chan struct{}, 1),
		enqDone: make(chan struct{}), fireDone: make(chan struct{}), flushDone: make(chan struct{}),
		lastCk: skip, rebuiltAt: rebuilt, closedDone: make(chan struct{}), backoffs: map[int64]time.Duration{},
	}
	s.m.register(s)
	s.enqCtx, s.enqCancel = context.WithCancel(context.Background())
	s.fireCtx, s.fireCancel = context.WithCancel(context.Background())
	cfg.Logger.Info("timer service open", "dir", cfg.Dir, "indexed_offset", ix.indexed, "runs", len(ix.runs),
		"checkpoint_indexed_below", skip.indexedBelow, "checkpoint_fired_through_ms", skip.firedThrough, "rebuild_from", rebuilt)
	go s.enqueueLoop()
	go s.fireLoop()
	go s.flushLoop()
	return s, nil
}

// readCheckpoint returns the latest fired-state record in the log (zero if none). A record
// that fails its checks is passed over for the one before it.
func readCheckpoint(ctx context.Context, log Log, lg *slog.Logger) (checkpoint, error) {
	end := log.MaxOffset(CheckpointTopic, 0)
	for off := end - 1; off >= 0 && off >= end-16; off-- {
		recs, _, err := log.ReadQueue(ctx, CheckpointTopic, 0, off, 1)
		if err != nil {
			return checkpoint{}, err
		}
		if len(recs) == 0 {
			break // nothing left at or before off in either tier
		}
		m, _, err := message.Decode(recs[0])
		if err == nil && m.QueueOffset == off {
			var c checkpoint
			if c, err = decodeCheckpoint(m.Body); err == nil {
				return c, nil
			}
		}
		if err == nil {
			err = fmt.Errorf("record at offset %d is not the one asked for", m.QueueOffset)
		}
		lg.Warn("timer checkpoint unreadable; trying the one before", "offset", off, "err", err)
	}
	return checkpoint{}, nil
}

// Intercept decides whether a message bound for (topic, queueID) with these properties is
// scheduled. If so it rewrites props into those of the parked record (REAL_TOPIC, REAL_QID,
// TIMER_OUT_MS) and returns where to append it; the caller encodes the record with
// Parked.Topic and Parked.QueueID and hands it to Park. ok is false for a message to deliver
// now; err says why a schedule is refused (ErrTooFar, ErrBadSchedule).
func (s *Service) Intercept(props map[string]string, topic string, queueID int32) (p Parked, ok bool, err error) {
	p, ok, err = plan(func(k string) string { return props[k] }, s.clock.Now().UnixMilli(), s.cfg.levels, s.cfg.MaxDelay)
	if !ok || err != nil {
		return Parked{}, false, err
	}
	rewriteParked(props, p, topic, queueID)
	p.Topic, p.QueueID = ParkTopic, 0
	return p, true, nil
}

// Park appends parked records (built after Intercept). They are acknowledged like any
// message (after the fsync under sync flush); the index picks them up from ParkTopic.
func (s *Service) Park(ctx context.Context, recs ...[]byte) ([]store.AppendResult, error) {
	res, err := s.log.Append(ctx, recs...)
	if err == nil {
		s.m.scheduled.Add(float64(len(recs)))
		s.scheduledN.Add(int64(len(recs)))
	}
	return res, err
}

// DelayLevels is the delay-level table in use.
func (s *Service) DelayLevels() []time.Duration { return append([]time.Duration(nil), s.cfg.levels...) }

// enqueueLoop tails ParkTopic and indexes every parked record.
func (s *Service) enqueueLoop() {
	defer close(s.enqDone)
	ctx := s.enqCtx
	s.ix.mu.Lock()
	off := s.ix.indexed
	s.ix.mu.Unlock()
	var failures int
	for ctx.Err() == nil {
		recs, next, err := s.log.ReadQueue(ctx, ParkTopic, 0, off, 1024)
		if err == nil && len(recs) == 0 {
			if next > off {
				s.ix.insert(nil, next)
				off = next
				continue
			}
			_, err = s.log.WaitForAppend(ctx, ParkTopic, 0, off)
			if err == nil {
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, store.ErrClosed) {
				return
			}
			failures++
			if failures == 1 || failures%100 == 0 {
				s.cfg.Logger.Warn("timer: reading parked messages failed; retrying", "offset", off, "err", err, "failures", failures)
			}
			sleepCtx(ctx, backoff(failures))
			continue
		}
		failures = 0
		es := make([]entry, 0, len(recs))
		for _, rec := range recs {
			e, err := parkedEntry(rec)
			if err != nil {
				s.m.dropped.WithLabelValues("unreadable").Inc()
				s.droppedN.Add(1)
				s.cfg.Logger.Error("timer: parked record has no due time; it is not scheduled", "queue_offset", off, "err", err)
				continue
			}
			es = append(es, e)
		}
		low := s.ix.insert(es, next)
		off = next
		s.m.indexed.Add(float64(len(es)))
		if low != math.MaxInt64 {
			notify(s.wake)
		}
		s.ix.mu.Lock()
		full := len(s.ix.mem) >= s.cfg.MemtableEntries
		s.ix.mu.Unlock()
		if full {
			notify(s.flushWake)
		}
	}
}

// parkedEntry reads the index entry of a parked record.
func parkedEntry(rec []byte) (entry, error) {
	h, err := message.ParseRecordHeader(rec)
	if err != nil {
		return entry{}, err
	}
	v, ok := recordProperty(rec, &h, PropertyTimerOutMs)
	if !ok {
		return entry{}, fmt.Errorf("no %s property", PropertyTimerOutMs)
	}
	due, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return entry{}, fmt.Errorf("%s=%q: %w", PropertyTimerOutMs, v, err)
	}
	return entry{due: due, pos: h.CommitLogOffset, qoff: h.QueueOffset, size: h.TotalSize}, nil
}

// recordProperty finds one property in a stored record (after ParseRecordHeader accepted
// it) without decoding the others.
func recordProperty(rec []byte, h *message.RecordHeader, key string) (string, bool) {
	p := h.BodyOffset + h.BodyLen
	topicLen := 0
	if int32(binary.BigEndian.Uint32(rec[4:])) == message.MagicCodeV2 {
		topicLen, p = int(binary.BigEndian.Uint16(rec[p:])), p+2
	} else {
		topicLen, p = int(rec[p]), p+1
	}
	p += topicLen
	if p+2 > len(rec) {
		return "", false
	}
	n := int(binary.BigEndian.Uint16(rec[p:]))
	if p+2+n > len(rec) {
		return "", false
	}
	return propertyIn(rec[p+2:p+2+n], key)
}

// propertyIn scans "k\x01v\x02" pairs for key.
func propertyIn(props []byte, key string) (string, bool) {
	for len(props) > 0 {
		end := len(props)
		for i, c := range props {
			if c == 2 {
				end = i
				break
			}
		}
		piece := props[:end]
		for i, c := range piece {
			if c == 1 {
				if string(piece[:i]) == key {
					return string(piece[i+1:]), true
				}
				break
			}
		}
		if end == len(props) {
			break
		}
		props = props[end+1:]
	}
	return "", false
}

// fireLoop loads the near window, fires what is due from a timer on the next due time, and
// writes the fired-state checkpoints.
func (s *Service) fireLoop() {
	defer close(s.fireDone)
	lookahead := s.cfg.Lookahead.Milliseconds()
	stopping, stopAt := false, int64(0)
	for {
		now := s.clock.Now()
		nowMs := now.UnixMilli()
		if !stopping {
			select {
			case <-s.stopFire:
				stopping, stopAt = true, nowMs
			default:
			}
		}
		dueBy := nowMs
		if stopping {
			dueBy = min(nowMs, stopAt) // Close fires what was due when it was called, then stops
		}
		s.promoteRetries(nowMs)
		if err := s.ix.advance(nowMs+lookahead, s.cfg.MaxHeapEntries); err != nil {
			s.m.indexErrors.Inc()
		}
		if batch := s.ix.popDue(dueBy, s.cfg.MaxFireBatch); len(batch) > 0 {
			if err := s.fire(batch, stopping); err != nil {
				if stopping || s.fireCtx.Err() != nil {
					return
				}
				wait := 100 * time.Millisecond
				if errors.Is(err, store.ErrFollower) {
					wait = time.Second // until this member is promoted
				}
				sleepCtx(s.fireCtx, wait)
			}
			continue
		}
		s.mu.Lock()
		owed, ckAt := s.ckOwed, s.lastCkAt.Add(s.cfg.CheckpointInterval)
		s.mu.Unlock()
		if stopping || owed && !now.Before(ckAt) {
			if err := s.writeCheckpoint(); err != nil && !stopping {
				wait := 100 * time.Millisecond
				if errors.Is(err, store.ErrFollower) {
					wait = time.Second // the master checkpoints; this member follows
				} else {
					s.cfg.Logger.Warn("timer: write checkpoint failed; retrying", "err", err)
				}
				sleepCtx(s.fireCtx, wait)
				continue
			}
			if stopping {
				return
			}
			owed = false
		}
		heapTop, nextLoad := s.ix.nextWake(s.cfg.MaxHeapEntries)
		// advance loads what is due before now+lookahead: wake once that passes nextLoad.
		wakeAt := min(heapTop, satSub(nextLoad, lookahead-1), s.retryWakeMs())
		if owed {
			wakeAt = min(wakeAt, ckAt.UnixMilli())
		}
		at := now.Add(maxIdleWait)
		if wakeAt != math.MaxInt64 {
			if w := time.UnixMilli(wakeAt); w.Before(at) {
				at = w
			}
			if !at.After(now) {
				continue
			}
		}
		t := s.clock.TimerAt(at)
		select {
		case <-t.C():
		case <-s.wake:
		case <-s.stopFire:
			stopping, stopAt = true, nowMs
		}
		t.Stop()
	}
}

// maxIdleWait bounds the fire loop's sleep when nothing is pending.
const maxIdleWait = time.Minute

func satSub(a, b int64) int64 {
	if a == math.MaxInt64 {
		return a
	}
	return a - b
}

// fire delivers a batch of due timers: it reads their parked records (local disk, else the
// bucket), appends the delivered copies and, at most every CheckpointInterval (always when
// stopping), a checkpoint with them.
func (s *Service) fire(batch []entry, final bool) error {
	recs := s.readParked(batch)
	now := s.clock.Now()
	var copies [][]byte
	var fired, failed []entry
	for i, e := range batch {
		r := recs[i]
		if r.err == nil {
			var err error
			if r.rec, err = deliverable(r.rec, s.cfg.StoreHost, now.UnixMilli()); err != nil {
				r.err = err
			}
		}
		switch {
		case r.err == nil:
			copies = append(copies, r.rec)
			fired = append(fired, e)
		case permanent(r.err):
			s.m.dropped.WithLabelValues("undeliverable").Inc()
			s.droppedN.Add(1)
			s.cfg.Logger.Error("timer: parked message cannot be delivered; dropping it", "commit_log_offset", e.pos, "queue_offset", e.qoff, "err", r.err)
		default:
			failed = append(failed, e)
			s.m.readErrors.Inc()
			s.addRetry(e, r.err, now)
		}
	}
	s.mu.Lock()
	withCk := final || now.Sub(s.lastCkAt) >= s.cfg.CheckpointInterval
	s.mu.Unlock()
	var ck checkpoint
	if withCk {
		ck = s.ix.checkpoint(s.retryMinDue())
	}
	chunks := chunk(copies, s.cfg.MaxAppendBytes)
	if withCk {
		ckRec, err := s.checkpointRecord(ck, now)
		if err != nil {
			return err
		}
		if len(chunks) == 0 || chunkBytes(chunks[len(chunks)-1])+len(ckRec) > s.cfg.MaxAppendBytes {
			chunks = append(chunks, nil)
		}
		chunks[len(chunks)-1] = append(chunks[len(chunks)-1], ckRec)
	}
	done := 0
	for ci, c := range chunks {
		n := len(c)
		if withCk && ci == len(chunks)-1 {
			n-- // the checkpoint record
		}
		if _, err := s.log.Append(s.fireCtx, c...); err != nil {
			s.ix.requeue(fired[done:])
			s.m.appendErrors.Inc()
			// A follower's store refuses appends: its group's master fires (the copies
			// reach this member by replication), so that is no failure worth a warning.
			if s.fireCtx.Err() == nil && !errors.Is(err, store.ErrClosed) && !errors.Is(err, store.ErrFollower) {
				s.cfg.Logger.Warn("timer: appending delivered messages failed; they stay pending", "count", len(fired)-done, "err", err)
			}
			s.mu.Lock()
			s.ckOwed = true
			s.mu.Unlock()
			return err
		}
		at := s.clock.Now()
		for _, e := range fired[done : done+n] {
			late := at.Sub(time.UnixMilli(e.due))
			s.m.lateness.Observe(late.Seconds())
			s.lateness.add(late)
		}
		s.m.fired.Add(float64(n))
		s.firedN.Add(int64(n))
		done += n
	}
	s.mu.Lock()
	for _, e := range fired {
		delete(s.backoffs, e.qoff)
	}
	s.mu.Unlock()
	s.mu.Lock()
	if withCk {
		s.lastCk, s.lastCkAt, s.ckOwed = ck, now, false
		s.m.checkpoints.Inc()
	} else {
		s.ckOwed = s.ckOwed || len(batch) > len(failed)
	}
	s.mu.Unlock()
	if withCk {
		s.ix.setFired(ck)
	}
	return nil
}

// writeCheckpoint appends a checkpoint record on its own.
func (s *Service) writeCheckpoint() error {
	now := s.clock.Now()
	ck := s.ix.checkpoint(s.retryMinDue())
	rec, err := s.checkpointRecord(ck, now)
	if err != nil {
		return err
	}
	if _, err := s.log.Append(s.fireCtx, rec); err != nil {
		return err
	}
	s.mu.Lock()
	s.lastCk, s.lastCkAt, s.ckOwed = ck, now, false
	s.mu.Unlock()
	s.m.checkpoints.Inc()
	s.ix.setFired(ck)
	return nil
}

func (s *Service) checkpointRecord(ck checkpoint, now time.Time) ([]byte, error) {
	m := &message.Message{Topic: CheckpointTopic, BornTimestamp: now.UnixMilli(), BornHost: s.cfg.StoreHost,
		StoreHost: s.cfg.StoreHost, Body: encodeCheckpoint(ck)}
	return m.AppendEncoded(nil)
}

func chunk(recs [][]byte, limit int) [][][]byte {
	var out [][][]byte
	n := 0
	for _, r := range recs {
		if len(out) == 0 || n+len(r) > limit {
			out = append(out, nil)
			n = 0
		}
		out[len(out)-1] = append(out[len(out)-1], r)
		n += len(r)
	}
	return out
}

func chunkBytes(c [][]byte) int {
	n := 0
	for _, r := range c {
		n += len(r)
	}
	return n
}

type readResult struct {
	rec []byte
	err error
}

// readParked reads the batch's parked records: one after the other while reads are quick
// (local disk), and with up to ReadConcurrency at once for the rest of the batch as soon as
// one is slow (the cold tier answers in tens of milliseconds a request).
func (s *Service) readParked(batch []entry) []readResult {
	out := make([]readResult, len(batch))
	read := func(i int) {
		e := batch[i]
		rec, err := s.log.ReadAt(s.fireCtx, e.pos, e.size)
		if err == nil {
			var h message.RecordHeader
			if h, err = message.ParseRecordHeader(rec); err == nil && (h.CommitLogOffset != e.pos || h.Topic != ParkTopic || h.QueueOffset != e.qoff) {
				err = fmt.Errorf("%w: commit-log offset %d holds %s/%d offset %d, not the parked record", errUndeliverable, e.pos, h.Topic, h.QueueID, h.QueueOffset)
			}
		}
		out[i] = readResult{rec, err}
	}
	i := 0
	for ; i < len(batch); i++ {
		start := time.Now()
		read(i)
		if time.Since(start) > slowRead {
			i++
			break
		}
	}
	sem := make(chan struct{}, s.cfg.ReadConcurrency)
	var wg sync.WaitGroup
	for ; i < len(batch); i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			read(i)
		}(i)
	}
	wg.Wait()
	return out
}

// slowRead is a read of a parked record that did not come from local disk.
const slowRead = 2 * time.Millisecond

// permanent reports errors that retrying cannot cure.
func permanent(err error) bool {
	return errors.Is(err, errUndeliverable) || errors.Is(err, message.ErrMalformed) ||
		errors.Is(err, store.ErrCorrupt) || errors.Is(err, tier.ErrCorrupt)
}

func (s *Service) addRetry(e entry, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.backoffs[e.qoff]
	b = min(max(2*b, 200*time.Millisecond), 30*time.Second)
	s.backoffs[e.qoff] = b
	s.retry = append(s.retry, retryEntry{e: e, atMs: now.Add(b).UnixMilli(), backoff: b, err: err})
	if len(s.retry) == 1 || len(s.retry)%100 == 0 {
		s.cfg.Logger.Warn("timer: reading a parked message failed; retrying", "commit_log_offset", e.pos, "retry_in", b, "err", err)
	}
}

// promoteRetries puts retries whose wait is over back in the heap.
func (s *Service) promoteRetries(nowMs int64) {
	s.mu.Lock()
	var back []entry
	keep := s.retry[:0]
	for _, r := range s.retry {
		if r.atMs <= nowMs {
			back = append(back, r.e)
		} else {
			keep = append(keep, r)
		}
	}
	s.retry = keep
	s.mu.Unlock()
	if len(back) > 0 {
		s.ix.requeue(back)
	}
}

func (s *Service) retryMinDue() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := int64(math.MaxInt64)
	for _, r := range s.retry {
		m = min(m, r.e.due)
	}
	return m
}

func (s *Service) retryWakeMs() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := int64(math.MaxInt64)
	for _, r := range s.retry {
		m = min(m, r.atMs)
	}
	return m
}

// flushLoop turns the memtable into runs every FlushInterval (or when it is full) and
// compacts.
func (s *Service) flushLoop() {
	defer close(s.flushDone)
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	var failures int
	for {
		select {
		case <-t.C:
		case <-s.flushWake:
		case <-s.stopFlush:
			return
		}
		err := s.ix.flush()
		if err == nil {
			err = s.ix.compact()
		}
		if err != nil {
			failures++
			s.m.indexErrors.Inc()
			if failures == 1 || failures%60 == 0 {
				s.cfg.Logger.Warn("timer: writing the index failed; pending timers stay in the commit log and memory", "err", err, "failures", failures)
			}
			continue
		}
		failures = 0
	}
}

// Sync flushes the index now: the memtable becomes a run and the manifest records it.
func (s *Service) Sync() error {
	if err := s.ix.flush(); err != nil {
		return err
	}
	return s.ix.compact()
}

// Close stops indexing, fires what is due, writes a final checkpoint and flushes the index.
// Timers fire exactly once across a Close and the next Open. If ctx ends first, firing
// stops where it is (what fired after the last checkpoint may fire again after Open). Close
// is idempotent.
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closedDone
		return s.closeErr
	}
	s.closed = true
	s.mu.Unlock()
	defer close(s.closedDone)
	s.enqCancel()
	<-s.enqDone
	close(s.stopFire)
	select {
	case <-s.fireDone:
	case <-ctx.Done():
		s.fireCancel()
		<-s.fireDone
	}
	s.fireCancel()
	close(s.stopFlush)
	<-s.flushDone
	var errs []error
	if err := s.ix.flush(); err != nil {
		errs = append(errs, fmt.Errorf("timer: flush index: %w", err))
	}
	s.ix.close()
	s.m.unregister(s)
	s.closeErr = errors.Join(errs...)
	return s.closeErr
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func backoff(failures int) time.Duration {
	return min(time.Duration(1<<min(failures, 8))*10*time.Millisecond, 5*time.Second)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
