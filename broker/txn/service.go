package txn

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
)

// Errors callers act on.
var (
	// ErrTooManyPending refuses a half message while Config.MaxPending are pending.
	ErrTooManyPending = errors.New("too many pending transactional half messages")
	// ErrNoHalf rejects an END_TRANSACTION whose offsets name no half message.
	ErrNoHalf = errors.New("no half message there")
	// ErrMismatch rejects an END_TRANSACTION whose producer group or queue offset is not
	// the half message's.
	ErrMismatch = errors.New("END_TRANSACTION does not match the half message")
	// ErrNoProducer is returned by a Checker when no producer of the group is connected.
	ErrNoProducer = errors.New("no producer of the group is connected")
	// ErrClosed is returned by calls on a closed Service.
	ErrClosed = errors.New("transaction service closed")
)

// Checker sends CHECK_TRANSACTION_STATE (39) to a live producer of req.Group, trying another
// of its connections when one fails, and returns ErrNoProducer when it has none. The broker
// implements it over its client registry.
type Checker interface {
	CheckBack(ctx context.Context, req CheckRequest) error
}

// CheckRequest is one check-back (PROTOCOL.md §5.7 step 5).
type CheckRequest struct {
	Group                string
	TranStateTableOffset int64 // the half message's queue offset in HalfTopic
	CommitLogOffset      int64 // the half message's commit-log position
	MsgID                string
	TransactionID        string
	OffsetMsgID          string
	Topic                string // the real topic
	// Body is the half message's stored record with the real topic and queue (§4.7).
	Body []byte
}

// Router is where a committed message learns where it is appended: the broker's routing of
// every message that becomes visible (scheduled delivery rewrites a delayed one into its
// parked form). It may change m's topic, queue and properties.
type Router func(m *message.Message) error

// Deps are what the broker gives the service.
type Deps struct {
	Log     Log
	Checker Checker
	// Route, nil for none, routes each committed message before it is encoded.
	Route Router
}

// Service keeps the transactional half messages of one broker: it stores them (Prepare),
// applies decisions (End), checks back the ones left without a decision, and derives all of
// that from the log at Open.
type Service struct {
	cfg   Config
	log   Log
	check Checker
	route Router
	m     *metrics

	// barrier is held shared by Prepare from before it reads OpTopic's end until its half
	// message is in the table, and exclusively while a checkpoint is computed, so a
	// checkpoint never skips a half message that is stored but not yet registered.
	barrier sync.RWMutex

	mu     sync.Mutex
	t      table
	lastCk checkpoint // last checkpoint written (or read at Open)
	closed bool
	// minDueMs is at or before every live entry's due time, so a round before it needs no
	// scan. Zero (the start) makes the first round scan.
	minDueMs int64
	// redoing is set by Open while it makes again a decision a crash cut short
	// (appendWithCompanion then writes a void op first); nothing else runs then.
	redoing bool

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the check loop has stopped
	once   sync.Once
}

// Open recovers the pending half messages from the log (FORMAT.md, "Recovery") and starts
// the check loop. Close stops it.
func Open(ctx context.Context, cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Log == nil || deps.Checker == nil {
		return nil, errors.New("txn: Open needs a Log and a Checker")
	}
	s := &Service{cfg: cfg, log: deps.Log, check: deps.Checker, route: deps.Route, done: make(chan struct{})}
	s.m = newMetrics(cfg.Registerer, s)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	started := time.Now()
	st, err := s.recover(ctx)
	if err != nil {
		s.cancel()
		s.m.unregister()
		return nil, fmt.Errorf("txn: recover pending half messages: %w", err)
	}
	cfg.Logger.Info("transactions recovered", "pending", st.pending, "halves_read", st.halves, "ops_read", st.ops,
		"redone", st.redone, "half_from", st.from.halfLow, "op_from", st.from.opFrom, "took", time.Since(started).Round(time.Millisecond))
	if cfg.noLoop {
		close(s.done)
	} else {
		go s.loop()
	}
	return s, nil
}

// Close stops the check loop and writes a last checkpoint, so the next Open reads little.
// It does not close the log. It is idempotent.
func (s *Service) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		<-s.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = s.checkpointNow(ctx)
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.m.unregister()
	})
	return err
}

// PrepareResult is what a stored half message answers the producer (§5.7 step 2).
type PrepareResult struct {
	CommitLogOffset int64 // of the half message: its offset msgId
	QueueOffset     int64 // in HalfTopic: the producer's tranStateTableOffset
	StoreTimestamp  int64
	TransactionID   string // the UNIQ_KEY
}

// Prepare stores m as a half message: it keeps m's topic and queue in REAL_TOPIC and
// REAL_QID, copies UNIQ_KEY into __transactionId__, records the producer group in PGROUP,
// clears the transaction bits and appends it to HalfTopic queue 0. m must carry a UNIQ_KEY;
// Prepare takes ownership of m and its properties.
func (s *Service) Prepare(ctx context.Context, m *message.Message, group string) (PrepareResult, error) {
	props := m.Properties
	uniq := props[message.PropertyUniqKey]
	if uniq == "" {
		return PrepareResult{}, errors.New("txn: a half message needs a UNIQ_KEY")
	}
	if group == "" {
		group = props[message.PropertyProducerGroup]
	}
	if group == "" {
		return PrepareResult{}, errors.New("a transactional message needs its producer group (PGROUP property or producerGroup header)")
	}
	s.mu.Lock()
	live, closed := s.t.live, s.closed
	s.mu.Unlock()
	if closed {
		return PrepareResult{}, ErrClosed
	}
	if live >= s.cfg.MaxPending {
		return PrepareResult{}, fmt.Errorf("%w: this broker holds %d half messages with no decision (transaction max_pending); commit or roll back pending transactions, or raise the limit",
			ErrTooManyPending, live)
	}
	if props[message.PropertyProducerGroup] == "" {
		props[message.PropertyProducerGroup] = group
	}
	group = props[message.PropertyProducerGroup] // what End checks and recovery reads
	props[message.PropertyRealTopic] = m.Topic
	props[message.PropertyRealQueueID] = strconv.Itoa(int(m.QueueID))
	props[message.PropertyTransactionID] = uniq
	props[message.PropertyTransactionPrep] = "true"
	m.Topic, m.QueueID = HalfTopic, 0
	m.SysFlag &^= message.FlagTransactionMask
	rec, err := m.AppendEncoded(nil)
	if err != nil {
		return PrepareResult{}, fmt.Errorf("half message cannot be stored: %w", err)
	}
	wait := s.firstWait(props)
	s.barrier.RLock()
	opFrom := s.log.MaxOffset(OpTopic, 0)
	// Not cancelled with the request: a half message stored must be registered, or it would
	// wait for the next restart to be checked back.
	res, err := s.log.Append(context.WithoutCancel(ctx), rec)
	if err == nil {
		s.mu.Lock()
		due := res[0].StoreTimestamp + wait.Milliseconds()
		s.t.insert(entry{pos: res[0].CommitLogOffset, opFrom: opFrom, dueMs: due}, group)
		s.minDueMs = min(s.minDueMs, due)
		s.mu.Unlock()
	}
	s.barrier.RUnlock()
	if err != nil {
		return PrepareResult{}, err
	}
	s.m.prepared.Inc()
	return PrepareResult{CommitLogOffset: res[0].CommitLogOffset, QueueOffset: res[0].QueueOffset,
		StoreTimestamp: res[0].StoreTimestamp, TransactionID: uniq}, nil
}

// firstWait is how long after storing a half message is first checked back.
func (s *Service) firstWait(props map[string]string) time.Duration {
	if v, ok := props[PropertyCheckImmunitySeconds]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return time.Duration(min(n, 1<<32)) * time.Second
		}
	}
	return s.cfg.Timeout
}

// Decision is END_TRANSACTION's commitOrRollback (the transaction bits of §4.4).
type Decision int32

const (
	DecisionUnknown  Decision = 0
	DecisionCommit   Decision = Decision(message.FlagTransactionCommit)
	DecisionRollback Decision = Decision(message.FlagTransactionRollback)
)

// EndRequest is an END_TRANSACTION (37), from the producer's local transaction or from its
// answer to a check-back.
type EndRequest struct {
	ProducerGroup        string
	TranStateTableOffset int64
	CommitLogOffset      int64
	Decision             Decision
	FromCheck            bool
	MsgID                string
	TransactionID        string
}

// Outcome is what End did.
type Outcome int

const (
	OutcomeCommitted      Outcome = iota // the message is on its real topic
	OutcomeRolledBack                    // the message is discarded
	OutcomeUnknown                       // no decision: left for check-back
	OutcomeAlreadyDecided                // a repeated decision: nothing done
	OutcomeInFlight                      // another decision of the same half message is being stored
)

func (o Outcome) String() string {
	return [...]string{"committed", "rolled back", "unknown", "already decided", "in flight"}[o]
}

// EndResult reports End's outcome and, for a commit, where the message went.
type EndResult struct {
	Outcome Outcome
	Topic   string // of the committed message, as routed
	QueueID int32
}

// End applies a decision. A commit appends, in one append, the op record and the committed
// copy right after it; a rollback appends the op record. Each half message is decided once:
// a repeated or concurrent decision changes nothing.
func (s *Service) End(ctx context.Context, req EndRequest) (EndResult, error) {
	switch req.Decision {
	case DecisionUnknown:
		s.m.ends.WithLabelValues("unknown").Inc()
		return EndResult{Outcome: OutcomeUnknown}, nil
	case DecisionCommit, DecisionRollback:
	default:
		return EndResult{}, fmt.Errorf("commitOrRollback %d is not 0 (unknown), 8 (commit) or 12 (rollback)", req.Decision)
	}
	pos := req.CommitLogOffset
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return EndResult{}, ErrClosed
	}
	i, ok := s.t.find(pos)
	if ok && s.t.entries[i].state == stateDeciding {
		s.mu.Unlock()
		s.m.ends.WithLabelValues("in_flight").Inc()
		return EndResult{Outcome: OutcomeInFlight}, nil
	}
	if ok {
		s.t.entries[i].state = stateDeciding
	}
	s.mu.Unlock()
	if !ok {
		return s.notPending(ctx, req)
	}
	half, err := s.readHalf(ctx, pos)
	if err == nil {
		err = matches(half, req)
	}
	var res EndResult
	if err == nil {
		if req.Decision == DecisionCommit {
			res, err = s.commit(ctx, half)
		} else {
			res, err = s.rollback(ctx, half)
		}
	}
	s.finish(pos, err == nil)
	if err != nil {
		result := "failed"
		if errors.Is(err, ErrMismatch) {
			result = "mismatch"
		}
		s.m.ends.WithLabelValues(result).Inc()
		return EndResult{}, err
	}
	return res, nil
}

// notPending answers a decision about a position with no pending half message: a half
// message there was decided (or parked) before.
func (s *Service) notPending(ctx context.Context, req EndRequest) (EndResult, error) {
	if half, err := s.readHalf(ctx, req.CommitLogOffset); err == nil {
		if err := matches(half, req); err != nil {
			s.m.ends.WithLabelValues("mismatch").Inc()
			return EndResult{}, err
		}
		s.m.ends.WithLabelValues("already_decided").Inc()
		return EndResult{Outcome: OutcomeAlreadyDecided}, nil
	}
	s.m.ends.WithLabelValues("no_half").Inc()
	return EndResult{}, fmt.Errorf("%w: commit-log offset %d holds no half message of this broker; the producer sent a wrong offset, or to the wrong broker",
		ErrNoHalf, req.CommitLogOffset)
}

// finish ends a decision: decided drops the entry, otherwise it is live again.
func (s *Service) finish(pos int64, decided bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.t.find(pos); ok {
		if decided {
			s.t.remove(i)
		} else {
			s.t.entries[i].state = stateLive
			s.minDueMs = min(s.minDueMs, s.t.entries[i].dueMs)
		}
	}
}

// readHalf reads and decodes the half message at pos.
func (s *Service) readHalf(ctx context.Context, pos int64) (*message.Message, error) {
	rec, err := s.log.ReadAt(ctx, pos, 0)
	if err != nil {
		return nil, fmt.Errorf("read half message at commit-log offset %d: %w", pos, err)
	}
	m, _, err := message.Decode(rec)
	if err != nil {
		return nil, fmt.Errorf("decode half message at commit-log offset %d: %w", pos, err)
	}
	if m.Topic != HalfTopic || m.CommitLogOffset != pos {
		return nil, fmt.Errorf("%w: the record at commit-log offset %d is a message of %s", ErrNoHalf, pos, m.Topic)
	}
	return m, nil
}

// matches applies RocketMQ's checks of END_TRANSACTION against the half message.
func matches(half *message.Message, req EndRequest) error {
	if g := half.Properties[message.PropertyProducerGroup]; req.ProducerGroup != "" && g != req.ProducerGroup {
		return fmt.Errorf("%w: producer group %q ends the half message of group %q at commit-log offset %d",
			ErrMismatch, req.ProducerGroup, g, half.CommitLogOffset)
	}
	if req.TranStateTableOffset != half.QueueOffset {
		return fmt.Errorf("%w: tranStateTableOffset %d, the half message at commit-log offset %d has queue offset %d",
			ErrMismatch, req.TranStateTableOffset, half.CommitLogOffset, half.QueueOffset)
	}
	return nil
}

// commit appends the op record and the committed copy in one append.
func (s *Service) commit(ctx context.Context, half *message.Message) (EndResult, error) {
	cp, err := committedCopy(half, s.cfg.StoreHost)
	if err != nil {
		return EndResult{}, err
	}
	if s.route != nil {
		if err := s.route(cp); err != nil {
			return EndResult{}, fmt.Errorf("route committed message %s: %w", half.Properties[message.PropertyUniqKey], err)
		}
	}
	if err := s.appendWithCompanion(ctx, opCommit, half, cp); err != nil {
		return EndResult{}, fmt.Errorf("commit half message at commit-log offset %d: %w", half.CommitLogOffset, err)
	}
	s.m.commits.Inc()
	s.m.ends.WithLabelValues("committed").Inc()
	return EndResult{Outcome: OutcomeCommitted, Topic: cp.Topic, QueueID: cp.QueueID}, nil
}

func (s *Service) rollback(ctx context.Context, half *message.Message) (EndResult, error) {
	op, err := opRecord(s.cfg.StoreHost, s.cfg.Clock.Now().UnixMilli(), []opEntry{{kind: opRollback, halfPos: half.CommitLogOffset}})
	if err != nil {
		return EndResult{}, err
	}
	if _, err := s.log.Append(context.WithoutCancel(ctx), op); err != nil {
		return EndResult{}, fmt.Errorf("roll back half message at commit-log offset %d: %w", half.CommitLogOffset, err)
	}
	s.m.rollbacks.Inc()
	s.m.ends.WithLabelValues("rolled_back").Inc()
	return EndResult{Outcome: OutcomeRolledBack}, nil
}

// appendWithCompanion appends the op record of kind about half and, right after it in the
// same append (one write), the companion record: the committed or the parked copy. A crash
// that keeps the op record keeps the companion or leaves the op record last in the log,
// where recovery finds it (recover.go).
//
// When it makes again a decision whose companion a crash cut off (recovery), a void op
// record goes first in the same append, so the earlier op record never counts again.
func (s *Service) appendWithCompanion(ctx context.Context, kind opKind, half, companion *message.Message) error {
	nowMs := s.cfg.Clock.Now().UnixMilli()
	var recs [][]byte
	if s.redoing {
		void, err := opRecord(s.cfg.StoreHost, nowMs, []opEntry{{kind: opVoid, halfPos: half.CommitLogOffset}})
		if err != nil {
			return err
		}
		recs = append(recs, void)
	}
	op, err := opRecord(s.cfg.StoreHost, nowMs, []opEntry{{kind: kind, halfPos: half.CommitLogOffset}})
	if err != nil {
		return err
	}
	rec, err := companion.AppendEncoded(nil)
	if err != nil {
		return fmt.Errorf("encode for %s: %w", companion.Topic, err)
	}
	recs = append(recs, op, rec)
	// Not cancelled with the request (END_TRANSACTION is oneway; its connection may close at
	// once): a decision stored must be known as stored, or it could be made twice.
	res, err := s.log.Append(context.WithoutCancel(ctx), recs...)
	if err != nil {
		return err
	}
	res = res[len(res)-2:]
	if got, want := res[1].CommitLogOffset, store.NextRecordPos(res[0].CommitLogOffset, res[0].Size); got != want {
		// Stored all the same, so decided; but recovery would not find this companion.
		s.cfg.Logger.Error("txn: the log broke Append's contract: a decision's second record is not right after its op record; a restart before the next decision may repeat it",
			"kind", kind.String(), "op_at", res[0].CommitLogOffset, "companion_at", got, "expected_at", want)
	}
	return nil
}

// committedCopy rebuilds a half message for its real topic and queue as RocketMQ's
// EndTransactionProcessor does: the commit transaction type, REAL_TOPIC, REAL_QID and
// TRAN_MSG gone, every other property (UNIQ_KEY, KEYS, TAGS, PGROUP, __transactionId__,
// delays) kept, and PREPAREDTRANSACTIONOFFSET naming the half message.
func committedCopy(half *message.Message, storeHost netip.AddrPort) (*message.Message, error) {
	topic := half.Properties[message.PropertyRealTopic]
	qid, err := strconv.ParseInt(half.Properties[message.PropertyRealQueueID], 10, 32)
	if topic == "" || err != nil || qid < 0 {
		return nil, fmt.Errorf("half message at commit-log offset %d has REAL_TOPIC=%q REAL_QID=%q; it cannot be committed",
			half.CommitLogOffset, topic, half.Properties[message.PropertyRealQueueID])
	}
	props := make(map[string]string, len(half.Properties))
	for k, v := range half.Properties {
		props[k] = v
	}
	delete(props, message.PropertyRealTopic)
	delete(props, message.PropertyRealQueueID)
	delete(props, message.PropertyTransactionPrep)
	if !storeHost.IsValid() {
		storeHost = half.StoreHost
	}
	return &message.Message{
		Topic: topic, QueueID: int32(qid), Flag: half.Flag,
		SysFlag:       half.SysFlag&^(message.FlagTransactionMask|message.FlagBornHostV6|message.FlagStoreHostV6) | message.FlagTransactionCommit,
		BornTimestamp: half.BornTimestamp, BornHost: half.BornHost, StoreHost: storeHost,
		ReconsumeTimes: half.ReconsumeTimes, PreparedTransactionOffset: half.CommitLogOffset,
		Body: half.Body, Properties: props,
	}, nil
}

// parkedCopy is a half message as it is parked in CheckMaxTopic: as stored, in another
// topic, with PREPAREDTRANSACTIONOFFSET naming the half message.
func parkedCopy(half *message.Message, storeHost netip.AddrPort) *message.Message {
	if !storeHost.IsValid() {
		storeHost = half.StoreHost
	}
	return &message.Message{
		Topic: CheckMaxTopic, Flag: half.Flag, SysFlag: half.SysFlag &^ (message.FlagBornHostV6 | message.FlagStoreHostV6),
		BornTimestamp: half.BornTimestamp, BornHost: half.BornHost, StoreHost: storeHost,
		ReconsumeTimes: half.ReconsumeTimes, PreparedTransactionOffset: half.CommitLogOffset,
		Body: half.Body, Properties: half.Properties,
	}
}

// isCompanionOf reports whether rec is the committed or parked copy of the half message at
// halfPos with unique key uniq.
func isCompanionOf(rec []byte, halfPos int64, uniq string) bool {
	m, _, err := message.Decode(rec)
	return err == nil && m.PreparedTransactionOffset == halfPos && m.UniqKey() == uniq
}
