package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/broker/store"
)

// FollowerConfig configures the follower side.
type FollowerConfig struct {
	Store  *store.Store
	Member string // this member's name, unique in its group (at most 255 bytes)
	// MaxFrame bounds a frame read from the master (default DefaultMaxFrame); it must hold
	// the master's MaxChunk or its largest record, whichever is larger, plus 29 bytes.
	MaxFrame int
	// HeartbeatInterval must match the master's (default DefaultHeartbeatInterval): three
	// intervals without a frame close the connection.
	HeartbeatInterval time.Duration
	// Dial opens the connection (default: a net.Dialer with a 5 s timeout). Set it for TLS.
	Dial   func(ctx context.Context, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Follower is the slave side: it copies the master's log into its store.
type Follower struct {
	cfg  FollowerConfig
	log  *slog.Logger
	seen atomic.Int64 // highest master epoch seen

	mu        sync.Mutex
	connected bool
	master    string
	masterEnd int64
}

var (
	// ErrStaleEpoch is returned by Run when the master's epoch is older than one this
	// follower has seen: that master is deposed and its frames are refused.
	ErrStaleEpoch = errors.New("replication: master epoch is older than one already seen; refusing a deposed master")
	// ErrRefused wraps the reason a master gave for refusing this follower.
	ErrRefused = errors.New("replication: the master refused this follower")
)

// NewFollower returns a follower for cfg.
func NewFollower(cfg FollowerConfig) *Follower {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 5 * time.Second}
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Follower{cfg: cfg, log: cfg.Logger.With("component", "replication-follower", "member", cfg.Member)}
	if h := cfg.Store.EpochHistory(); len(h) > 0 {
		f.seen.Store(h[len(h)-1].Epoch)
	}
	return f
}

// SeenEpoch is the highest master epoch this follower has seen (from Run's argument, the
// master's frames or its own epoch history).
func (f *Follower) SeenEpoch() int64 { return f.seen.Load() }

// FollowStatus is the follower's view of its replication.
type FollowStatus struct {
	Connected bool
	Master    string
	MasterEnd int64 // the master's log end as last heard (welcome or heartbeat)
	End       int64 // the local log end
}

// Status reports the current connection and ends.
func (f *Follower) Status() FollowStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FollowStatus{Connected: f.connected, Master: f.master, MasterEnd: f.masterEnd, End: f.cfg.Store.EndOffset()}
}

// Run puts the store in follower mode and copies the log of the master at masterAddr, elected
// with epoch, until ctx ends (returning ctx's error). It raises the store's read limit
// (store.SetReadLimit) to the master's watermarks as they come, so that a store limited
// before Run serves only records the master's in-sync set holds; an unlimited store stays
// so. It reconnects after a dropped connection (backing off up to 2 s). It returns
// ErrStaleEpoch if that master's epoch is older than one seen, and an ErrRefused error if the
// master will not serve it; a store error (a write failure) is returned too. When the group
// elects another master, cancel ctx and call Run with the new address and epoch.
func (f *Follower) Run(ctx context.Context, masterAddr string, epoch int64) error {
	if err := f.cfg.Store.SetFollower(ctx, true); err != nil {
		return fmt.Errorf("replication: switch the store to follower mode: %w", err)
	}
	if epoch < f.seen.Load() {
		return fmt.Errorf("%w: told to follow %s at epoch %d, seen %d", ErrStaleEpoch, masterAddr, epoch, f.seen.Load())
	}
	f.seen.Store(epoch)
	backoff := 50 * time.Millisecond
	for {
		progressed, err := f.session(ctx, masterAddr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if progressed {
			backoff = 50 * time.Millisecond
		}
		f.log.Warn("replication: connection to master ended; reconnecting", "master", masterAddr, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// fatalError ends Run instead of reconnecting.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// session runs one connection; progressed reports whether the handshake succeeded.
func (f *Follower) session(ctx context.Context, addr string) (progressed bool, err error) {
	st := f.cfg.Store
	c, err := f.cfg.Dial(ctx, addr)
	if err != nil {
		return false, fmt.Errorf("dial master %s: %w", addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	silence := 3 * f.cfg.HeartbeatInterval
	hello := Hello{Member: f.cfg.Member, Oldest: st.MinCommitLogOffset(), End: st.EndOffset(), Epoch: f.seen.Load(), History: st.EpochHistory()}
	c.SetWriteDeadline(time.Now().Add(helloTimeout))
	if _, err := c.Write(hello.appendTo(nil)); err != nil {
		return false, fmt.Errorf("send hello to %s: %w", addr, err)
	}
	fr := &frameReader{r: c, max: f.cfg.MaxFrame}
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	msg, err := fr.next()
	if err != nil {
		return false, fmt.Errorf("read welcome from %s: %w", addr, err)
	}
	var w *Welcome
	switch m := msg.(type) {
	case *Welcome:
		w = m
	case *Refusal:
		if m.Epoch < f.seen.Load() {
			return false, &fatalError{fmt.Errorf("%w: %s is at epoch %d, seen %d (%s)", ErrStaleEpoch, addr, m.Epoch, f.seen.Load(), m.Reason)}
		}
		return false, &fatalError{fmt.Errorf("%w: %s", ErrRefused, m.Reason)}
	default:
		return false, fmt.Errorf("%w: %s answered hello with %T", ErrFrame, addr, msg)
	}
	if err := f.checkEpoch(w.Epoch, addr); err != nil {
		return false, err
	}
	if w.TruncateTo < w.Oldest {
		f.log.Warn("replication: the master no longer holds this member's log end locally; discarding the local log and restarting it at the master's oldest segment (older records are in the cold tier)",
			"end", st.EndOffset(), "from", w.TruncateTo, "masterOldest", w.Oldest, "master", addr)
		if err := st.ResetTo(w.Oldest); err != nil {
			return false, &fatalError{fmt.Errorf("replication: restart the log at %d as %s has no older bytes: %w", w.Oldest, addr, err)}
		}
		return true, fmt.Errorf("restarted the local log at %d; connecting again", w.Oldest)
	}
	if end := st.EndOffset(); w.TruncateTo < end {
		f.log.Warn("replication: truncating the log tail the master does not have", "from", w.TruncateTo, "end", end, "master", addr)
		if err := st.TruncateTo(w.TruncateTo); err != nil {
			return false, &fatalError{fmt.Errorf("replication: truncate to %d as %s says: %w", w.TruncateTo, addr, err)}
		}
	} else if w.TruncateTo > end {
		return false, fmt.Errorf("%w: %s says to truncate to %d, past the local end %d", ErrFrame, addr, w.TruncateTo, end)
	}
	f.mu.Lock()
	f.connected, f.master, f.masterEnd = true, addr, w.MasterEnd
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.connected = false
		f.mu.Unlock()
	}()
	f.log.Info("replication: following master", "master", addr, "epoch", w.Epoch, "from", w.TruncateTo, "masterEnd", w.MasterEnd)
	// The reader submits chunks to the store without waiting (several in flight: the store
	// writes one while it indexes the previous); the acker waits for each in order and acks.
	pending := make(chan pendingAck, applyDepth)
	ackFailed := make(chan error, 1)
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		f.ackLoop(c, pending, ackFailed)
	}()
	defer func() { // on every return: stop the acker once what was submitted is answered
		close(pending)
		<-ackDone
	}()
	next := w.TruncateTo
	pending <- pendingAck{end: next}
	curEpoch := lastEpoch(st.EpochHistory())
	for {
		c.SetReadDeadline(time.Now().Add(silence))
		msg, err := fr.next()
		if err != nil {
			select {
			case aerr := <-ackFailed: // the acker closed the connection
				return true, aerr
			default:
			}
			return true, fmt.Errorf("read from master %s: %w", addr, err)
		}
		switch m := msg.(type) {
		case *Heartbeat:
			if err := f.checkEpoch(m.Epoch, addr); err != nil {
				return true, err
			}
			f.mu.Lock()
			f.masterEnd = m.MasterEnd
			f.mu.Unlock()
			pending <- pendingAck{end: next}
		case *Watermark:
			if err := f.checkEpoch(m.Epoch, addr); err != nil {
				return true, err
			}
			// Raise only: a new master's watermark starts low while its in-sync set
			// reconnects, yet what the last master's set confirmed is held by every member
			// that can be elected (a truncation past it lowers the limit: store.TruncateTo).
			if m.Pos > st.ReadLimit() {
				st.SetReadLimit(m.Pos)
			}
		case *Data:
			if err := f.checkEpoch(m.Epoch, addr); err != nil {
				return true, err
			}
			if m.Pos != next {
				return true, fmt.Errorf("%w: %s sent bytes at %d, the local end is %d", ErrFrame, addr, m.Pos, next)
			}
			if m.DataEpoch != curEpoch && m.DataEpoch > 0 {
				if err := st.BeginEpoch(m.DataEpoch); err != nil {
					return true, &fatalError{fmt.Errorf("replication: record epoch %d at %d: %w", m.DataEpoch, m.Pos, err)}
				}
				curEpoch = m.DataEpoch
			}
			wait, err := st.AppendReplicatedAsync(m.Pos, m.Bytes)
			if err != nil {
				if errors.Is(err, store.ErrCorrupt) {
					return true, err // reconnect: the handshake finds the position again
				}
				return true, &fatalError{fmt.Errorf("replication: store bytes at %d from %s: %w", m.Pos, addr, err)}
			}
			fr.buf = nil // the store holds m.Bytes until wait returns
			next += int64(len(m.Bytes))
			f.mu.Lock()
			f.masterEnd = max(f.masterEnd, next)
			f.mu.Unlock()
			pending <- pendingAck{wait: wait, end: next}
		default:
			return true, fmt.Errorf("%w: unexpected %T from master %s", ErrFrame, msg, addr)
		}
	}
}

// applyDepth is how many chunks a follower has in flight in its store.
const applyDepth = 4

// pendingAck is an ack to send once wait (if set) returns.
type pendingAck struct {
	wait func() error
	end  int64
}

// ackLoop waits for each submitted chunk in order and acks the end it reached. On the first
// failure it reports it on failed, closes the connection (which ends the reader) and drains.
func (f *Follower) ackLoop(c net.Conn, pending <-chan pendingAck, failed chan<- error) {
	broken := false
	fail := func(err error) {
		broken = true
		failed <- err
		c.Close()
	}
	buf := make([]byte, 0, 16)
	for p := range pending {
		if broken {
			if p.wait != nil {
				p.wait()
			}
			continue
		}
		if p.wait != nil {
			if err := p.wait(); err != nil {
				if !errors.Is(err, store.ErrReplicaGap) && !errors.Is(err, store.ErrCorrupt) {
					err = &fatalError{fmt.Errorf("replication: store bytes ending at %d: %w", p.end, err)}
				}
				fail(err)
				continue
			}
		}
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.Write((&Ack{End: p.end}).appendTo(buf[:0])); err != nil {
			fail(fmt.Errorf("ack to master: %w", err))
		}
	}
}

// checkEpoch fences: a master frame of an older epoch than seen ends Run.
func (f *Follower) checkEpoch(epoch int64, addr string) error {
	seen := f.seen.Load()
	if epoch < seen {
		return &fatalError{fmt.Errorf("%w: %s is at epoch %d, seen %d", ErrStaleEpoch, addr, epoch, seen)}
	}
	if epoch > seen {
		f.seen.Store(epoch)
	}
	return nil
}

func lastEpoch(h []store.EpochStart) int64 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Epoch
}
