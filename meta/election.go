package meta

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrNotLeader is returned by a write fenced with a Leadership whose term has ended: another
// member leads the broker group now (or nobody does), so the write was not made.
var ErrNotLeader = errors.New("meta: not the elected master of the broker group (fenced)")

// Election is one broker's candidacy for master of its broker group, on etcd's
// concurrency.Election under election/<group>. The leader's value is its broker name.
//
// # Terms and epochs
//
// Each won Campaign starts a term, described by a Leadership. Its Epoch is the create
// revision of the election key that won. Epochs of one group strictly increase from term to
// term: a key leads only once every key created before it is gone, and a key created later
// has a higher revision, so no later term can have a lower epoch. The epoch is therefore a
// fencing token: a write to per-group state (the tier pointer, CompareAndSwapTierPointer) is
// one etcd transaction guarded by Leadership.Fence, which holds
// only while the term's key exists with that create revision, i.e. while the term lasts.
// A master that was cut off and replaced fails every such write with ErrNotLeader, even
// before it notices that its session expired.
//
// A term ends (Leadership.Lost closes) when the member resigns, when its session's lease is
// lost (revoked, or not kept alive within its TTL because etcd was unreachable), or when the
// key disappears for another reason. A later Campaign starts a new term with a new epoch,
// on a new session if the old one is gone.
//
// # For replication
//
// Routes report the member whose name is the election's value as brokerId 0 (View.Masters).
// Replication builds on the same terms: a master stamps what it appends with its epoch, and a
// deposed master truncates a tail of an older epoch before following; only members of the
// in-sync set will call Campaign, and the in-sync set key will be compared, next to Fence, in
// the transactions a master makes.
type Election struct {
	c      *Client
	group  string
	prefix string
	ttl    time.Duration

	mu     sync.Mutex
	sess   *concurrency.Session
	el     *concurrency.Election
	fresh  bool  // the next Campaign needs a new session (the last term was lost, not resigned)
	term   *term // the current term, nil when not leading
	closed bool

	closeOnce sync.Once
}

// Leadership is one term of a broker group's elected master: the fencing token of the writes
// that only the master may make. It is a plain value; pass it to the writers (the tier's
// pointer store) so that their updates carry the fence.
type Leadership struct {
	// Group is the broker group.
	Group string
	// Key is the election key that won the term.
	Key string
	// Epoch is Key's create revision: strictly increasing across the group's terms.
	Epoch int64
	// Lost is closed when the term ends (resigned, session lost, key deleted).
	Lost <-chan struct{}
	// Lease is the etcd lease the term's key lives under (the session's); TTL its time to
	// live. A WriteLease renews it.
	Lease clientv3.LeaseID
	TTL   time.Duration
}

// Fence is the transaction comparison that holds only while the term lasts.
func (l Leadership) Fence() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.Key), "=", l.Epoch)
}

// Held reports whether the term has not been seen to end yet. A term can end before its
// holder notices; writes therefore rely on Fence, not on Held.
func (l Leadership) Held() bool {
	if l.Lost == nil {
		return false
	}
	select {
	case <-l.Lost:
		return false
	default:
		return true
	}
}

// term is the Election's own record of a Leadership.
type term struct {
	lead     Leadership
	lost     chan struct{}
	endOnce  sync.Once
	cancel   context.CancelFunc // stops the watcher
	watching chan struct{}      // closed when the watcher returned
}

func (t *term) end() { t.endOnce.Do(func() { close(t.lost) }) }

// NewElection opens a session of ttl (DefaultBrokerTTL if 0) for campaigning in group. If the
// broker dies, its leadership ends when the session's lease expires.
func (c *Client) NewElection(ctx context.Context, group string, ttl time.Duration) (*Election, error) {
	if err := validateName("broker group", group); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultBrokerTTL
	}
	e := &Election{c: c, group: group, prefix: c.key(dirElection, group), ttl: ttl}
	if err := e.newSessionLocked(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// newSessionLocked replaces the session; callers hold e.mu (or own e exclusively).
func (e *Election) newSessionLocked(ctx context.Context) error {
	if old := e.sess; old != nil {
		// Free the old lease at once, so our stale key does not delay our own new campaign
		// (etcd extends leases across a restart). Best effort: it expires anyway.
		rctx, cancel := e.c.reqCtx(ctx)
		_, _ = e.c.cli.Revoke(rctx, old.Lease())
		cancel()
		old.Orphan()
	}
	rctx, cancel := e.c.reqCtx(ctx)
	defer cancel()
	lease, err := e.c.cli.Grant(rctx, int64((e.ttl+time.Second-1)/time.Second))
	if err != nil {
		return fmt.Errorf("election of %s: grant lease: %w", e.group, err)
	}
	// The session owns the lease's keep-alive until Close.
	sess, err := concurrency.NewSession(e.c.cli, concurrency.WithLease(lease.ID))
	if err != nil {
		return fmt.Errorf("election of %s: session: %w", e.group, err)
	}
	e.sess, e.el, e.fresh = sess, concurrency.NewElection(sess, e.prefix), false
	return nil
}

func sessionDone(s *concurrency.Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// Campaign blocks until this broker leads the group (or ctx ends, or the session is lost
// while waiting) and returns the term it won. Calling it while leading returns the current
// term. One Campaign at a time per Election.
func (e *Election) Campaign(ctx context.Context, brokerName string) (Leadership, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Leadership{}, fmt.Errorf("campaign for master of %s: %w", e.group, ErrClosed)
	}
	if t := e.term; t != nil && t.lead.Held() {
		e.mu.Unlock()
		return t.lead, nil
	}
	if e.fresh || sessionDone(e.sess) {
		if err := e.newSessionLocked(ctx); err != nil {
			e.mu.Unlock()
			return Leadership{}, fmt.Errorf("campaign for master of %s: %w", e.group, err)
		}
	}
	sess, el := e.sess, e.el
	e.mu.Unlock()

	// A session lost while waiting ends the wait: its key is gone, so winning is impossible.
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	err := el.Campaign(cctx, brokerName)
	cancel()
	if err != nil {
		if sessionDone(sess) && ctx.Err() == nil {
			e.markFresh()
			return Leadership{}, fmt.Errorf("campaign for master of %s: session lost while waiting: %w", e.group, err)
		}
		return Leadership{}, fmt.Errorf("campaign for master of %s: %w", e.group, err)
	}
	lead := Leadership{Group: e.group, Key: el.Key(), Epoch: el.Rev(), Lease: sess.Lease(), TTL: e.ttl}
	// The key could have gone with its lease while Campaign waited for older keys: check
	// that the term really started before reporting it.
	rctx, rcancel := e.c.reqCtx(ctx)
	resp, err := e.c.cli.Get(rctx, lead.Key)
	rcancel()
	if err != nil {
		_ = e.resignEl(el)
		return Leadership{}, fmt.Errorf("campaign for master of %s: confirm election key: %w", e.group, err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != lead.Epoch {
		e.markFresh()
		return Leadership{}, fmt.Errorf("campaign for master of %s: election key %s vanished (lease lost) while campaigning", e.group, lead.Key)
	}
	t := &term{lost: make(chan struct{}), watching: make(chan struct{})}
	lead.Lost = t.lost
	t.lead = lead
	wctx, wcancel := context.WithCancel(context.Background())
	t.cancel = wcancel
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		wcancel()
		t.end()
		_ = e.resignEl(el)
		return Leadership{}, fmt.Errorf("campaign for master of %s: %w", e.group, ErrClosed)
	}
	e.term = t
	e.mu.Unlock()
	go e.watchTerm(wctx, t, sess, resp.Header.Revision)
	return lead, nil
}

func (e *Election) markFresh() {
	e.mu.Lock()
	e.fresh = true
	e.mu.Unlock()
}

func (e *Election) resignEl(el *concurrency.Election) error {
	rctx, cancel := e.c.reqCtx(context.Background())
	defer cancel()
	return el.Resign(rctx)
}

// watchTerm ends t when its key is deleted or its session is lost, or when ctx ends (Resign,
// Close). rev is a revision at which the key was seen alive.
func (e *Election) watchTerm(ctx context.Context, t *term, sess *concurrency.Session, rev int64) {
	defer close(t.watching)
	defer t.end()
	lost := func() {
		e.mu.Lock()
		if e.term == t {
			e.term = nil
		}
		// Our key is gone but the session may linger (a revoked lease is noticed only at
		// the next keep-alive): the next Campaign starts on a new session.
		e.fresh = true
		e.mu.Unlock()
	}
	for {
		wctx, wcancel := context.WithCancel(ctx)
		wch := e.c.cli.Watch(wctx, t.lead.Key, clientv3.WithRev(rev+1))
		gone, next, err := e.followKey(ctx, wch, sess)
		wcancel()
		if ctx.Err() != nil {
			return
		}
		if gone || sessionDone(sess) {
			lost()
			return
		}
		if err != nil {
			// The watch broke (compaction, lost connection): look at the key itself.
			rctx, cancel := e.c.reqCtx(ctx)
			resp, gerr := e.c.cli.Get(rctx, t.lead.Key)
			cancel()
			if gerr == nil && (len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != t.lead.Epoch) {
				lost()
				return
			}
			if gerr == nil {
				next = resp.Header.Revision
			}
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return
			}
		}
		rev = max(rev, next)
	}
}

// followKey consumes the watch until the key is deleted (gone), the session ends, ctx ends
// or the watch fails; next is the last revision seen.
func (e *Election) followKey(ctx context.Context, wch clientv3.WatchChan, sess *concurrency.Session) (gone bool, next int64, err error) {
	for {
		select {
		case <-ctx.Done():
			return false, next, ctx.Err()
		case <-sess.Done():
			return true, next, nil
		case wr, ok := <-wch:
			if !ok {
				return false, next, errors.New("watch closed")
			}
			if werr := wr.Err(); werr != nil {
				return false, next, werr
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					return true, next, nil
				}
				next = ev.Kv.ModRevision
			}
		}
	}
}

// Leader returns the current master's broker name, or ErrNotFound if nobody leads.
func (e *Election) Leader(ctx context.Context) (string, error) {
	e.mu.Lock()
	el := e.el
	e.mu.Unlock()
	rctx, cancel := e.c.reqCtx(ctx)
	defer cancel()
	resp, err := el.Leader(rctx)
	if errors.Is(err, concurrency.ErrElectionNoLeader) {
		return "", fmt.Errorf("master of %s: %w", e.group, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("master of %s: %w", e.group, err)
	}
	return string(resp.Kvs[0].Value), nil
}

// Observe streams the leader's name on every change until ctx ends (the first value is the
// current leader, once there is one).
func (e *Election) Observe(ctx context.Context) <-chan string {
	e.mu.Lock()
	el := e.el
	e.mu.Unlock()
	out := make(chan string)
	go func() {
		defer close(out)
		for resp := range el.Observe(ctx) {
			select {
			case out <- string(resp.Kvs[0].Value):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Resign ends the current term (a no-op if not leading): Lost closes first, then the key is
// deleted, so the member stops its master work before another member can win.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	t, el := e.term, e.el
	e.term = nil
	e.mu.Unlock()
	if t == nil {
		return nil
	}
	t.cancel()
	<-t.watching
	t.end()
	rctx, cancel := e.c.reqCtx(ctx)
	defer cancel()
	if err := el.Resign(rctx); err != nil {
		e.markFresh() // the key may linger until its lease goes; campaign on a new one
		return fmt.Errorf("resign master of %s: %w", e.group, err)
	}
	return nil
}

// Epoch is the current term's epoch, or 0 when not leading.
func (e *Election) Epoch() int64 {
	if l, ok := e.Leadership(); ok {
		return l.Epoch
	}
	return 0
}

// Leadership returns the current term, if this member leads.
func (e *Election) Leadership() (Leadership, bool) {
	e.mu.Lock()
	t := e.term
	e.mu.Unlock()
	if t == nil || !t.lead.Held() {
		return Leadership{}, false
	}
	return t.lead, true
}

// Fence is the current term's Leadership.Fence, or, when not leading, a comparison that
// never holds.
func (e *Election) Fence() clientv3.Cmp {
	if l, ok := e.Leadership(); ok {
		return l.Fence()
	}
	return clientv3.Compare(clientv3.CreateRevision(e.prefix), "<", 0)
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done is closed when the current term ends; it is closed already when not leading.
func (e *Election) Done() <-chan struct{} {
	if l, ok := e.Leadership(); ok {
		return l.Lost
	}
	return closedCh
}

// Lease returns the current session's lease, e.g. to revoke it in a test of lost sessions.
func (e *Election) Lease() clientv3.LeaseID {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sess.Lease()
}

// Close ends the term, if any, and the session, revoking its lease; idempotent.
func (e *Election) Close() error {
	var err error
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		t, sess := e.term, e.sess
		e.term = nil
		e.mu.Unlock()
		if t != nil {
			t.cancel()
			<-t.watching
			t.end()
		}
		err = sess.Close()
	})
	return err
}
