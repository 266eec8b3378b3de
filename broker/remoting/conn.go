package remoting

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrConnClosed is returned by Invoke and InvokeOneway on a closed connection,
// and by Invoke when the connection closes while it waits for the response.
var ErrConnClosed = errors.New("remoting connection closed")

// Handler serves requests arriving on a connection. ServeRemoting is called in
// its own goroutine per request, concurrently with other requests of the same
// connection. It returns the response, or nil to send none. The server fixes
// the response's opaque, flag and serialize type to match req, and drops it
// when req is oneway. ctx is cancelled when the connection closes or the
// server's Close gives up waiting; a long-held request (a long-polling pull)
// must return when it is. A panic is recovered and answered with
// SYSTEM_ERROR. The connection takes the response: once it is queued, its
// ExtFields map serves another command (ReleaseExtFields), so a handler must not
// touch a response it has returned or replied with.
type Handler interface {
	ServeRemoting(ctx context.Context, conn *Conn, req *Command) *Command
}

// AsyncHandler is a Handler that answers some requests without a goroutine of their own: a
// pipelined sender's requests then cost no goroutine hand-off or parked goroutine each.
type AsyncHandler interface {
	Handler
	// ServeAsync is called on the connection's read goroutine, in arrival order, for every
	// request. It returns false to leave req to ServeRemoting. It returns true when it has
	// taken req: it then calls reply exactly once, from any goroutine, with the response or
	// nil for none (the server fixes the response as it does ServeRemoting's). reply queues
	// the response and returns without waiting for the socket. ServeAsync holds up the
	// connection's later requests while it runs, so it must not wait for long.
	ServeAsync(ctx context.Context, conn *Conn, req *Command, reply func(*Command)) bool
}

// InlineHandler is a Handler that answers some requests on the connection's read goroutine
// itself, answer written there too: for a request that can be answered at once from memory
// (a pull of records in the page cache), the hand-off to a worker goroutine and back is
// most of its cost.
type InlineHandler interface {
	Handler
	// ServeInline is called on the read goroutine, in arrival order, for every request,
	// before ServeAsync. It returns the response (nil for none) and true when it answered
	// req, or false to leave req to ServeAsync or ServeRemoting. The connection reads
	// nothing while it runs, nor while the answer waits for room in a full write queue,
	// so it must not wait.
	ServeInline(ctx context.Context, conn *Conn, req *Command) (*Command, bool)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, conn *Conn, req *Command) *Command

// ServeRemoting calls f.
func (f HandlerFunc) ServeRemoting(ctx context.Context, conn *Conn, req *Command) *Command {
	return f(ctx, conn, req)
}

// connConfig holds the settings a Conn needs, shared by Server and Client.
type connConfig struct {
	maxFrameBytes int
	idleTimeout   time.Duration // 0: none
	writeTimeout  time.Duration
	maxInFlight   int
	budget        *frameBudget  // nil: none (the client side)
	chunks        bodyChunks    // zero: defaultChunks
	handler       Handler       // nil: answer REQUEST_CODE_NOT_SUPPORTED
	async         AsyncHandler  // handler, if it is one
	inline        InlineHandler // handler, if it is one
	logger        *slog.Logger
	onConnect     func(*Conn)
	// credentials sign every request this side sends (the client side; zero: none).
	credentials Credentials
	// endHint, when set, is added to the reason the peer ended the connection: what
	// the dialling side knows that makes a bare reset or EOF actionable.
	endHint string
}

var connIDs atomic.Uint64

// Conn is one remoting connection, on the server or the client side. Requests
// from the peer go to the handler; Invoke and InvokeOneway send requests to
// the peer on the same socket, matched to their responses by opaque.
type Conn struct {
	nc   net.Conn
	id   uint64
	cfg  *connConfig
	peer netip.AddrPort // nc's remote TCP address, IPv4-mapped addresses unmapped

	ctx    context.Context // cancelled when the connection closes
	cancel context.CancelFunc
	// readCtx is cancelled by drain and Close: it ends a wait for frame budget.
	readCtx    context.Context
	readCancel context.CancelFunc

	// Frames waiting to be written. The first writer to find no flush under way becomes the
	// flusher and writes everything queued, so concurrent responses share one syscall.
	// writeBuf holds the encoded bytes; writeRefs the large body parts written in place.
	writeMu       sync.Mutex
	writeCond     *sync.Cond // signalled when a flush drains the queue
	writeBuf      []byte
	writeSpare    []byte
	writeRefs     []writeRef
	writeRefSpare []writeRef
	writeRefBytes int      // bytes in writeRefs
	writeDone     []func() // the Written hooks of the queued frames
	writeDoneNext []func()
	flushing      bool
	writeErr      error
	// flushKick wakes the connection's flusher goroutine (started with the first
	// asynchronous answer), which writes what asynchronous answers queued.
	flushKick    chan struct{}
	flusherStart sync.Once

	nextOpaque atomic.Int32
	pendingMu  sync.Mutex
	pending    map[int32]chan *Command // nil once closed
	// async holds the InvokeAsync calls waiting for responses (invokeasync.go); made, with
	// the goroutine that times them out, by the first.
	async map[int32]asyncCall

	inFlight chan struct{} // semaphore of running handlers
	handlers sync.WaitGroup
	work     chan inbound   // hands a request to an idle worker (workers.go)
	workers  sync.WaitGroup // worker goroutines, idle or not

	closeOnce sync.Once
	closed    chan struct{}
	// endReason is why the read loop ended (a TLS alert, a malformed frame), set before
	// closed is closed when the read loop is what closed the connection.
	endReason atomic.Pointer[error]
	draining  atomic.Bool
	done      chan struct{} // closed when the read loop and every handler are finished

	cbMu      sync.Mutex
	callbacks []func()
	cbRan     bool
}

func newConn(nc net.Conn, cfg *connConfig) *Conn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Conn{
		nc:        nc,
		id:        connIDs.Add(1),
		cfg:       cfg,
		ctx:       ctx,
		cancel:    cancel,
		pending:   make(map[int32]chan *Command),
		inFlight:  make(chan struct{}, cfg.maxInFlight),
		work:      make(chan inbound),
		flushKick: make(chan struct{}, 1),
		closed:    make(chan struct{}),
		done:      make(chan struct{}),
	}
	c.readCtx, c.readCancel = context.WithCancel(ctx)
	c.writeCond = sync.NewCond(&c.writeMu)
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		c.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return c
}

// ID is a process-wide unique, stable identifier of the connection.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// RemoteAddrPort is the peer's TCP address with IPv4-mapped addresses unmapped, or the zero
// AddrPort when the connection is not TCP.
func (c *Conn) RemoteAddrPort() netip.AddrPort { return c.peer }

// LocalAddr is our end's address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// String names the connection for logs.
func (c *Conn) String() string {
	return fmt.Sprintf("conn#%d %s", c.id, c.nc.RemoteAddr())
}

// Closed is closed once the connection is closed.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// OnClose registers f to run once the connection has closed, in the
// connection's own goroutine. If it is already closed, f runs at once in the
// caller. Register state first, then OnClose, so a close racing the
// registration still cleans it up.
func (c *Conn) OnClose(f func()) {
	c.cbMu.Lock()
	if c.cbRan {
		c.cbMu.Unlock()
		f()
		return
	}
	c.callbacks = append(c.callbacks, f)
	c.cbMu.Unlock()
}

func (c *Conn) runCallbacks() {
	c.cbMu.Lock()
	cbs := c.callbacks
	c.callbacks, c.cbRan = nil, true
	c.cbMu.Unlock()
	for _, f := range cbs {
		f()
	}
}

// Close closes the socket at once, cancels running handlers and fails pending
// Invokes. It does not wait for them; it is idempotent.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		c.writeMu.Lock()
		c.writeCond.Broadcast() // writers waiting for room, or for a flush, give up
		c.writeMu.Unlock()
		err = c.nc.Close()
		c.cancel()
		c.pendingMu.Lock()
		c.pending = nil // waiters select on c.closed
		c.pendingMu.Unlock()
	})
	return err
}

// drain stops reading new requests; the read loop then waits for running
// handlers to answer before it closes the connection.
func (c *Conn) drain() {
	c.draining.Store(true)
	c.readCancel()
	_ = c.nc.SetReadDeadline(time.Now())
}

// Invoke sends req to the peer and waits for its response, until ctx ends or
// the connection closes. It sets req.Opaque to a fresh value of this
// connection, clears req's response and oneway flags, and signs req when the
// connection has credentials (ClientConfig.Credentials).
func (c *Conn) Invoke(ctx context.Context, req *Command) (*Command, error) {
	c.stamp(req, 0)
	ch := replyChans.Get().(chan *Command)
	c.pendingMu.Lock()
	if c.pending == nil {
		c.pendingMu.Unlock()
		replyChans.Put(ch)
		return nil, fmt.Errorf("invoke code %d on %s: %w", req.Code, c, c.withEndReason(ErrConnClosed))
	}
	c.pending[req.Opaque] = ch
	c.pendingMu.Unlock()
	defer func() {
		c.pendingMu.Lock()
		if c.pending != nil {
			delete(c.pending, req.Opaque)
		}
		c.pendingMu.Unlock()
		select { // a response that came as the call gave up
		case <-ch:
		default:
		}
		replyChans.Put(ch)
	}()
	if err := c.write(ctx, req); err != nil {
		return nil, fmt.Errorf("invoke code %d on %s: %w", req.Code, c, c.withEndReason(err))
	}
	select {
	case resp := <-ch:
		return resp, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("invoke code %d on %s: waiting for response opaque %d: %w", req.Code, c, req.Opaque, ctx.Err())
	case <-c.closed:
		// A response read just before the peer closed is still good; the
		// reader delivers it before it closes the connection.
		select {
		case resp := <-ch:
			return resp, nil
		default:
		}
		return nil, fmt.Errorf("invoke code %d on %s: %w", req.Code, c, c.withEndReason(ErrConnClosed))
	}
}

// withEndReason adds why the read loop ended the connection (a TLS alert such as
// "certificate required") to err, when it did; else the end hint, when there is one: the
// connection may have closed on a failed write before its reader saw the reason, or
// without the reason ever arriving (an alert lost to a reset).
func (c *Conn) withEndReason(err error) error {
	if r := c.endReason.Load(); r != nil {
		return fmt.Errorf("%w: %w", err, *r)
	}
	if c.cfg.endHint != "" {
		return fmt.Errorf("%w (%s)", err, c.cfg.endHint)
	}
	return err
}

// InvokeOneway sends req to the peer with FlagOneway set and waits for
// nothing but the write. It sets req.Opaque to a fresh value.
func (c *Conn) InvokeOneway(ctx context.Context, req *Command) error {
	c.stamp(req, FlagOneway)
	if err := c.write(ctx, req); err != nil {
		return fmt.Errorf("invoke oneway code %d on %s: %w", req.Code, c, err)
	}
	return nil
}

// stamp readies req to send: a fresh opaque of this connection, the request flags (oneway
// is FlagOneway or 0), and the connection's signature.
func (c *Conn) stamp(req *Command, oneway int32) {
	req.Opaque = c.nextOpaque.Add(1)
	req.Flag = req.Flag&^(FlagResponse|FlagOneway) | oneway
	c.cfg.credentials.Sign(req)
}

// write encodes and sends one command.
func (c *Conn) write(ctx context.Context, cmd *Command) error {
	return c.enqueue(ctx, cmd, nil, true)
}

// maxQueuedWriteBytes bounds the frames queued behind a flush; writers beyond it wait, so a
// slow peer pushes back on the handlers answering it.
const maxQueuedWriteBytes = 4 << 20

// minWriteRefBytes is the smallest body part written in place rather than copied into the
// write queue: below it a copy is cheaper than an iovec.
const minWriteRefBytes = 4 << 10

// writeRef is a body part queued by reference, to be written after writeBuf[:at].
type writeRef struct {
	at int
	b  []byte
}

// queueFrame appends cmd's frame to the write queue: the header and the body into buf, except
// body parts of minWriteRefBytes or more, which go to refs to be written in place. On error
// buf and refs are returned unchanged.
func queueFrame(buf []byte, refs []writeRef, cmd *Command) ([]byte, []writeRef, error) {
	if cmd.Body != nil || len(cmd.BodyParts) == 0 {
		buf, err := AppendFrame(buf, cmd)
		return buf, refs, err
	}
	buf, err := appendFrameHead(buf, cmd, cmd.BodyLen())
	if err != nil {
		return buf, refs, err
	}
	for _, p := range cmd.BodyParts {
		if len(p) < minWriteRefBytes {
			buf = append(buf, p...)
			continue
		}
		refs = append(refs, writeRef{at: len(buf), b: p})
	}
	return buf, refs, nil
}

// writeQueued writes buf with refs spliced in, with one writev on a TCP connection.
func (c *Conn) writeQueued(buf []byte, refs []writeRef) error {
	if len(refs) == 0 {
		_, err := c.nc.Write(buf)
		return err
	}
	vec := make(net.Buffers, 0, 2*len(refs)+1)
	prev := 0
	for _, r := range refs {
		if r.at > prev {
			vec = append(vec, buf[prev:r.at])
			prev = r.at
		}
		vec = append(vec, r.b)
	}
	if prev < len(buf) {
		vec = append(vec, buf[prev:])
	}
	_, err := vec.WriteTo(c.nc)
	return err
}

// enqueue appends cmd's frame to the write queue (queueFrame) and, unless another goroutine
// is already flushing, writes the queue; with yield it first lets other runnable goroutines
// queue theirs. If cmd does not encode, the command onEncodeError (when not nil) makes of
// the error is queued instead. Frames are encoded straight into the queue, so a response
// costs no buffer of its own, and are written in the order they were queued. A failed
// write leaves the stream unusable and closes the connection.
func (c *Conn) enqueue(ctx context.Context, cmd *Command, onEncodeError func(error) *Command, yield bool) error {
	select {
	case <-c.closed:
		return ErrConnClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.writeMu.Lock()
	for c.flushing && len(c.writeBuf)+c.writeRefBytes >= maxQueuedWriteBytes && c.writeErr == nil && !c.isClosed() {
		c.writeCond.Wait()
	}
	if err := c.queueLocked(cmd, onEncodeError); err != nil {
		c.writeMu.Unlock()
		return err
	}
	if c.flushing {
		c.writeMu.Unlock()
		return nil
	}
	c.flushing = true
	if yield {
		// Let handlers woken together (one store commit answers many sends) queue their
		// frames before the syscall, so they share it.
		c.writeMu.Unlock()
		runtime.Gosched()
		c.writeMu.Lock()
	}
	deadline := time.Now().Add(c.cfg.writeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := c.flushLocked(deadline)
	c.writeMu.Unlock()
	if err != nil {
		_ = c.Close()
	}
	return err
}

// queueLocked appends cmd's frame to the write queue (queueFrame); if cmd does not encode,
// the command onEncodeError (when not nil) makes of the error instead. The caller holds
// writeMu.
func (c *Conn) queueLocked(cmd *Command, onEncodeError func(error) *Command) error {
	if c.writeErr != nil {
		return c.writeErr
	}
	nrefs := len(c.writeRefs)
	queued := cmd
	buf, refs, err := queueFrame(c.writeBuf, c.writeRefs, cmd)
	if err != nil && onEncodeError != nil {
		queued = onEncodeError(err)
		buf, refs, err = queueFrame(c.writeBuf, c.writeRefs, queued)
	}
	c.writeBuf, c.writeRefs = buf, refs
	if err != nil {
		return err
	}
	for _, r := range refs[nrefs:] {
		c.writeRefBytes += len(r.b)
	}
	if queued.Written != nil {
		c.writeDone = append(c.writeDone, queued.Written)
	}
	return nil
}

// flushLocked writes the queue until it is empty, then ends the flush. The caller holds
// writeMu, set flushing, and closes the connection on an error.
func (c *Conn) flushLocked(deadline time.Time) error {
	var err error
	for len(c.writeBuf) > 0 || len(c.writeRefs) > 0 {
		buf, refs, done := c.writeBuf, c.writeRefs, c.writeDone
		c.writeBuf, c.writeRefs, c.writeRefBytes = c.writeSpare[:0], c.writeRefSpare[:0], 0
		c.writeDone, c.writeDoneNext = c.writeDoneNext[:0], nil
		c.writeMu.Unlock()
		_ = c.nc.SetWriteDeadline(deadline)
		err = c.writeQueued(buf, refs)
		if err == nil {
			for _, f := range done {
				f()
			}
		}
		clear(done)
		c.writeMu.Lock()
		c.writeDoneNext = done[:0]
		if cap(buf) <= maxQueuedWriteBytes {
			c.writeSpare = buf[:0]
		}
		clear(refs) // let the parts' buffers go
		c.writeRefSpare = refs[:0]
		c.writeCond.Broadcast()
		if err != nil {
			err = fmt.Errorf("write frame: %w (%w)", err, ErrConnClosed)
			c.writeErr = err
			c.writeBuf, c.writeRefs, c.writeDone = nil, nil, nil
			break
		}
	}
	c.flushing = false
	c.writeCond.Broadcast() // waitFlushed
	return err
}

// queueAsync queues cmd's frame as enqueue does, without waiting: for answers given on
// goroutines that must not block (AsyncHandler's reply). Unless a flush is under way, the
// connection's flusher goroutine writes the queue. The queue is not bounded here; the
// connection's in-flight limit bounds the answers that can be outstanding.
func (c *Conn) queueAsync(cmd *Command, onEncodeError func(error) *Command) error {
	return c.queueForFlusher(cmd, onEncodeError, false)
}

// queueForFlusher queues cmd for the flusher goroutine; when bounded it first waits while
// the queue holds maxQueuedWriteBytes, as enqueue does.
func (c *Conn) queueForFlusher(cmd *Command, onEncodeError func(error) *Command, bounded bool) error {
	select {
	case <-c.closed:
		return ErrConnClosed
	default:
	}
	c.writeMu.Lock()
	for bounded && c.flushing && len(c.writeBuf)+c.writeRefBytes >= maxQueuedWriteBytes && c.writeErr == nil && !c.isClosed() {
		c.writeCond.Wait()
	}
	err := c.queueLocked(cmd, onEncodeError)
	kick := err == nil && !c.flushing
	if kick {
		c.flushing = true
	}
	c.writeMu.Unlock()
	if kick {
		c.flusherStart.Do(func() {
			c.workers.Add(1)
			go c.flusher()
		})
		select {
		case c.flushKick <- struct{}{}:
		default: // already kicked
		}
	}
	return err
}

// flusher writes the write queue each time queueAsync kicks it, until the connection closes.
func (c *Conn) flusher() {
	defer c.workers.Done()
	for {
		select {
		case <-c.flushKick:
			c.writeMu.Lock()
			err := c.flushLocked(time.Now().Add(c.cfg.writeTimeout))
			c.writeMu.Unlock()
			if err != nil {
				_ = c.Close()
				return
			}
		case <-c.closed:
			return
		}
	}
}

// serve reads frames until the connection ends, then cleans up. It returns
// when every handler it started has finished.
func (c *Conn) serve() {
	defer close(c.done)
	reason := c.readLoop()
	if reason != nil {
		c.endReason.Store(&reason)
	}
	if c.draining.Load() {
		idle := make(chan struct{})
		go func() { c.handlers.Wait(); c.waitFlushed(); close(idle) }()
		select {
		case <-idle:
		case <-c.closed: // forced by Close
		}
	}
	_ = c.Close()
	if reason != nil && c.cfg.logger != nil {
		c.cfg.logger.Info("remoting: closing connection", "conn", c.id, "remote", c.nc.RemoteAddr().String(), "reason", reason.Error())
	}
	c.runCallbacks()
	c.handlers.Wait()
	c.workers.Wait()
}

// waitFlushed waits until every frame queued is written, a write fails or the connection
// closes: a handler is done once its answer is queued, and the flusher may still hold it.
func (c *Conn) waitFlushed() {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	for c.flushing && c.writeErr == nil && !c.isClosed() {
		c.writeCond.Wait()
	}
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// readLoop returns nil on an orderly end (peer closed, we closed, draining)
// and the reason otherwise.
func (c *Conn) readLoop() error {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		if c.cfg.idleTimeout > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.idleTimeout))
		}
		if c.draining.Load() {
			return nil
		}
		cmd, charged, err := c.readFrame(r)
		if err != nil {
			select {
			case <-c.closed:
				return nil
			default:
			}
			switch {
			case c.draining.Load():
				return nil
			case c.cfg.endHint != "":
				return fmt.Errorf("%w (%s)", err, c.cfg.endHint)
			case errors.Is(err, io.EOF):
				return nil
			case errors.Is(err, os.ErrDeadlineExceeded):
				return fmt.Errorf("idle for %s", c.cfg.idleTimeout)
			}
			return err
		}
		if cmd.IsResponse() {
			c.deliver(cmd)
			c.release(charged)
			continue
		}
		select {
		case c.inFlight <- struct{}{}:
		default:
			c.release(charged)
			if !cmd.IsOneway() {
				busy := NewResponse(cmd, RespSystemBusy,
					fmt.Sprintf("too many requests in flight on this connection (limit %d)", cap(c.inFlight)))
				if err := c.write(c.ctx, busy); err != nil {
					return fmt.Errorf("answer SYSTEM_BUSY: %w", err)
				}
			}
			continue
		}
		c.handlers.Add(1)
		if c.cfg.inline != nil && c.serveInline(inbound{cmd, charged}) {
			continue
		}
		if c.cfg.async != nil && c.serveAsync(inbound{cmd, charged}) {
			continue
		}
		c.dispatch(inbound{cmd, charged})
	}
}

// inbound is a request on its way to a handler, with the frame budget it holds.
type inbound struct {
	req     *Command
	charged int64
}

// readFrame reads one frame as ReadFrame does and, on a server, charges it to
// the frame budget: a frame longer than its first chunk (bodyChunks.first)
// once that chunk has arrived, a shorter request once it is decoded. Short
// responses are not charged: they answer our own requests, and a handler
// waiting for one must not be starved by the budget it holds. charged is what
// the caller must release when it is done with the frame.
func (c *Conn) readFrame(r io.Reader) (cmd *Command, charged int64, err error) {
	length, err := readFrameLength(r, c.cfg.maxFrameBytes)
	if err != nil {
		return nil, 0, err
	}
	dialling := c.cfg.budget == nil // a Client's connection; a server's charges a budget
	if cmd, ok, err := decodeHeaderOnly(r, length, true); ok {
		if err != nil {
			return nil, 0, err
		}
		if c.cfg.budget != nil && !cmd.IsResponse() {
			if err := c.acquire(int64(length)); err != nil {
				return nil, 0, err
			}
			charged = int64(length)
		}
		return cmd, charged, nil
	}
	ch := c.cfg.chunks
	if ch.first == 0 {
		ch = defaultChunks
	}
	b := c.cfg.budget
	if dialling {
		// Its frames answer its own requests, and Command.Release hands their buffers back.
		buf, err := readFrameBody(r, length, ch, nil, true)
		if err != nil {
			return nil, 0, err
		}
		cmd, err := decodeFrameBody(buf, true)
		if err != nil {
			putFrameBuf(buf)
			return nil, 0, err
		}
		cmd.frame = buf
		return cmd, 0, nil
	}
	b.receiving.Add(1)
	buf, err := readFrameBody(r, length, ch, func(n int) error {
		if n <= ch.first {
			return nil
		}
		if err := c.acquire(int64(n)); err != nil {
			return err
		}
		charged = int64(n)
		return nil
	}, false)
	b.receiving.Add(-1)
	if err == nil {
		cmd, err = decodeFrameBody(buf, true)
	}
	if err != nil {
		c.release(charged)
		return nil, 0, err
	}
	if charged == 0 && !cmd.IsResponse() {
		if err := c.acquire(int64(length)); err != nil {
			return nil, 0, err
		}
		charged = int64(length)
	}
	return cmd, charged, nil
}

// acquire takes n bytes of the server's frame budget, waiting if it must. A
// wait is the server's doing, not the peer's, so the read deadline restarts.
func (c *Conn) acquire(n int64) error {
	b := c.cfg.budget
	if b.tryAcquire(n) {
		return nil
	}
	if err := b.acquire(c.readCtx, n, c); err != nil {
		return fmt.Errorf("wait for %d bytes of frame budget: %w", n, err)
	}
	if c.cfg.idleTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.idleTimeout))
	}
	return nil
}

func (c *Conn) release(n int64) {
	if n > 0 {
		c.cfg.budget.release(n)
	}
}

// deliver hands a response to the Invoke waiting for its opaque; responses
// nobody waits for (timed out, or never asked) are dropped, as the Go client does.
func (c *Conn) deliver(resp *Command) {
	c.pendingMu.Lock()
	// Sent under the lock, so once Invoke has removed its channel nothing sends on it and
	// the channel can serve another call (replyChans).
	if ch := c.pending[resp.Opaque]; ch != nil {
		select {
		case ch <- resp:
		default: // a duplicate response; the first one won
		}
		c.pendingMu.Unlock()
		return
	}
	call, ok := c.takeAsync(resp.Opaque)
	c.pendingMu.Unlock()
	if ok {
		call.done(resp, nil)
	}
}

// replyChans recycles the channels Invoke waits on, one per call otherwise.
var replyChans = sync.Pool{New: func() any { return make(chan *Command, 1) }}

func (c *Conn) handle(in inbound) {
	c.answer(in, c.callHandler(in.req), viaWorker)
}

// answerVia says how answer sends a response.
type answerVia int

const (
	// viaWorker: enqueue, first letting the handlers woken with this one queue their frames.
	viaWorker answerVia = iota
	// viaReadLoop: enqueue at once; on the read goroutine nothing else is about to answer.
	viaReadLoop
	// viaFlusher: queueAsync, for a caller that must not block.
	viaFlusher
)

// answer sends a handler's response to in, as via says, then releases what in held.
func (c *Conn) answer(in inbound, resp *Command, via answerVia) {
	req := in.req
	defer c.handlers.Done()
	defer func() { <-c.inFlight }()
	defer c.release(in.charged)
	if resp == nil || req.IsOneway() {
		return
	}
	resp.Opaque = req.Opaque
	resp.Flag = resp.Flag&^FlagOneway | FlagResponse
	resp.SerializeType = req.SerializeType
	onEncodeError := func(err error) *Command {
		// Tell the peer rather than leave it waiting for a timeout.
		return NewResponse(req, RespSystemError, err.Error())
	}
	var err error
	if via == viaFlusher {
		err = c.queueAsync(resp, onEncodeError)
	} else {
		err = c.enqueue(c.ctx, resp, onEncodeError, via == viaWorker)
	}
	if err != nil && c.cfg.logger != nil && c.ctx.Err() == nil {
		c.cfg.logger.Warn("remoting: response not sent", "conn", c.id, "code", req.Code, "err", err.Error())
	}
	// The frame is encoded (or refused): the header map serves the next response.
	resp.ReleaseExtFields()
}

// serveInline offers in to the InlineHandler on the read goroutine and, when it answers,
// sends the answer from there. A panic is answered with SYSTEM_ERROR, as callHandler does.
func (c *Conn) serveInline(in inbound) bool {
	resp, ok := c.callInline(in.req)
	if ok {
		c.answer(in, resp, viaReadLoop)
	}
	return ok
}

func (c *Conn) callInline(req *Command) (resp *Command, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			resp, ok = c.handlerPanicked(req, p), true
		}
	}()
	return c.cfg.inline.ServeInline(c.ctx, c, req)
}

// serveAsync offers in to the AsyncHandler on the read goroutine and reports whether it
// took it. A panic is answered with SYSTEM_ERROR, as callHandler does, unless the handler
// had already replied.
func (c *Conn) serveAsync(in inbound) (taken bool) {
	var replied atomic.Bool
	reply := func(resp *Command) {
		if !replied.CompareAndSwap(false, true) {
			panic("remoting: AsyncHandler replied twice")
		}
		c.answer(in, resp, viaFlusher)
	}
	defer func() {
		if p := recover(); p != nil {
			resp := c.handlerPanicked(in.req, p)
			if !replied.Load() {
				reply(resp)
			}
			taken = true
		}
	}()
	return c.cfg.async.ServeAsync(c.ctx, c, in.req, reply)
}

func (c *Conn) callHandler(req *Command) (resp *Command) {
	defer func() {
		if p := recover(); p != nil {
			resp = c.handlerPanicked(req, p)
		}
	}()
	if c.cfg.handler == nil {
		return NewNotSupportedResponse(req)
	}
	return c.cfg.handler.ServeRemoting(c.ctx, c, req)
}

// handlerPanicked logs a handler's panic p while serving req and returns the SYSTEM_ERROR
// that answers it.
func (c *Conn) handlerPanicked(req *Command, p any) *Command {
	if c.cfg.logger != nil {
		c.cfg.logger.Error("remoting: handler panic", "conn", c.id, "code", req.Code, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	}
	return NewResponse(req, RespSystemError, fmt.Sprintf("internal error serving request code %d: %v", req.Code, p))
}
