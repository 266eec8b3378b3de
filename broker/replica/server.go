package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/stratamq/strata/broker/store"
)

// Defaults of ServerConfig and FollowerConfig.
const (
	DefaultMaxChunk          = 1 << 20
	DefaultHeartbeatInterval = time.Second
	helloTimeout             = 10 * time.Second
	writeTimeout             = 30 * time.Second // a follower that reads nothing for this long is dropped
	segmentHeaderBytes       = 16               // a segment's first record follows its header (store FORMAT.md)
)

// ServerConfig configures a master's replication server.
type ServerConfig struct {
	Store *store.Store
	// Epoch is this master's epoch (the election revision); the store's epoch history should
	// already end with it (store.BeginEpoch before serving).
	Epoch int64
	// MaxChunk bounds the log bytes of one Data frame (default DefaultMaxChunk); a record
	// larger than that goes alone.
	MaxChunk int
	// MaxFrame bounds a frame read from a follower (default DefaultMaxFrame).
	MaxFrame int
	// HeartbeatInterval is how often an idle connection carries a heartbeat (default
	// DefaultHeartbeatInterval); three intervals of silence close it.
	HeartbeatInterval time.Duration
	Logger            *slog.Logger
}

// Server is the master side: it serves followers' connections and tracks what each acked.
// All methods are safe for concurrent use.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	mu        sync.Mutex
	followers map[string]*followerState
	changed   chan struct{} // closed and replaced when an ack or the in-sync set moves
	inSync    []string      // SetInSync
	committed int64         // the highest committed position computed (Committed)
	lns       map[net.Listener]struct{}
	closed    bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type followerState struct {
	conn      net.Conn // nil when disconnected
	connSeq   uint64
	acked     int64
	firstSeen time.Time
	// caughtUpAt is when it last acked everything the master held at its previous ack
	// (Kafka's last-caught-up time: under steady load a follower is never at the very end,
	// but it keeps reaching where the end was a round trip ago); target is that end.
	caughtUpAt time.Time
	target     int64
	addr       string
}

// FollowerStatus is what the master knows of one follower, for the in-sync-set logic.
type FollowerStatus struct {
	Member    string
	Addr      string // remote address of the current or last connection
	Connected bool
	// Acked is the follower's durable log end as it last acked it (its end at the handshake,
	// after truncation, until the first ack).
	Acked int64
	// LagBytes is the master's log end minus Acked.
	LagBytes int64
	// LagTime is how long ago the follower last acked everything the master held at its
	// previous ack (0 when it holds the whole log now); since it first connected if it never
	// did.
	LagTime time.Duration
}

// ErrServerClosed is returned by Serve after Close, and by WaitReplicated on a closed server.
var ErrServerClosed = errors.New("replication server closed")

// NewServer returns a server for cfg; call Serve with a listener.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxChunk <= 0 {
		cfg.MaxChunk = DefaultMaxChunk
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "replication-master", "epoch", cfg.Epoch),
		followers: map[string]*followerState{}, changed: make(chan struct{}), lns: map[net.Listener]struct{}{},
		ctx: ctx, cancel: cancel}
}

// Serve accepts follower connections on ln until Close (returning ErrServerClosed) or an
// accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("replication server: accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

// Close stops accepting, closes every connection and waits for their goroutines.
func (s *Server) Close() error {
	s.cancel() // first: Serve tells a closed listener from a failed one by it
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for _, f := range s.followers {
		if f.conn != nil {
			f.conn.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// WaitReplicated returns once at least n followers have acked a durable end at or above pos
// (for a send: the end of its records, store.NextRecordPos of the last one). n <= 0 returns
// at once. It returns ctx's error if ctx ends first, and ErrServerClosed once the server is
// closed.
func (s *Server) WaitReplicated(ctx context.Context, pos int64, n int) error {
	return s.WaitReplicatedAmong(ctx, pos, n, nil)
}

// WaitReplicatedAmong is WaitReplicated counting only the members for which in returns true
// (the in-sync set); a nil in counts every member. in is called under the server's lock, so
// it must be quick and must not call the server.
func (s *Server) WaitReplicatedAmong(ctx context.Context, pos int64, n int, in func(member string) bool) error {
	if n <= 0 {
		return nil
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrServerClosed
		}
		have := 0
		for m, f := range s.followers {
			if f.acked >= pos && (in == nil || in(m)) {
				have++
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d followers to hold commit-log position %d (%d do): %w", n, pos, have, ctx.Err())
		}
	}
}

// Followers reports every follower that connected since the server started, by member name.
func (s *Server) Followers() []FollowerStatus {
	end := s.cfg.Store.EndOffset()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FollowerStatus, 0, len(s.followers))
	for m, f := range s.followers {
		st := FollowerStatus{Member: m, Addr: f.addr, Connected: f.conn != nil, Acked: f.acked, LagBytes: max(end-f.acked, 0)}
		if f.acked < end {
			since := f.caughtUpAt
			if since.IsZero() {
				since = f.firstSeen
			}
			st.LagTime = now.Sub(since)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	return out
}

// Forget drops what the server knows of member (a member removed from the group, or one
// whose data directory was wiped), closing its connection if it has one: its acks no longer
// count for WaitReplicated.
func (s *Server) Forget(member string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.followers[member]; f != nil {
		if f.conn != nil {
			f.conn.Close()
		}
		f.connSeq++ // a running connection's acks are ignored from now on
		delete(s.followers, member)
	}
}

// SetInSync names the followers whose acks confirm a record (Committed): the broker passes
// the in-sync set and its candidates, without the master itself, whenever they change — the
// members a sync-mode send waits for. With none (the default), every record the master holds
// is committed.
func (s *Server) SetInSync(members []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inSync = slices.Clone(members)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Committed is the master's high watermark: the commit-log position up to which every member
// named by SetInSync has acked, i.e. what a sync-mode send waiting for them would have been
// answered for (the master's log end when none is named). It never moves back within the
// server's term, so a member that joins the set behind it does not hide records followers
// already serve: such a candidate is waited for, and joins the in-sync set only once it holds
// what was committed when it became one. Followers receive it in Watermark frames and serve
// queue reads only up to it; the master itself serves its whole log.
func (s *Server) Committed() int64 {
	end := s.cfg.Store.EndOffset()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.committedLocked(end)
}

func (s *Server) committedLocked(end int64) int64 {
	c := end
	for _, m := range s.inSync {
		f := s.followers[m]
		if f == nil {
			return s.committed // not connected in this term yet: nothing more is confirmed
		}
		c = min(c, f.acked)
	}
	s.committed = max(s.committed, c)
	return s.committed
}

// changes is the channel closed at the next ack or SetInSync.
func (s *Server) changes() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// ack records a follower's durable end. It wakes WaitReplicated callers.
func (s *Server) ack(member string, seq uint64, end int64) {
	masterEnd := s.cfg.Store.EndOffset()
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.followers[member]
	if f == nil || f.connSeq != seq {
		return // a newer connection of the member took over
	}
	if end >= f.target || end >= masterEnd {
		f.caughtUpAt = time.Now()
	}
	f.target = masterEnd
	if end > f.acked {
		f.acked = end
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	log := s.log.With("remote", c.RemoteAddr().String())
	fr := &frameReader{r: c, max: s.cfg.MaxFrame}
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	msg, err := fr.next()
	if err != nil {
		log.Warn("replication: no hello from follower", "err", err)
		return
	}
	hello, ok := msg.(*Hello)
	if !ok {
		log.Warn("replication: follower did not start with hello", "frame", fmt.Sprintf("%T", msg))
		return
	}
	log = log.With("member", hello.Member)
	refuse := func(reason string) {
		c.SetWriteDeadline(time.Now().Add(helloTimeout))
		c.Write((&Refusal{Epoch: s.cfg.Epoch, Reason: reason}).appendTo(nil))
		log.Warn("replication: refused follower", "reason", reason)
	}
	if hello.Epoch > s.cfg.Epoch {
		refuse(fmt.Sprintf("the follower has seen master epoch %d, newer than this master's %d: this master is deposed", hello.Epoch, s.cfg.Epoch))
		return
	}
	st := s.cfg.Store
	end := st.EndOffset()
	d := DivergencePoint(st.EpochHistory(), end, hello.History, hello.Oldest+segmentHeaderBytes, hello.End)
	oldest := st.MinCommitLogOffset()
	if d < oldest {
		// The bytes from d are no longer local: the follower restarts its log at oldest.
		c.SetWriteDeadline(time.Now().Add(helloTimeout))
		c.Write((&Welcome{Epoch: s.cfg.Epoch, TruncateTo: d, MasterEnd: end, Oldest: oldest}).appendTo(nil))
		log.Warn("replication: follower is behind this master's oldest local segment; it restarts its log there",
			"followerEnd", hello.End, "from", d, "oldest", oldest)
		return
	}
	// Register; a newer connection of the same member replaces an older one.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	f := s.followers[hello.Member]
	if f == nil {
		f = &followerState{firstSeen: time.Now()}
		s.followers[hello.Member] = f
	} else if f.conn != nil {
		f.conn.Close()
	}
	f.conn, f.addr = c, c.RemoteAddr().String()
	f.connSeq++
	seq := f.connSeq
	f.acked, f.target = d, end
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if f.connSeq == seq {
			f.conn = nil
		}
		s.mu.Unlock()
	}()
	c.SetWriteDeadline(time.Now().Add(helloTimeout))
	if _, err := c.Write((&Welcome{Epoch: s.cfg.Epoch, TruncateTo: d, MasterEnd: end, Oldest: oldest}).appendTo(nil)); err != nil {
		log.Warn("replication: write welcome", "err", err)
		return
	}
	log.Info("replication: follower connected", "followerEnd", hello.End, "from", d, "masterEnd", end)

	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// A follower acks after each write, which an fsync may hold up: give it longer than the
	// three heartbeats a follower waits for the master.
	silence := 10 * s.cfg.HeartbeatInterval
	go func() { // acks
		defer cancel()
		for {
			c.SetReadDeadline(time.Now().Add(silence))
			msg, err := fr.next()
			if err != nil {
				if ctx.Err() == nil {
					log.Info("replication: follower connection ended", "err", err)
				}
				return
			}
			a, ok := msg.(*Ack)
			if !ok {
				log.Warn("replication: unexpected frame from follower", "frame", fmt.Sprintf("%T", msg))
				return
			}
			s.ack(hello.Member, seq, a.End)
		}
	}()
	if err := s.stream(ctx, c, d); err != nil && ctx.Err() == nil {
		log.Warn("replication: streaming to follower stopped", "err", err)
	}
}

// stream sends the log from pos as it grows, the committed position as it moves, and
// heartbeats while neither does.
func (s *Server) stream(ctx context.Context, c net.Conn, pos int64) error {
	st := s.cfg.Store
	head := make([]byte, 0, frameHeadBytes+dataHeadBytes)
	var sentCommitted int64
	lastSent := time.Now() // of any frame: the follower's silence timeout counts from it
	for {
		if w := s.Committed(); w > sentCommitted {
			c.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := c.Write((&Watermark{Epoch: s.cfg.Epoch, Pos: w}).appendTo(head[:0])); err != nil {
				return err
			}
			sentCommitted, lastSent = w, time.Now()
		}
		hist := st.EpochHistory()
		limit := s.cfg.MaxChunk
		for _, e := range hist { // never cross a change of epoch
			if e.StartOffset > pos {
				limit = int(min(int64(limit), e.StartOffset-pos))
				break
			}
		}
		b, err := st.ReadLog(pos, limit)
		if err != nil {
			if errors.Is(err, store.ErrClosed) {
				return nil
			}
			return err
		}
		if len(b) == 0 {
			// Wait for an append, or for an ack or SetInSync that may move the watermark.
			changed := s.changes()
			wctx, wcancel := context.WithTimeout(ctx, s.cfg.HeartbeatInterval)
			go func() {
				select {
				case <-changed:
					wcancel()
				case <-wctx.Done():
				}
			}()
			_, err := st.WaitLogEnd(wctx, pos)
			wcancel()
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, store.ErrClosed) {
				return nil
			}
			// Idle for an interval: heartbeat. Counted from the last frame, not from this
			// wait, which changes elsewhere in the group (acks, a member reconnecting) may
			// cut short again and again.
			if err != nil && time.Since(lastSent) >= s.cfg.HeartbeatInterval {
				c.SetWriteDeadline(time.Now().Add(writeTimeout))
				if _, err := c.Write((&Heartbeat{Epoch: s.cfg.Epoch, MasterEnd: st.EndOffset()}).appendTo(head[:0])); err != nil {
					return err
				}
				lastSent = time.Now()
			}
			continue
		}
		d := Data{Epoch: s.cfg.Epoch, DataEpoch: store.EpochAt(hist, pos), Pos: pos, Bytes: b}
		bufs := net.Buffers{d.appendHead(head[:0]), b}
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := bufs.WriteTo(c); err != nil {
			return err
		}
		pos, lastSent = pos+int64(len(b)), time.Now()
	}
}
