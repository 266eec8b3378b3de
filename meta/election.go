package meta

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Election is one broker's candidacy for master of its broker group, on etcd's
// concurrency.Election under election/<group>. The leader's value is its broker name.
type Election struct {
	c         *Client
	group     string
	sess      *concurrency.Session
	el        *concurrency.Election
	closeOnce sync.Once
}

// NewElection opens a session of ttl (DefaultBrokerTTL if 0) for campaigning in group. If the
// broker dies, its leadership ends when the session's lease expires.
func (c *Client) NewElection(ctx context.Context, group string, ttl time.Duration) (*Election, error) {
	if err := validateName("broker group", group); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultBrokerTTL
	}
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	lease, err := c.cli.Grant(rctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return nil, fmt.Errorf("election of %s: grant lease: %w", group, err)
	}
	// The session owns the lease's keep-alive until Close.
	sess, err := concurrency.NewSession(c.cli, concurrency.WithLease(lease.ID))
	if err != nil {
		return nil, fmt.Errorf("election of %s: session: %w", group, err)
	}
	return &Election{c: c, group: group, sess: sess, el: concurrency.NewElection(sess, c.key(dirElection, group))}, nil
}

// Campaign blocks until this broker leads the group (or ctx ends).
func (e *Election) Campaign(ctx context.Context, brokerName string) error {
	if err := e.el.Campaign(ctx, brokerName); err != nil {
		return fmt.Errorf("campaign for master of %s: %w", e.group, err)
	}
	return nil
}

// Leader returns the current master's broker name, or ErrNotFound if nobody leads.
func (e *Election) Leader(ctx context.Context) (string, error) {
	rctx, cancel := e.c.reqCtx(ctx)
	defer cancel()
	resp, err := e.el.Leader(rctx)
	if errors.Is(err, concurrency.ErrElectionNoLeader) {
		return "", fmt.Errorf("master of %s: %w", e.group, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("master of %s: %w", e.group, err)
	}
	return string(resp.Kvs[0].Value), nil
}

// Observe streams the leader's name on every change until ctx ends.
func (e *Election) Observe(ctx context.Context) <-chan string {
	out := make(chan string)
	go func() {
		defer close(out)
		for resp := range e.el.Observe(ctx) {
			select {
			case out <- string(resp.Kvs[0].Value):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Resign gives up leadership (a no-op if not leading).
func (e *Election) Resign(ctx context.Context) error {
	rctx, cancel := e.c.reqCtx(ctx)
	defer cancel()
	if err := e.el.Resign(rctx); err != nil {
		return fmt.Errorf("resign master of %s: %w", e.group, err)
	}
	return nil
}

// Done is closed when the session ends (lease lost): leadership, if held, is gone.
func (e *Election) Done() <-chan struct{} { return e.sess.Done() }

// Lease returns the session's lease, e.g. to guard writes by leadership.
func (e *Election) Lease() clientv3.LeaseID { return e.sess.Lease() }

// Close ends the session, revoking its lease, which also ends any leadership; idempotent.
func (e *Election) Close() error {
	var err error
	e.closeOnce.Do(func() { err = e.sess.Close() })
	return err
}
