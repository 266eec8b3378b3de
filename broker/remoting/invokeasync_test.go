package remoting

import (
	"context"
	"errors"
	"strconv"
	"testing"
)

type asyncAnswer struct {
	resp *Command
	err  error
}

// invokeAsync starts an InvokeAsync and returns where its answer arrives.
func invokeAsync(t *testing.T, c *Client, req *Command) <-chan asyncAnswer {
	t.Helper()
	got := make(chan asyncAnswer, 2) // 2: a second call of done would be seen
	if err := c.InvokeAsync(req, testWait, func(resp *Command, err error) { got <- asyncAnswer{resp, err} }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestInvokeAsyncAnswersEachCallOnce(t *testing.T) {
	_, addr := startServer(t, Config{}, echo)
	c := dial(t, addr, ClientConfig{})
	const n = 200
	answers := make([]<-chan asyncAnswer, n)
	for i := range answers {
		req := NewRequest(CodeHeartBeat, nil, nil)
		req.ExtOrdered = []string{"i", strconv.Itoa(i), "topic", "T"}
		req.ExtFields = nil
		answers[i] = invokeAsync(t, c, req)
	}
	for i, ch := range answers {
		a := <-ch
		if a.err != nil || a.resp.ExtFields["i"] != strconv.Itoa(i) || a.resp.ExtFields["topic"] != "T" {
			t.Fatalf("call %d answered %+v, %v", i, a.resp, a.err)
		}
		select {
		case b := <-ch:
			t.Fatalf("call %d answered twice: %+v", i, b)
		default:
		}
	}
}

func TestInvokeAsyncTimesOutWithoutAnAnswer(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		holdUntilReleased(ctx, t) // never answers
		return nil
	})
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	got := make(chan error, 1)
	if err := c.InvokeAsync(NewRequest(CodePullMessage, nil, nil), asyncSweepEvery, func(_ *Command, err error) { got <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered call ended with %v, want a deadline error", err)
	}
}

func TestInvokeAsyncFailsWhenTheConnectionCloses(t *testing.T) {
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		close(started)
		holdUntilReleased(ctx, t)
		return nil
	})
	_, addr := startServer(t, Config{}, h)
	c := dial(t, addr, ClientConfig{})
	got := invokeAsync(t, c, NewRequest(CodePullMessage, nil, nil))
	<-started
	_ = c.Close()
	if a := <-got; !errors.Is(a.err, ErrConnClosed) {
		t.Fatalf("call on a closed connection ended with %+v, %v; want ErrConnClosed", a.resp, a.err)
	}
	if err := c.InvokeAsync(NewRequest(CodeHeartBeat, nil, nil), testWait, func(*Command, error) {
		t.Error("done called for a call refused at once")
	}); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("InvokeAsync on a closed connection: %v, want ErrConnClosed", err)
	}
}

// holdUntilReleased holds a handler until its connection closes or the test ends. The test's
// end must release it: a server closing while its client does drains the connection, and
// waits for the handler rather than cancelling it.
func holdUntilReleased(ctx context.Context, t *testing.T) {
	select {
	case <-ctx.Done():
	case <-t.Context().Done():
	}
}
