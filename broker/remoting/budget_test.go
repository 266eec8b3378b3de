package remoting

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"
)

// eventually polls cond until it holds, failing the test after testWait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", testWait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func heapAlloc() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestStalledLargeFramesCostLittle is the attack measured before the fix: 300 connections
// each declare a 16 MiB frame, send a few bytes of it and stall. The server used to allocate
// the declared 16 MiB per connection (4.8 GB); it must now hold little more than its
// per-connection buffers.
func TestStalledLargeFramesCostLittle(t *testing.T) {
	// The 300 "closing connection" lines at cleanup would drown the test's output.
	srv, addr := startServer(t, Config{Logger: slog.New(slog.DiscardHandler)}, echo)
	const conns, declared = 300, 16 << 20
	before := heapAlloc()
	for range conns {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		msg := binary.BigEndian.AppendUint32(nil, declared)
		msg = append(msg, byte(SerializeJSON), 0, 0, 2, '{', '}') // a few bytes of the body
		if _, err := nc.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the server to start reading every declared frame", func() bool {
		return srv.Stats().FramesReceiving == conns
	})
	grew := heapAlloc() - before
	t.Logf("heap grew by %d KiB for %d stalled 16 MiB frames", grew>>10, conns)
	if grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB for %d stalled frames; want under 64 MiB", grew>>20, conns)
	}
	if st := srv.Stats(); st.InFlightFrameBytes != 0 {
		t.Fatalf("stalled frames that sent no first chunk hold %d bytes of budget", st.InFlightFrameBytes)
	}
	// Everyone else is still served.
	c := dial(t, addr, ClientConfig{})
	if resp, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, []byte("hi"))); err != nil || resp.Code != RespSuccess {
		t.Fatalf("request beside the stalled connections: %v, %v", resp, err)
	}
}

// TestFrameBudgetMakesReadersWait fills the budget with one request whose handler is held, and
// checks that the next request waits (no answer, one wait counted) until the handler returns,
// then is served.
func TestFrameBudgetMakesReadersWait(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		if req.Code == CodeSendMessage {
			<-release
		}
		return NewResponse(req, RespSuccess, "")
	})
	const limit = 1 << 20
	srv, addr := startServer(t, Config{MaxFrameBytes: limit, MaxInFlightFrameBytes: limit}, h)
	big := dial(t, addr, ClientConfig{})
	bigDone := make(chan error, 1)
	go func() {
		_, err := big.Invoke(testCtx(t), NewRequest(CodeSendMessage, nil, make([]byte, limit-200)))
		bigDone <- err
	}()
	eventually(t, "the large request to hold budget", func() bool { return srv.Stats().InFlightFrameBytes > limit-300 })

	small := dial(t, addr, ClientConfig{})
	smallDone := make(chan error, 1)
	go func() {
		_, err := small.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, make([]byte, 1024)))
		smallDone <- err
	}()
	eventually(t, "the second request to wait for budget", func() bool { return srv.Stats().FrameBudgetWaits == 1 })
	select {
	case err := <-smallDone:
		t.Fatalf("request answered while the budget was full: %v", err)
	default:
	}
	close(release)
	for _, ch := range []chan error{bigDone, smallDone} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the budget to be free again", func() bool { return srv.Stats().InFlightFrameBytes == 0 })
}

// TestCloseEndsBudgetWait checks that a connection waiting for budget does not hold up Close.
func TestCloseEndsBudgetWait(t *testing.T) {
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		if req.Code == CodeSendMessage {
			close(started)
			<-ctx.Done()
		}
		return NewResponse(req, RespSuccess, "")
	})
	const limit = 1 << 20
	srv, err := NewServer(Config{MaxFrameBytes: limit, MaxInFlightFrameBytes: limit}, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	big := dial(t, ln.Addr().String(), ClientConfig{})
	go func() {
		_, _ = big.Invoke(context.Background(), NewRequest(CodeSendMessage, nil, make([]byte, limit-200)))
	}()
	<-started
	waiting := dial(t, ln.Addr().String(), ClientConfig{})
	go func() { _, _ = waiting.Invoke(context.Background(), NewRequest(CodeHeartBeat, nil, nil)) }()
	eventually(t, "the second request to wait for budget", func() bool { return srv.Stats().FrameBudgetWaits == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want DeadlineExceeded (the held handler is cut short)", err)
	}
	<-waiting.Done()
	if st := srv.Stats(); st.InFlightFrameBytes != 0 {
		t.Fatalf("budget still held after Close: %d bytes", st.InFlightFrameBytes)
	}
}

func TestFrameBudgetGrantsInOrderAndOnCancel(t *testing.T) {
	b := newFrameBudget(10, nil)
	if !b.tryAcquire(8) {
		t.Fatal("tryAcquire(8) of 10 failed")
	}
	c := &Conn{id: 1, nc: &net.TCPConn{}}
	first, second := make(chan error, 1), make(chan error, 1)
	ctx1, cancel1 := context.WithCancel(context.Background())
	go func() { first <- b.acquire(ctx1, 5, c) }()
	eventually(t, "the first waiter to queue", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 })
	go func() { second <- b.acquire(context.Background(), 2, c) }()
	eventually(t, "the second waiter to queue", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 2 })
	if b.tryAcquire(1) {
		t.Fatal("tryAcquire jumped the queue")
	}
	// The head (5) does not fit in the 2 free bytes, and the 2-byte waiter behind it waits too.
	select {
	case err := <-second:
		t.Fatalf("second waiter overtook the first: %v", err)
	default:
	}
	// Giving up at the head lets the next one in.
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if got := b.inUse(); got != 10 {
		t.Fatalf("in use %d, want 10", got)
	}
	b.release(8)
	b.release(2)
	if got := b.inUse(); got != 0 {
		t.Fatalf("in use %d after releasing everything", got)
	}
}

func TestMaxInFlightFrameBytesValidated(t *testing.T) {
	if err := (Config{MaxFrameBytes: 2 << 20, MaxInFlightFrameBytes: 1 << 20}).Validate(); err == nil {
		t.Fatal("a budget below MaxFrameBytes was accepted")
	}
	if err := (Config{MaxInFlightFrameBytes: 8 << 20}).Validate(); err == nil {
		t.Fatal("a budget below the default 16 MiB frame was accepted")
	}
	if got := (Config{}).withDefaults().MaxInFlightFrameBytes; got != DefaultMaxInFlightFrameBytes {
		t.Fatalf("default budget %d", got)
	}
}
