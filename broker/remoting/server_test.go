package remoting

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Generous: the test machine is small and shared.
const testWait = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return ctx
}

// startServer runs a server on a free loopback port; Cleanup closes it and
// checks Serve returned ErrServerClosed.
func startServer(t *testing.T, cfg Config, h Handler) (*Server, string) {
	t.Helper()
	srv, err := NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("server close: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv, ln.Addr().String()
}

func dial(t *testing.T, addr string, cfg ClientConfig) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// echo answers SUCCESS with the request's extFields and body.
var echo = HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
	resp := NewResponse(req, RespSuccess, "")
	resp.ExtFields = req.ExtFields
	resp.Body = req.Body
	return resp
})

func TestServerRoundTrip(t *testing.T) {
	_, addr := startServer(t, Config{}, echo)
	c := dial(t, addr, ClientConfig{})
	for _, st := range []SerializeType{SerializeJSON, SerializeRocketMQ} {
		req := NewRequest(CodeQueryConsumerOffset, ExtFields{"topic": "T", "queueId": "3"}, []byte("b"))
		req.SerializeType = st
		resp, err := c.Invoke(testCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Code != RespSuccess || !resp.IsResponse() || resp.Opaque != req.Opaque ||
			resp.SerializeType != st || resp.ExtFields["queueId"] != "3" || string(resp.Body) != "b" {
			t.Fatalf("%s: response %v (serialize %s) to %v", st, resp, resp.SerializeType, req)
		}
	}
}

func TestOutOfOrderResponsesOnOneConnection(t *testing.T) {
	release := make(chan struct{})
	slowStarted := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		if req.Code == CodePullMessage { // a held long-poll
			close(slowStarted)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return NewResponse(req, RespSuccess, strconv.Itoa(int(req.Code)))
	})
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})

	slowDone := make(chan *Command, 1)
	go func() {
		resp, err := c.Invoke(testCtx(t), NewRequest(CodePullMessage, nil, nil))
		if err != nil {
			t.Error(err)
		}
		slowDone <- resp
	}()
	<-slowStarted
	// Fast requests on the same connection are answered while the pull is held.
	for i := 0; i < 5; i++ {
		resp, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil))
		if err != nil || resp.Remark != "34" {
			t.Fatalf("fast request behind a held pull: %v, %v", resp, err)
		}
	}
	select {
	case <-slowDone:
		t.Fatal("held pull answered before release")
	default:
	}
	close(release)
	if resp := <-slowDone; resp == nil || resp.Remark != "11" {
		t.Fatalf("slow response %v", resp)
	}
}

func TestConcurrentInvokes(t *testing.T) {
	_, addr := startServer(t, Config{}, echo)
	c := dial(t, addr, ClientConfig{})
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := strconv.Itoa(i)
			resp, err := c.Invoke(testCtx(t), NewRequest(CodeGetMaxOffset, ExtFields{"i": v}, nil))
			if err != nil || resp.ExtFields["i"] != v {
				t.Errorf("invoke %d: %v, %v", i, resp, err)
			}
		}()
	}
	wg.Wait()
}

func TestOnewayGetsNoResponse(t *testing.T) {
	got := make(chan *Command, 2)
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		got <- req
		return NewResponse(req, RespSuccess, "")
	})
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	if err := c.InvokeOneway(testCtx(t), NewRequest(CodeUpdateConsumerOffset, ExtFields{"commitOffset": "5"}, nil)); err != nil {
		t.Fatal(err)
	}
	if req := <-got; !req.IsOneway() || req.ExtFields["commitOffset"] != "5" {
		t.Fatalf("oneway request arrived as %v", req)
	}

	// On a raw socket: a oneway request, then a sync one; the first frame
	// back must be the sync request's response.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	oneway := NewRequest(CodeUpdateConsumerOffset, nil, nil)
	oneway.Opaque, oneway.Flag = 1, FlagOneway
	sync := NewRequest(CodeHeartBeat, nil, nil)
	sync.Opaque = 2
	for _, req := range []*Command{oneway, sync} {
		if err := WriteFrame(raw, req); err != nil {
			t.Fatal(err)
		}
		<-got
	}
	_ = raw.SetReadDeadline(time.Now().Add(testWait))
	resp, err := ReadFrame(raw, 0)
	if err != nil || resp.Opaque != 2 || !resp.IsResponse() {
		t.Fatalf("first frame back: %v, %v; want the response to opaque 2", resp, err)
	}
}

func TestServerInvokesClient(t *testing.T) {
	serverConn := make(chan *Conn, 1)
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		if req.Code == CodeHeartBeat {
			serverConn <- conn
		}
		return NewResponse(req, RespSuccess, "")
	})
	_, addr := startServer(t, Config{}, h)

	notified := make(chan *Command, 1)
	c := dial(t, addr, ClientConfig{Handler: HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		switch req.Code {
		case CodeNotifyConsumerIdsChanged:
			notified <- req
			return nil // the Go client answers nothing
		case CodeGetConsumerRunningInfo:
			resp := NewResponse(req, RespSuccess, "")
			resp.Body = []byte(`{"properties":{}}`)
			return resp
		}
		return NewNotSupportedResponse(req)
	})})
	if _, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil)); err != nil {
		t.Fatal(err)
	}
	sc := <-serverConn
	if sc.RemoteAddr().String() != c.LocalAddr().String() || sc.ID() == c.ID() {
		t.Fatalf("server conn %s (id %d) vs client %s (id %d)", sc.RemoteAddr(), sc.ID(), c.LocalAddr(), c.ID())
	}

	resp, err := sc.Invoke(testCtx(t), NewRequest(CodeGetConsumerRunningInfo, ExtFields{"consumerGroup": "g"}, nil))
	if err != nil || resp.Code != RespSuccess || string(resp.Body) != `{"properties":{}}` {
		t.Fatalf("broker→client invoke: %v, %v", resp, err)
	}
	if err := sc.InvokeOneway(testCtx(t), NewRequest(CodeNotifyConsumerIdsChanged, ExtFields{"consumerGroup": "g"}, nil)); err != nil {
		t.Fatal(err)
	}
	if req := <-notified; req.ExtFields["consumerGroup"] != "g" || !req.IsOneway() {
		t.Fatalf("notify arrived as %v", req)
	}
	resp, err = sc.Invoke(testCtx(t), NewRequest(9999, nil, nil))
	if err != nil || resp.Code != RespRequestCodeNotSupported {
		t.Fatalf("unknown code to client: %v, %v", resp, err)
	}

	// A request the client never answers times out on the caller's context.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := sc.Invoke(ctx, NewRequest(CodeNotifyConsumerIdsChanged, nil, nil)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered invoke: %v, want DeadlineExceeded", err)
	}
	<-notified

	// OnClose fires when the client goes away, and pending invokes fail.
	closed := make(chan struct{})
	sc.OnClose(func() { close(closed) })
	pending := make(chan error, 1)
	go func() {
		_, err := sc.Invoke(context.Background(), NewRequest(CodeNotifyConsumerIdsChanged, nil, nil))
		pending <- err
	}()
	<-notified
	_ = c.Close()
	<-closed
	if err := <-pending; !errors.Is(err, ErrConnClosed) {
		t.Fatalf("pending invoke after close: %v, want ErrConnClosed", err)
	}
	ran := false
	sc.OnClose(func() { ran = true })
	if !ran {
		t.Fatal("OnClose after close must run at once")
	}
}

func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	_, addr := startServer(t, Config{MaxFrameBytes: 1024}, echo)
	good := dial(t, addr, ClientConfig{})
	bad := dial(t, addr, ClientConfig{})

	big := NewRequest(CodeSendMessage, nil, make([]byte, 2048))
	_, err := bad.Invoke(testCtx(t), big)
	if !errors.Is(err, ErrConnClosed) {
		t.Fatalf("oversized frame: %v, want the connection closed", err)
	}
	<-bad.Done()

	// Garbage on a raw socket is closed too.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write(rawFrame(SerializeJSON, []byte(`{"code":`), nil))
	_ = raw.SetReadDeadline(time.Now().Add(testWait))
	if n, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes after a malformed frame, want close", n)
	}

	resp, err := good.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, []byte("ok")))
	if err != nil || string(resp.Body) != "ok" {
		t.Fatalf("other connection after a bad one: %v, %v", resp, err)
	}
}

func TestIdleTimeoutCloses(t *testing.T) {
	srv, addr := startServer(t, Config{IdleTimeout: 200 * time.Millisecond}, echo)
	c := dial(t, addr, ClientConfig{})
	if _, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(testWait):
		t.Fatal("idle connection not closed")
	}
	deadline := time.Now().Add(testWait)
	for srv.NumConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("server still counts %d connections", srv.NumConns())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMaxConnections(t *testing.T) {
	srv, addr := startServer(t, Config{MaxConnections: 2}, echo)
	c1 := dial(t, addr, ClientConfig{})
	c2 := dial(t, addr, ClientConfig{})
	for _, c := range []*Client{c1, c2} {
		if _, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil)); err != nil {
			t.Fatal(err)
		}
	}
	c3 := dial(t, addr, ClientConfig{})
	select {
	case <-c3.Done():
	case <-time.After(testWait):
		t.Fatal("third connection beyond the limit of 2 was not closed")
	}
	if n := srv.NumConns(); n != 2 {
		t.Fatalf("NumConns = %d, want 2", n)
	}
	// Freeing a slot admits a new connection.
	_ = c1.Close()
	deadline := time.Now().Add(testWait)
	for srv.NumConns() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("closed connection still counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c4 := dial(t, addr, ClientConfig{})
	if _, err := c4.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil)); err != nil {
		t.Fatalf("connection after a slot freed: %v", err)
	}
}

func TestHandlerPanicAnswersSystemError(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		if req.Code == CodeSendMessage {
			panic("boom")
		}
		if req.Code == 9999 {
			return NewNotSupportedResponse(req)
		}
		return NewResponse(req, RespSuccess, "")
	})
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	resp, err := c.Invoke(testCtx(t), NewRequest(CodeSendMessage, nil, nil))
	if err != nil || resp.Code != RespSystemError || resp.Remark != "internal error serving request code 10: boom" {
		t.Fatalf("panic response: %v, %v", resp, err)
	}
	resp, err = c.Invoke(testCtx(t), NewRequest(9999, nil, nil))
	if err != nil || resp.Code != RespRequestCodeNotSupported || resp.Remark != "request code 9999 not supported" {
		t.Fatalf("unknown code: %v, %v", resp, err)
	}
	resp, err = c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil))
	if err != nil || resp.Code != RespSuccess {
		t.Fatalf("connection after panic: %v, %v", resp, err)
	}
}

func TestMaxInFlightAnswersSystemBusy(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		if req.Code == CodePullMessage {
			started <- struct{}{}
			<-release
		}
		return NewResponse(req, RespSuccess, "")
	})
	_, addr := startServer(t, Config{MaxInFlightPerConn: 1}, h)
	c := dial(t, addr, ClientConfig{})
	held := make(chan error, 1)
	go func() {
		_, err := c.Invoke(testCtx(t), NewRequest(CodePullMessage, nil, nil))
		held <- err
	}()
	<-started
	resp, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil))
	if err != nil || resp.Code != RespSystemBusy {
		t.Fatalf("request beyond the in-flight limit: %v, %v", resp, err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

func TestCloseDrainsInFlight(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		close(started)
		<-release
		return NewResponse(req, RespSuccess, "drained")
	})
	srv, err := NewServer(Config{}, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c := dial(t, ln.Addr().String(), ClientConfig{})
	answered := make(chan *Command, 1)
	go func() {
		resp, err := c.Invoke(testCtx(t), NewRequest(CodeSendMessage, nil, nil))
		if err != nil {
			t.Error(err)
		}
		answered <- resp
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(testCtx(t)) }()
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	// Accepting has stopped while the request is still in flight.
	if nc, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		nc.Close()
		t.Fatal("listener still accepting during Close")
	}
	close(release)
	if resp := <-answered; resp == nil || resp.Remark != "drained" {
		t.Fatalf("in-flight request during Close: %v", resp)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	<-c.Done()
	if err := srv.Close(testCtx(t)); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCloseCutsShortAtDeadline(t *testing.T) {
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		close(started)
		<-ctx.Done() // a long-poll that only the connection's end releases
		return nil
	})
	srv, err := NewServer(Config{}, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	c := dial(t, ln.Addr().String(), ClientConfig{})
	go func() { _, _ = c.Invoke(context.Background(), NewRequest(CodePullMessage, nil, nil)) }()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close past its deadline: %v, want DeadlineExceeded", err)
	}
	<-c.Done()
}

// A response whose body is in parts arrives as one body, the parts back to back, whether a
// part is copied into the write queue (small) or written in place (large), and frames of
// concurrent responses on one connection stay whole.
func TestBodyPartsArriveAsOneBody(t *testing.T) {
	big := make([]byte, 3*minWriteRefBytes+5)
	for i := range big {
		big[i] = byte(i * 7)
	}
	parts := func(i int) [][]byte {
		small := []byte(strconv.Itoa(i) + "|")
		switch i % 4 {
		case 0:
			return [][]byte{small}
		case 1:
			return [][]byte{big, small}
		case 2:
			return [][]byte{small, big[:minWriteRefBytes], big[minWriteRefBytes:], small}
		default:
			return [][]byte{big, big, {}, small}
		}
	}
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		i, _ := strconv.Atoi(req.ExtFields["i"])
		resp := NewResponse(req, RespSuccess, "")
		resp.BodyParts = parts(i)
		return resp
	})
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, st := range []SerializeType{SerializeJSON, SerializeRocketMQ} {
				req := NewRequest(CodePullMessage, ExtFields{"i": strconv.Itoa(i)}, nil)
				req.SerializeType = st
				resp, err := c.Invoke(testCtx(t), req)
				if err != nil {
					t.Errorf("invoke %d: %v", i, err)
					return
				}
				var want []byte
				for _, p := range parts(i) {
					want = append(want, p...)
				}
				if !bytes.Equal(resp.Body, want) || len(resp.BodyParts) != 0 {
					t.Errorf("response %d (%s): body of %d bytes, want %d", i, st, len(resp.Body), len(want))
				}
			}
		}()
	}
	wg.Wait()
}

// TestLateAnswerReachesNoLaterCall: a call gives up before its answer comes; the answer,
// written afterwards, must not reach the calls that follow on the same connection, which
// wait on recycled channels.
func TestLateAnswerReachesNoLaterCall(t *testing.T) {
	started, release, written := make(chan struct{}), make(chan struct{}), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		if req.Code != CodePullMessage {
			return NewResponse(req, RespSuccess, "fresh")
		}
		close(started)
		<-release
		resp := NewResponse(req, RespSuccess, "late")
		resp.Written = func() { close(written) }
		return resp
	})
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() { <-started; cancel() }()
	if _, err := c.Invoke(ctx, NewRequest(CodePullMessage, nil, nil)); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned call: %v, want context.Canceled", err)
	}
	close(release)
	<-written // every answer read from here on was written after the late one
	for range 50 {
		req := NewRequest(CodeHeartBeat, nil, nil)
		resp, err := c.Invoke(testCtx(t), req)
		if err != nil || resp.Remark != "fresh" || resp.Opaque != req.Opaque {
			t.Fatalf("a call after the abandoned one got %+v, %v", resp, err)
		}
	}
}
