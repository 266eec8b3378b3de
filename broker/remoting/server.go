package remoting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("remoting server closed")

// Config holds the limits of a Server. Zero values take the defaults.
type Config struct {
	// MaxConnections bounds open connections; a connection accepted beyond it
	// is closed at once. Default 10000.
	MaxConnections int
	// IdleTimeout closes a connection that sends nothing for this long.
	// Default 120 s, as the Java broker and the Go client's read deadline.
	IdleTimeout time.Duration
	// MaxFrameBytes bounds one incoming frame; a larger one closes the
	// connection. Default 16 MiB.
	MaxFrameBytes int
	// MaxInFlightPerConn bounds the requests of one connection being
	// handled at once; beyond it requests are answered SYSTEM_BUSY.
	// Default 4096 (a consumer holds one long-polling pull per queue).
	MaxInFlightPerConn int
	// WriteTimeout bounds one frame write to a slow peer. Default 30 s.
	WriteTimeout time.Duration
	// MaxInFlightFrameBytes bounds the bytes of incoming frames the server
	// holds at once across all its connections: requests from the moment
	// they are read until their handler returns, and frames over 64 KiB
	// while they arrive. A connection whose next frame does not fit waits,
	// reading nothing, until handlers finish (frames are not refused: the
	// peer is slowed, not failed). Default 256 MiB; it must be at least
	// MaxFrameBytes. Besides it, each connection costs a fixed ~128 KiB of
	// read buffers.
	MaxInFlightFrameBytes int64
	// OnConnect, if set, is called for each accepted connection before its
	// first request is read (for metrics, or to register OnClose).
	OnConnect func(*Conn)
	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger
}

// Default limits.
const (
	DefaultMaxConnections     = 10000
	DefaultIdleTimeout        = 120 * time.Second
	DefaultMaxInFlightPerConn = 4096
	DefaultWriteTimeout       = 30 * time.Second
	// DefaultMaxInFlightFrameBytes is 16 frames of the default maximum size.
	DefaultMaxInFlightFrameBytes = 256 << 20
)

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxInFlightPerConn == 0 {
		c.MaxInFlightPerConn = DefaultMaxInFlightPerConn
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxInFlightFrameBytes == 0 {
		c.MaxInFlightFrameBytes = max(DefaultMaxInFlightFrameBytes, int64(c.MaxFrameBytes))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports a limit that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxConnections < 0:
		return fmt.Errorf("remoting config: MaxConnections %d must be positive", c.MaxConnections)
	case c.IdleTimeout < 0:
		return fmt.Errorf("remoting config: IdleTimeout %s must be positive", c.IdleTimeout)
	case c.MaxFrameBytes < 0 || c.MaxFrameBytes > 1<<30:
		return fmt.Errorf("remoting config: MaxFrameBytes %d must be in (0, 1 GiB]", c.MaxFrameBytes)
	case c.MaxInFlightPerConn < 0:
		return fmt.Errorf("remoting config: MaxInFlightPerConn %d must be positive", c.MaxInFlightPerConn)
	case c.WriteTimeout < 0:
		return fmt.Errorf("remoting config: WriteTimeout %s must be positive", c.WriteTimeout)
	case c.MaxInFlightFrameBytes < 0:
		return fmt.Errorf("remoting config: MaxInFlightFrameBytes %d must be positive", c.MaxInFlightFrameBytes)
	}
	maxFrame := c.MaxFrameBytes
	if maxFrame == 0 {
		maxFrame = DefaultMaxFrameBytes
	}
	if c.MaxInFlightFrameBytes != 0 && c.MaxInFlightFrameBytes < int64(maxFrame) {
		return fmt.Errorf("remoting config: MaxInFlightFrameBytes %d is below MaxFrameBytes %d: a frame of the maximum size could never be read; raise it", c.MaxInFlightFrameBytes, maxFrame)
	}
	return nil
}

// Server accepts remoting connections and hands each request to a Handler.
type Server struct {
	cfg   Config
	ccfg  connConfig
	wg    sync.WaitGroup // Serve loops and connections
	mu    sync.Mutex
	lns   map[net.Listener]struct{}
	conns map[*Conn]struct{}
	// closing is set by Close; no Serve or connection starts after it.
	closing   bool
	closeOnce sync.Once
	closeErr  error
	closeDone chan struct{}
}

// NewServer returns a server that dispatches requests to h.
func NewServer(cfg Config, h Handler) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("remoting: NewServer needs a handler")
	}
	cfg = cfg.withDefaults()
	async, _ := h.(AsyncHandler)
	inline, _ := h.(InlineHandler)
	return &Server{
		cfg: cfg,
		ccfg: connConfig{
			maxFrameBytes: cfg.MaxFrameBytes,
			idleTimeout:   cfg.IdleTimeout,
			writeTimeout:  cfg.WriteTimeout,
			maxInFlight:   cfg.MaxInFlightPerConn,
			budget:        newFrameBudget(cfg.MaxInFlightFrameBytes, cfg.Logger),
			handler:       h,
			async:         async,
			inline:        inline,
			logger:        cfg.Logger,
			onConnect:     cfg.OnConnect,
		},
		lns:       make(map[net.Listener]struct{}),
		conns:     make(map[*Conn]struct{}),
		closeDone: make(chan struct{}),
	}, nil
}

// Serve accepts connections on ln until Close, then returns ErrServerClosed.
// It closes ln on return. It may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
		_ = ln.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("remoting: accept on %s: %w", ln.Addr(), err)
			}
			// Out of file descriptors and the like: back off and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.cfg.Logger.Warn("remoting: accept failed", "addr", ln.Addr().String(), "err", err.Error(), "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.closeDone:
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		s.startConn(nc)
	}
}

func (s *Server) startConn(nc net.Conn) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	if len(s.conns) >= s.cfg.MaxConnections {
		s.mu.Unlock()
		s.cfg.Logger.Warn("remoting: refusing connection", "remote", nc.RemoteAddr().String(), "reason", fmt.Sprintf("connection limit %d reached", s.cfg.MaxConnections))
		_ = nc.Close()
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c := newConn(nc, &s.ccfg)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	if s.ccfg.onConnect != nil {
		s.ccfg.onConnect(c)
	}
	go func() {
		defer s.wg.Done()
		c.serve()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
}

// ServerStats is a moment's view of a Server's connections and frame budget.
type ServerStats struct {
	// Conns is the number of open connections.
	Conns int
	// FramesReceiving counts frames whose length prefix has been read and
	// whose body has not fully arrived.
	FramesReceiving int64
	// InFlightFrameBytes is the part of MaxInFlightFrameBytes in use.
	InFlightFrameBytes int64
	// FrameBudgetWaits counts the frames that had to wait for budget, ever.
	FrameBudgetWaits int64
}

// Stats reports the server's connections and frame budget.
func (s *Server) Stats() ServerStats {
	b := s.ccfg.budget
	return ServerStats{Conns: s.NumConns(), FramesReceiving: b.receiving.Load(), InFlightFrameBytes: b.inUse(), FrameBudgetWaits: b.waits.Load()}
}

// NumConns is the number of open connections.
func (s *Server) NumConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops accepting, stops reading new requests, and waits until the
// requests in flight are answered or ctx ends; then it closes every
// connection, cancels the handlers still running and waits for them to
// return. It returns ctx's error if it had to cut handlers short. Close is
// idempotent; later calls wait for the first and return its result.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		defer close(s.closeDone)
		s.mu.Lock()
		s.closing = true
		for ln := range s.lns {
			_ = ln.Close()
		}
		conns := make([]*Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.drain()
		}
		finished := make(chan struct{})
		go func() { s.wg.Wait(); close(finished) }()
		select {
		case <-finished:
			return
		case <-ctx.Done():
			s.closeErr = fmt.Errorf("remoting: close: in-flight requests cut short: %w", ctx.Err())
		}
		for _, c := range conns {
			_ = c.Close()
		}
		<-finished
	})
	<-s.closeDone
	return s.closeErr
}
