package remoting

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// frameBudget bounds the bytes of incoming frames one Server holds at once
// (Config.MaxInFlightFrameBytes): requests from the moment their bytes are
// read until their handler returns, and frames longer than their first chunk
// (64 KiB, codec.go) from the moment that chunk has arrived. Grants are first come, first
// served; a connection that waits reads nothing meanwhile, so TCP pushes back
// on its peer.
//
// A frame reserves its whole length at once and never waits again, so frames
// cannot deadlock each other by each holding part of the budget; what a frame
// holds before its reservation (at most its first chunk) is a per-connection
// cost, bounded by MaxConnections, like the connection's read buffer.
type frameBudget struct {
	limit  int64
	logger *slog.Logger

	mu      sync.Mutex
	used    int64
	waiters []*budgetWaiter // FIFO

	receiving atomic.Int64 // frames whose body is being read
	waits     atomic.Int64 // grants that had to wait, ever
	lastWarn  atomic.Int64 // unix nanoseconds of the last "budget exhausted" log
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed when granted
}

// budgetWarnEvery limits the "budget exhausted" log to one line per interval.
const budgetWarnEvery = 10 * time.Second

func newFrameBudget(limit int64, logger *slog.Logger) *frameBudget {
	return &frameBudget{limit: limit, logger: logger}
}

// tryAcquire takes n bytes of budget if they are free and nobody waits.
func (b *frameBudget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) == 0 && b.used+n <= b.limit {
		b.used += n
		return true
	}
	return false
}

// acquire takes n bytes of budget, waiting until they are free or ctx ends.
func (b *frameBudget) acquire(ctx context.Context, n int64, conn *Conn) error {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.limit {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	used := b.used
	b.mu.Unlock()
	b.waits.Add(1)
	b.warn(conn, n, used)
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.ready: // granted while we gave up: hand it back
		b.used -= n
	default:
		for i, o := range b.waiters {
			if o == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
	}
	b.grantLocked() // the next waiter may fit now that this one is gone
	b.mu.Unlock()
	return ctx.Err()
}

// release returns n bytes taken by acquire.
func (b *frameBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

func (b *frameBudget) grantLocked() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.n > b.limit {
			return
		}
		b.used += w.n
		close(w.ready)
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
	}
}

func (b *frameBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// warn logs, at most once per budgetWarnEvery, that connections wait for budget.
func (b *frameBudget) warn(conn *Conn, n, used int64) {
	if b.logger == nil {
		return
	}
	now := time.Now().UnixNano()
	last := b.lastWarn.Load()
	if now-last < int64(budgetWarnEvery) || !b.lastWarn.CompareAndSwap(last, now) {
		return
	}
	b.logger.Warn("remoting: in-flight frame budget exhausted; connections wait before reading more",
		"conn", conn.id, "remote", conn.nc.RemoteAddr().String(), "frame_bytes", n, "in_use_bytes", used,
		"limit_bytes", b.limit, "hint", "raise MaxInFlightFrameBytes if the host has the memory, or add brokers")
}
