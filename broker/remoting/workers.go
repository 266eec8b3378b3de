package remoting

import "time"

// workerIdle is how long a handler goroutine waits for the connection's next request before
// it exits.
const workerIdle = 5 * time.Second

// dispatch runs req's handler on an idle worker goroutine of the connection, or on a new one
// if none is idle, so concurrency stays unbounded (long polls hold a worker each) and
// requests are still answered out of order. Reusing goroutines matters: a fresh goroutine
// starts with a small stack and a send handler grows it (copying) on every request, which
// cost ~10% of the broker's CPU under a produce load.
func (c *Conn) dispatch(in inbound) {
	select {
	case c.work <- in:
	default:
		c.workers.Add(1)
		go c.worker(in)
	}
}

// worker handles req, then further requests handed over by dispatch, until it has been idle
// for workerIdle or the connection closes.
func (c *Conn) worker(in inbound) {
	defer c.workers.Done()
	c.handle(in)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case in := <-c.work:
			c.handle(in)
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-c.closed:
			return
		}
	}
}
