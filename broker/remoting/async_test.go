package remoting

import (
	"context"
	"strconv"
	"sync"
	"testing"
)

// asyncHandler takes requests of code CodeSendMessage on the read goroutine and answers
// them later, in reverse order, from another goroutine; other codes go to ServeRemoting.
type asyncHandler struct {
	mu      sync.Mutex
	held    []func()
	batch   int           // answer once this many are held
	taken   chan struct{} // a request was taken
	panicOn string        // a request with this "i" panics in ServeAsync
}

func (h *asyncHandler) ServeRemoting(ctx context.Context, conn *Conn, req *Command) *Command {
	return NewResponse(req, RespSuccess, "sync")
}

func (h *asyncHandler) ServeAsync(ctx context.Context, conn *Conn, req *Command, reply func(*Command)) bool {
	if req.Code != CodeSendMessage {
		return false
	}
	if h.panicOn != "" && req.ExtFields["i"] == h.panicOn {
		panic("boom")
	}
	resp := NewResponse(req, RespSuccess, "async")
	resp.ExtFields = ExtFields{"i": req.ExtFields["i"]}
	h.mu.Lock()
	h.held = append(h.held, func() { reply(resp) })
	var run []func()
	if len(h.held) == h.batch {
		run, h.held = h.held, nil
	}
	h.mu.Unlock()
	if run != nil {
		go func() {
			for i := len(run) - 1; i >= 0; i-- {
				run[i]()
			}
		}()
	}
	if h.taken != nil {
		h.taken <- struct{}{}
	}
	return true
}

func TestAsyncHandlerAnswersEachRequestOnce(t *testing.T) {
	const n = 64
	h := &asyncHandler{batch: n}
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := strconv.Itoa(i)
			resp, err := c.Invoke(testCtx(t), NewRequest(CodeSendMessage, ExtFields{"i": v}, nil))
			if err != nil || resp.Remark != "async" || resp.ExtFields["i"] != v {
				t.Errorf("send %d: %v, %v", i, resp, err)
			}
		}()
	}
	// While the sends are held, other requests of the connection go to ServeRemoting.
	resp, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil))
	if err != nil || resp.Remark != "sync" {
		t.Fatalf("heartbeat beside held async sends: %v, %v", resp, err)
	}
	wg.Wait()
}

func TestAsyncHandlerPanicIsAnswered(t *testing.T) {
	h := &asyncHandler{batch: 1, panicOn: "bad"}
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	resp, err := c.Invoke(testCtx(t), NewRequest(CodeSendMessage, ExtFields{"i": "bad"}, nil))
	if err != nil || resp.Code != RespSystemError {
		t.Fatalf("panicking async handler: %v, %v; want SYSTEM_ERROR", resp, err)
	}
	// The connection still serves.
	resp, err = c.Invoke(testCtx(t), NewRequest(CodeSendMessage, ExtFields{"i": "ok"}, nil))
	if err != nil || resp.Remark != "async" {
		t.Fatalf("after a panic: %v, %v", resp, err)
	}
}

// A request taken by ServeAsync holds its place in the connection's in-flight limit until
// it is answered, and server Close waits for the answer.
func TestAsyncRequestsCountInFlight(t *testing.T) {
	h := &asyncHandler{batch: 3, taken: make(chan struct{}, 8)}
	srv, addr := startServer(t, Config{MaxInFlightPerConn: 2}, h)
	c := dial(t, addr, ClientConfig{})
	answered := make(chan *Command, 2)
	for i := 0; i < 2; i++ {
		go func() {
			resp, err := c.Invoke(testCtx(t), NewRequest(CodeSendMessage, ExtFields{"i": strconv.Itoa(i)}, nil))
			if err != nil {
				t.Error(err)
			}
			answered <- resp
		}()
	}
	<-h.taken
	<-h.taken
	// Both slots are held: a third request is refused as busy, not taken.
	resp, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil))
	if err != nil || resp.Code != RespSystemBusy {
		t.Fatalf("third request with two held: %v, %v; want SYSTEM_BUSY", resp, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(testCtx(t)) }()
	select {
	case err := <-closed:
		t.Fatalf("server closed (%v) with two requests unanswered", err)
	case resp := <-answered:
		t.Fatalf("held request answered early: %v", resp)
	default:
	}
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, f := range held {
		f()
	}
	for i := 0; i < 2; i++ {
		if resp := <-answered; resp == nil || resp.Remark != "async" {
			t.Fatalf("held request answered with %v", resp)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
}
