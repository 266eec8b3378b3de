package remoting

import (
	"context"
	"fmt"
	"time"
)

// asyncCall is an InvokeAsync waiting for its response.
type asyncCall struct {
	done     func(*Command, error)
	deadline time.Time
}

// asyncSweepEvery is how often a connection with asynchronous calls fails those past their
// deadline: a call times out between its timeout and that much later.
const asyncSweepEvery = 100 * time.Millisecond

// InvokeAsync sends req as Invoke does, but returns once the frame is queued: done is then
// called exactly once, with the response, or with an error when no response came within
// timeout or the connection closed first. done runs on the connection's read goroutine (or
// the one failing the call) and must not block. It is the RocketMQ clients' asynchronous
// send: a pipelined sender keeps many requests in flight without a goroutine waiting on
// each. It waits while the connection's write queue is full. On an error done is not called.
func (c *Conn) InvokeAsync(req *Command, timeout time.Duration, done func(*Command, error)) error {
	c.stamp(req, 0)
	c.pendingMu.Lock()
	if c.pending == nil {
		c.pendingMu.Unlock()
		return fmt.Errorf("invoke code %d on %s: %w", req.Code, c, c.withEndReason(ErrConnClosed))
	}
	if c.async == nil {
		c.async = make(map[int32]asyncCall)
		go c.sweepAsync()
	}
	c.async[req.Opaque] = asyncCall{done: done, deadline: time.Now().Add(timeout)}
	c.pendingMu.Unlock()
	// The flusher writes the frame: a sender queueing many calls shares its syscalls.
	if err := c.queueForFlusher(req, nil, true); err != nil {
		c.pendingMu.Lock()
		_, mine := c.async[req.Opaque]
		delete(c.async, req.Opaque)
		c.pendingMu.Unlock()
		if !mine { // the connection closed meanwhile and has failed the call
			return nil
		}
		return fmt.Errorf("invoke code %d on %s: %w", req.Code, c, c.withEndReason(err))
	}
	return nil
}

// takeAsync removes and returns the asynchronous call waiting for opaque; under pendingMu.
func (c *Conn) takeAsync(opaque int32) (asyncCall, bool) {
	call, ok := c.async[opaque]
	if ok {
		delete(c.async, opaque)
	}
	return call, ok
}

// sweepAsync fails the asynchronous calls past their deadline until the connection closes,
// then every call still waiting.
func (c *Conn) sweepAsync() {
	t := time.NewTicker(asyncSweepEvery)
	defer t.Stop()
	var late []asyncCall
	for {
		select {
		case <-c.closed:
			c.pendingMu.Lock()
			calls := c.async
			c.async = nil
			c.pendingMu.Unlock()
			err := c.withEndReason(ErrConnClosed)
			for _, call := range calls {
				call.done(nil, fmt.Errorf("waiting for a response on %s: %w", c, err))
			}
			return
		case now := <-t.C:
			c.pendingMu.Lock()
			for opaque, call := range c.async {
				if now.After(call.deadline) {
					delete(c.async, opaque)
					late = append(late, call)
				}
			}
			c.pendingMu.Unlock()
			for i, call := range late {
				call.done(nil, fmt.Errorf("no response on %s within the timeout: %w", c, context.DeadlineExceeded))
				late[i] = asyncCall{}
			}
			late = late[:0]
		}
	}
}
