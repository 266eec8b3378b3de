package meta

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WriteLease tells a master whether it may still accept writes. It is valid for
// Duration = TTL - Margin (Margin = TTL/4, at least 500ms, so 7.5s of the default 10s TTL)
// after the moment the last successful renewal of the term's etcd lease was *sent*, and never
// after the term is seen to end.
//
// Why that is safe: a renewal (KeepAliveOnce) sent at t0 and answered resets the lease on the
// etcd server at some t ≥ t0, so the lease, and with it the term's key, cannot expire before
// t0 + TTL by the server's clock. No other member can win before the key is gone, so a master
// that stops accepting writes at t0 + TTL - Margin by its own monotonic clock stops before any
// successor can start, as long as the two clocks run at rates within Margin/TTL (25%) of each
// other and a write admitted just before the deadline is acknowledged within the rest of the
// margin: the broker checks Valid both before appending and again before acknowledging.
// While etcd answers, renewals every TTL/8 keep the deadline ahead; when it stops answering
// (partition, etcd down) writes stop within Duration, before the election can move.
type WriteLease struct {
	c        *Client
	lead     Leadership
	duration time.Duration
	period   time.Duration

	base  time.Time    // monotonic origin of until
	until atomic.Int64 // nanoseconds after base; writes are allowed before it

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// WriteLeaseMargin is how much earlier than the election TTL a write lease ends.
func WriteLeaseMargin(ttl time.Duration) time.Duration { return max(ttl/4, 500*time.Millisecond) }

// NewWriteLease renews lead's lease once (it fails if etcd does not answer, or the term is
// over) and keeps renewing it until Close or the end of the term.
func (c *Client) NewWriteLease(ctx context.Context, lead Leadership) (*WriteLease, error) {
	if lead.Lease == clientv3.NoLease || lead.TTL <= 0 {
		return nil, fmt.Errorf("write lease of %s: the leadership of epoch %d has no lease", lead.Group, lead.Epoch)
	}
	d := lead.TTL - WriteLeaseMargin(lead.TTL)
	if d <= 0 {
		return nil, fmt.Errorf("write lease of %s: election TTL %s leaves no time after the %s margin; use at least 2s",
			lead.Group, lead.TTL, WriteLeaseMargin(lead.TTL))
	}
	w := &WriteLease{c: c, lead: lead, duration: d, period: max(lead.TTL/8, 50*time.Millisecond), base: time.Now(), done: make(chan struct{})}
	w.until.Store(-1)
	if err := w.renew(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(rctx)
	return w, nil
}

// errLeaseGone says the term's lease no longer exists on the server.
var errLeaseGone = errors.New("the term's lease is gone")

func (w *WriteLease) renew(ctx context.Context) error {
	sent := time.Since(w.base)
	// A renewal must answer well within the lease, or it extends nothing useful.
	rctx, cancel := context.WithTimeout(ctx, min(w.c.reqTimeout, w.duration/2))
	defer cancel()
	resp, err := w.c.cli.KeepAliveOnce(rctx, w.lead.Lease)
	if err != nil {
		return fmt.Errorf("write lease of %s (epoch %d): renew: %w", w.lead.Group, w.lead.Epoch, err)
	}
	if resp.TTL <= 0 {
		return fmt.Errorf("write lease of %s (epoch %d): %w", w.lead.Group, w.lead.Epoch, errLeaseGone)
	}
	next := int64(sent + w.duration)
	for {
		cur := w.until.Load()
		if next <= cur || w.until.CompareAndSwap(cur, next) {
			return nil
		}
	}
}

func (w *WriteLease) run(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(w.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.lead.Lost:
			w.until.Store(-1)
			return
		case <-t.C:
			if err := w.renew(ctx); errors.Is(err, errLeaseGone) || errors.Is(err, rpctypes.ErrLeaseNotFound) {
				w.until.Store(-1)
				return
			}
		}
	}
}

// Valid reports whether the master may accept (and acknowledge) a write now.
func (w *WriteLease) Valid() bool {
	return w.lead.Held() && int64(time.Since(w.base)) < w.until.Load()
}

// Remaining is how long the lease stays valid without another renewal (≤ 0: expired).
func (w *WriteLease) Remaining() time.Duration {
	if !w.lead.Held() {
		return 0
	}
	return time.Duration(w.until.Load()) - time.Since(w.base)
}

// Duration is how long one renewal keeps the lease valid.
func (w *WriteLease) Duration() time.Duration { return w.duration }

// Close stops renewing; the lease stays valid until it runs out or the term ends.
func (w *WriteLease) Close() {
	w.closeOnce.Do(func() {
		w.cancel()
		<-w.done
	})
}
