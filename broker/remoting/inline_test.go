package remoting

import (
	"context"
	"testing"
)

// inlineHandler answers pulls with "inline" in their header on the read goroutine, panics
// on "panic", and leaves the rest to ServeRemoting, which holds a heartbeat until release.
type inlineHandler struct {
	held    chan struct{} // a heartbeat is being held
	release chan struct{}
}

func (h *inlineHandler) ServeRemoting(ctx context.Context, conn *Conn, req *Command) *Command {
	if req.Code == CodeHeartBeat {
		h.held <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
		}
	}
	return NewResponse(req, RespSuccess, "worker")
}

func (h *inlineHandler) ServeInline(ctx context.Context, conn *Conn, req *Command) (*Command, bool) {
	if req.Code != CodePullMessage {
		return nil, false
	}
	switch req.ExtFields["how"] {
	case "inline":
		return NewResponse(req, RespSuccess, "inline"), true
	case "panic":
		panic("boom")
	}
	return nil, false
}

func TestInlineHandlerAnswersOnTheReadGoroutineAndPassesTheRestOn(t *testing.T) {
	h := &inlineHandler{held: make(chan struct{}, 1), release: make(chan struct{})}
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	heartbeat := make(chan *Command, 1)
	go func() {
		resp, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, nil, nil))
		if err != nil {
			t.Error(err)
		}
		heartbeat <- resp
	}()
	<-h.held
	// With a worker held, an inline answer still comes, and a request ServeInline declines
	// reaches ServeRemoting.
	for how, want := range map[string]string{"inline": "inline", "worker": "worker"} {
		resp, err := c.Invoke(testCtx(t), NewRequest(CodePullMessage, ExtFields{"how": how}, nil))
		if err != nil || resp.Remark != want {
			t.Fatalf("pull %q: %v, %v; want remark %q", how, resp, err, want)
		}
	}
	resp, err := c.Invoke(testCtx(t), NewRequest(CodePullMessage, ExtFields{"how": "panic"}, nil))
	if err != nil || resp.Code != RespSystemError {
		t.Fatalf("panicking inline handler: %v, %v; want SYSTEM_ERROR", resp, err)
	}
	close(h.release)
	if resp := <-heartbeat; resp == nil || resp.Remark != "worker" {
		t.Fatalf("held heartbeat answered with %v", resp)
	}
	// The connection still serves after the panic.
	if resp, err := c.Invoke(testCtx(t), NewRequest(CodePullMessage, ExtFields{"how": "inline"}, nil)); err != nil || resp.Remark != "inline" {
		t.Fatalf("after a panic: %v, %v", resp, err)
	}
}
