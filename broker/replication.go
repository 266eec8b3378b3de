package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/replica"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
)

// Log replication within the broker group (DESIGN.md "Replication"), wired from
// broker/replica and meta:
//
//   - the member that wins the election (only from the in-sync set, meta.CampaignInSync)
//     stops following, begins its epoch in the store's epoch history, takes a write lease
//     (meta.WriteLease: it stops accepting writes before its term can expire), records the
//     in-sync set the last term left (plus itself) under its epoch and serves its log
//     (replica.Server) on the replication listener;
//   - every other member follows the master the view shows (replica.Follower), from its own
//     log end after truncating a divergent tail; its store refuses local appends, so it
//     answers SEND with SERVICE_NOT_AVAILABLE and clients retry on the master;
//   - the master keeps the in-sync set from its followers' progress: a follower joins once it
//     holds the whole log (it is waited for from the moment it is a candidate, and recorded in
//     etcd once it holds everything acknowledged before), and leaves, recorded in etcd first,
//     once it made no progress for MaxLag;
//   - in sync mode a send is answered once every follower of the in-sync set acked its end,
//     and refused (SLAVE_NOT_AVAILABLE, not stored) while the set is below MinInSyncReplicas;
//   - a member that is not the master serves pulls only of records the in-sync set holds
//     (store.SetReadLimit, raised by the master's watermark: masterTerm.waitFor): from start
//     until the first watermark nothing, and a deposed master what its own set confirmed.
//     The master serves its whole log;
//   - with slave_read_enable, a pull far behind the log end is answered with an in-sync
//     slave's brokerId as suggestWhichBrokerId, and the slave sends the consumer back once it
//     catches up (slaveread.go).

// rejoinLagBytes is how far behind the master's end a follower may be to become a candidate
// for the in-sync set (it is waited for from then on, so sync sends slow down by at most that).
const rejoinLagBytes = 1 << 20

// isrPeriod is how often the master looks at its followers' progress.
const isrPeriod = 100 * time.Millisecond

type replication struct {
	b   *Broker
	cfg ReplicationConfig
	me  string
	ln  net.Listener
	// addr is the advertised replication address, published in BrokerInfo.
	addr string
	// dial reaches a master over TLS when the broker serves TLS (nil: plain TCP).
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu         sync.Mutex
	term       *masterTerm // non-nil while master
	isrChanged chan struct{}
	// the follower goroutine, nil while none runs
	follow       *replica.Follower
	followCancel context.CancelFunc
	followDone   chan struct{}
	followTarget string // "name@addr#epoch" being followed
	// followed is set once a follower ran: the log may hold records the transaction and timer
	// services have not read, so promotion reopens them (reopenLogServices).
	followed atomic.Bool
	// leading is set while a master term serves the log (the pull path reads it without mu).
	leading atomic.Bool
}

// masterTerm is one term as the group's replicating master.
type masterTerm struct {
	lead   meta.Leadership
	lease  *meta.WriteLease
	server *replica.Server
	ln     *chanListener
	cancel context.CancelFunc
	done   chan struct{}

	// guarded by replication.mu
	isr     meta.InSyncSet       // as stored in etcd
	pending map[string]int64     // candidates waited for, and the log end they must reach
	pendAt  map[string]time.Time // when each became a candidate
}

// startReplication binds the replication listener; the roles start with the election.
func (b *Broker) startReplication() error {
	rc := b.cfg.Replication
	if !rc.Enabled() {
		return nil
	}
	var dial func(ctx context.Context, addr string) (net.Conn, error) // nil: plain TCP
	if b.tls != nil {
		tc, err := rc.followerTLS(b.cfg.TLS).Load()
		if err != nil {
			return fmt.Errorf("broker: replication TLS: %w", err)
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tc}
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	ln, err := net.Listen("tcp", rc.Listen)
	if err != nil {
		return fmt.Errorf("broker: listen for replication on %s: %w", rc.Listen, err)
	}
	addr := rc.AdvertisedAddr
	if addr == "" {
		if addr, err = advertisedAddr("", ln.Addr()); err != nil {
			ln.Close()
			return err
		}
	} else {
		addr = netip.MustParseAddrPort(addr).String()
	}
	r := &replication{b: b, cfg: rc, me: b.memberName(), ln: b.secure(ln), addr: addr, dial: dial, isrChanged: make(chan struct{})}
	b.repl = r
	// Not the master until elected: what this log holds past the last watermark heard is
	// not known to be confirmed. What was confirmed stays so, since only in-sync members can
	// win; an unclean election may truncate below it, so then serve nothing until a master
	// streams again.
	kept := b.store.KeptReadLimit()
	if rc.UncleanElection {
		kept = 0
	}
	b.store.SetReadLimit(kept)
	if rc.UncleanElection {
		b.log.Warn("replication: unclean election is ON (replication.unclean_election): a member outside the in-sync set may become master and messages only the lost members held are then lost",
			"group", b.cfg.BrokerName)
	}
	b.wg.Add(1)
	go r.accept()
	return nil
}

// accept hands each connection to the current term's server, or closes it.
func (r *replication) accept() {
	defer r.b.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if r.b.ctx.Err() == nil {
				r.b.log.Error("replication listener stopped", "err", err)
			}
			return
		}
		r.mu.Lock()
		t := r.term
		r.mu.Unlock()
		if t == nil || t.ln == nil || !t.ln.deliver(c) {
			c.Close() // not the master: the follower looks the master up again
		}
	}
}

// startFollowing runs the follower loop until the broker closes.
func (r *replication) startFollowing() {
	r.b.wg.Add(1)
	go r.followLoop()
}

func (r *replication) followLoop() {
	defer r.b.wg.Done()
	defer r.stopFollower()
	for {
		snap, changed := r.b.meta.view.Current()
		r.reconcileFollower(snap)
		select {
		case <-r.b.ctx.Done():
			return
		case <-changed:
		case <-time.After(time.Second): // a Run that ended with an error is started again
		}
	}
}

// reconcileFollower follows the master snap shows, unless this member is the master.
func (r *replication) reconcileFollower(snap *meta.Snapshot) {
	group := r.b.cfg.BrokerName
	master := snap.Masters[group]
	epoch := snap.MasterEpoch(group)
	var addr string
	if info, ok := snap.Brokers[group+"/"+master]; ok {
		addr = info.ReplicaAddr
	}
	target := ""
	if master != "" && master != r.me && addr != "" {
		target = fmt.Sprintf("%s@%s#%d", master, addr, epoch)
	}
	r.mu.Lock()
	if r.term != nil {
		r.mu.Unlock()
		return
	}
	running := r.followDone != nil
	if running {
		select {
		case <-r.followDone:
			running = false
		default:
		}
	}
	if running && r.followTarget == target {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.stopFollower()
	if target == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.term != nil || r.b.ctx.Err() != nil {
		return
	}
	if r.follow == nil {
		r.follow = replica.NewFollower(replica.FollowerConfig{Store: r.b.store, Member: r.me, Logger: r.b.log, Dial: r.dial})
	}
	ctx, cancel := context.WithCancel(r.b.ctx)
	done := make(chan struct{})
	r.followCancel, r.followDone, r.followTarget = cancel, done, target
	f := r.follow
	r.followed.Store(true)
	go func() {
		defer close(done)
		r.b.log.Info("replication: following the group's master", "group", group, "master", master, "addr", addr, "epoch", epoch)
		if err := f.Run(ctx, addr, epoch); err != nil && ctx.Err() == nil {
			r.b.log.Warn("replication: following the master stopped; trying again when the master changes or in a second",
				"group", group, "master", master, "epoch", epoch, "err", err)
		}
	}()
}

func (r *replication) stopFollower() {
	r.mu.Lock()
	cancel, done := r.followCancel, r.followDone
	r.followCancel, r.followDone, r.followTarget = nil, nil, ""
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// becomeMaster starts a term as the replicating master; on error the caller resigns.
func (r *replication) becomeMaster(ctx context.Context, lead meta.Leadership, set meta.InSyncSet) error {
	r.mu.Lock()
	r.term = &masterTerm{} // placeholder: the follow loop starts nothing from now on
	r.mu.Unlock()
	fail := func(err error) error {
		r.mu.Lock()
		r.term = nil
		r.mu.Unlock()
		return err
	}
	r.stopFollower()
	st := r.b.store
	// Closed while the store still refuses appends, so a closing timer fires nothing: what
	// the last master fired and checkpointed is in the log, and the reopened services read
	// it from there.
	reopen := r.followed.Load() && r.b.closeLogServices(ctx)
	if err := st.SetFollower(ctx, false); err != nil {
		return fail(fmt.Errorf("leave follower mode: %w", err))
	}
	if err := st.BeginEpoch(lead.Epoch); err != nil {
		return fail(fmt.Errorf("begin epoch %d in the store: %w", lead.Epoch, err))
	}
	if reopen {
		if err := r.b.openLogServices(ctx); err != nil {
			return fail(fmt.Errorf("reopen transactions and timers from the replicated log: %w", err))
		}
		r.followed.Store(false)
	}
	lease, err := r.b.mc.NewWriteLease(ctx, lead)
	if err != nil {
		return fail(err)
	}
	// The set the last term left stays: each of its members holds everything acknowledged so
	// far, and from now on sends wait for them (or for their removal after MaxLag, which is
	// how the dead master leaves). Starting from this member alone would refuse sync sends
	// until a follower rejoined.
	isr, err := r.b.mc.SetInSyncSet(ctx, r.b.cfg.BrokerName, set, append(slices.Clone(set.Members), r.me), lead)
	if errors.Is(err, meta.ErrInSyncSetConflict) {
		var cur meta.InSyncSet
		if cur, err = r.b.mc.GetInSyncSet(ctx, r.b.cfg.BrokerName); err == nil || errors.Is(err, meta.ErrNotFound) {
			isr, err = r.b.mc.SetInSyncSet(ctx, r.b.cfg.BrokerName, cur, append(slices.Clone(cur.Members), r.me), lead)
		}
	}
	if err != nil {
		lease.Close()
		return fail(fmt.Errorf("set the in-sync set to this member: %w", err))
	}
	tctx, cancel := context.WithCancel(r.b.ctx)
	t := &masterTerm{
		lead: lead, lease: lease, cancel: cancel, done: make(chan struct{}),
		server: replica.NewServer(replica.ServerConfig{Store: st, Epoch: lead.Epoch, Logger: r.b.log}),
		ln:     newChanListener(r.ln.Addr()),
		isr:    isr, pending: map[string]int64{}, pendAt: map[string]time.Time{},
	}
	st.SetReadLimit(store.Unlimited) // the master's log is the truth now
	r.mu.Lock()
	r.term = t
	r.leading.Store(true)
	r.notifyLocked()
	r.mu.Unlock()
	go func() { _ = t.server.Serve(t.ln) }()
	go r.keepInSyncSet(tctx, t)
	r.b.log.Info("replication: master of the group; serving the log to followers", "group", r.b.cfg.BrokerName,
		"epoch", lead.Epoch, "mode", r.cfg.Mode, "min_in_sync_replicas", r.cfg.MinInSyncReplicas, "write_lease", lease.Duration())
	return nil
}

// stepDown ends the master term (if any); the follow loop takes over.
func (r *replication) stepDown() {
	r.mu.Lock()
	t := r.term
	if t != nil && t.server != nil {
		// Deposed: the next master may truncate what its in-sync set did not confirm.
		r.b.store.SetReadLimit(t.server.Committed())
	}
	r.term = nil
	r.leading.Store(false)
	r.notifyLocked()
	r.mu.Unlock()
	if t == nil || t.server == nil {
		return
	}
	t.cancel()
	<-t.done
	t.server.Close()
	t.lease.Close()
}

func (r *replication) notifyLocked() {
	if t := r.term; t != nil && t.server != nil {
		t.server.SetInSync(t.waitFor(r.me))
	}
	close(r.isrChanged)
	r.isrChanged = make(chan struct{})
}

// waitFor lists the members a sync-mode send waits for: the in-sync set's other members and
// the candidates. Caller holds replication.mu.
//
// Their acks also make the watermark up to which followers serve pulls (Server.SetInSync),
// in async mode too: only in-sync members can be elected, so a record they all hold survives
// a failover, while one only the master holds may be truncated away by it. Async mode
// acknowledged it to the producer all the same; a consumer still must not see it and then
// find it gone. (The master's own end would let followers serve exactly such records.)
func (t *masterTerm) waitFor(me string) []string {
	var need []string
	for _, m := range t.isr.Members {
		if m != me {
			need = append(need, m)
		}
	}
	for m := range t.pending {
		need = append(need, m)
	}
	return need
}

// keepInSyncSet maintains the in-sync set from the followers' progress until ctx ends.
func (r *replication) keepInSyncSet(ctx context.Context, t *masterTerm) {
	defer close(t.done)
	type progress struct {
		acked int64
		at    time.Time
	}
	seen := map[string]progress{}
	start := time.Now()
	tick := time.NewTicker(isrPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		fs := t.server.Followers()
		byName := map[string]replica.FollowerStatus{}
		for _, f := range fs {
			byName[f.Member] = f
			p, ok := seen[f.Member]
			if !ok || f.Acked != p.acked || f.LagBytes == 0 {
				seen[f.Member] = progress{acked: f.Acked, at: now}
			}
		}
		stalled := func(m string) bool {
			f, ok := byName[m]
			if !ok { // not connected in this term yet: it has MaxLag to do so
				return now.Sub(start) > r.cfg.MaxLag
			}
			return f.LagBytes > 0 && now.Sub(seen[m].at) > r.cfg.MaxLag
		}
		r.mu.Lock()
		members := slices.Clone(t.isr.Members)
		end := r.b.store.EndOffset()
		var confirm []string
		for m, need := range t.pending {
			switch f := byName[m]; {
			case stalled(m) || !f.Connected || now.Sub(t.pendAt[m]) > 2*r.cfg.MaxLag:
				delete(t.pending, m)
				delete(t.pendAt, m)
				r.notifyLocked()
			case f.Acked >= need:
				confirm = append(confirm, m)
			}
		}
		for _, f := range fs {
			if f.Member == r.me || slices.Contains(members, f.Member) {
				continue
			}
			if _, ok := t.pending[f.Member]; !ok && f.Connected && f.LagBytes <= rejoinLagBytes && !stalled(f.Member) {
				// Waited for from now on; everything acknowledged so far is below end.
				t.pending[f.Member] = end
				t.pendAt[f.Member] = now
				r.notifyLocked()
			}
		}
		r.mu.Unlock()

		var drop []string
		for _, m := range members {
			if m != r.me && stalled(m) {
				drop = append(drop, m)
			}
		}
		if len(drop) == 0 && len(confirm) == 0 {
			continue
		}
		next := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return slices.Contains(drop, m) })
		next = append(next, confirm...)
		r.mu.Lock()
		prev := t.isr
		r.mu.Unlock()
		stored, err := r.b.mc.SetInSyncSet(ctx, r.b.cfg.BrokerName, prev, next, t.lead)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.b.log.Warn("replication: cannot record the in-sync set in etcd; sync sends keep waiting for the old set",
				"group", r.b.cfg.BrokerName, "want", next, "err", err)
			if errors.Is(err, meta.ErrNotLeader) {
				return // the election loop sees the term end
			}
			continue
		}
		r.mu.Lock()
		t.isr = stored
		for _, m := range confirm {
			delete(t.pending, m)
			delete(t.pendAt, m)
		}
		r.notifyLocked()
		r.mu.Unlock()
		r.b.log.Info("replication: in-sync set changed", "group", r.b.cfg.BrokerName, "members", stored.Members,
			"dropped", drop, "joined", confirm, "epoch", t.lead.Epoch)
	}
}

// Errors of the write path.
var (
	errNotMaster = errors.New("not the master")
)

// refuseWrite answers a send this member may not accept now, before anything is stored; nil
// lets it through.
func (b *Broker) refuseWrite(req *remoting.Command) *remoting.Command {
	r := b.repl
	if r == nil {
		return nil
	}
	r.mu.Lock()
	t := r.term
	var isr []string
	if t != nil {
		isr = t.isr.Members
	}
	r.mu.Unlock()
	if t == nil || t.lease == nil {
		master := b.meta.view.Snapshot().Masters[b.cfg.BrokerName]
		return remoting.NewResponse(req, remoting.RespServiceNotAvailable, fmt.Sprintf(
			"broker %s is a slave of broker group %s (master: %s); send to the group's master, brokerId 0 in the route (the client retries there once its route is refreshed)",
			r.me, b.cfg.BrokerName, orNone(master)))
	}
	if !t.lease.Valid() {
		return remoting.NewResponse(req, remoting.RespServiceNotAvailable, fmt.Sprintf(
			"broker %s has not reached etcd within its write lease (%s): it stops accepting writes before another member can be elected; retry, the group's next master takes over",
			r.me, t.lease.Duration()))
	}
	if r.cfg.Mode == ReplicationSync && len(isr) < r.cfg.MinInSyncReplicas {
		return remoting.NewResponse(req, remoting.RespSlaveNotAvailable, fmt.Sprintf(
			"not stored: broker group %s has %d in-sync member(s) %v, below min_in_sync_replicas %d; start or repair its other members (or lower replication.min_in_sync_replicas)",
			b.cfg.BrokerName, len(isr), isr, r.cfg.MinInSyncReplicas))
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none elected yet"
	}
	return s
}

// awaitReplicated answers nil once a send whose records end at end may be acknowledged: in
// sync mode every follower of the in-sync set holds it; in both modes the write lease still
// holds. Otherwise it returns the response to send instead (the records are stored on this
// member; a retry may duplicate them).
func (b *Broker) awaitReplicated(ctx context.Context, req *remoting.Command, end int64) *remoting.Command {
	r := b.repl
	if r == nil {
		return nil
	}
	if r.cfg.Mode == ReplicationSync {
		if err := r.waitInSync(ctx, end); err != nil {
			if errors.Is(err, errNotMaster) {
				return remoting.NewResponse(req, remoting.RespServiceNotAvailable, fmt.Sprintf(
					"broker %s stopped being the master of %s before the in-sync set confirmed the message; retry on the new master", r.me, b.cfg.BrokerName))
			}
			return remoting.NewResponse(req, remoting.RespFlushSlaveTimeout, fmt.Sprintf(
				"stored on the master but not confirmed by the in-sync set within %s: %v", r.cfg.AckTimeout, err))
		}
	}
	r.mu.Lock()
	t := r.term
	r.mu.Unlock()
	if t == nil || t.lease == nil || !t.lease.Valid() {
		return remoting.NewResponse(req, remoting.RespServiceNotAvailable, fmt.Sprintf(
			"broker %s lost its master term or write lease before acknowledging; retry, the group's next master takes over", r.me))
	}
	return nil
}

// waitInSync waits until every follower the master waits for (the in-sync set's and the
// candidates') acked end, within AckTimeout.
func (r *replication) waitInSync(ctx context.Context, end int64) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AckTimeout)
	defer cancel()
	for {
		r.mu.Lock()
		t := r.term
		changed := r.isrChanged
		var need []string
		var size int
		if t != nil && t.server != nil {
			size = len(t.isr.Members)
			need = t.waitFor(r.me)
		}
		r.mu.Unlock()
		if t == nil || t.server == nil {
			return errNotMaster
		}
		if size < r.cfg.MinInSyncReplicas {
			return fmt.Errorf("the in-sync set shrank to %d member(s), below min_in_sync_replicas %d", size, r.cfg.MinInSyncReplicas)
		}
		if len(need) == 0 {
			return nil
		}
		wctx, wcancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
				wcancel()
			case <-wctx.Done():
			}
		}()
		err := t.server.WaitReplicatedAmong(wctx, end, len(need), func(m string) bool { return slices.Contains(need, m) })
		wcancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s to hold commit-log position %d: %w", strings.Join(need, ", "), end, ctx.Err())
		}
		if errors.Is(err, replica.ErrServerClosed) {
			return errNotMaster
		}
	}
}

// close stops both roles and the listener.
func (r *replication) close() {
	r.ln.Close()
	r.stopFollower()
	r.stepDown()
}

// chanListener is a net.Listener fed by replication.accept, so each term's server can close
// "its" listener while the real one stays bound to the published address.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// closeLogServices closes the transaction and timer services before a promotion; it
// reports false (nothing closed) while Start has not opened them yet. The closed services
// stay in place until openLogServices replaces them, so a request in between is refused as
// by a closing broker rather than finding none.
func (b *Broker) closeLogServices(ctx context.Context) bool {
	tx, tm := b.txnService(), b.timerService()
	if tx == nil || tm == nil {
		return false
	}
	if err := tm.Close(ctx); err != nil {
		b.log.Debug("replication: close the timer service before promotion (its last checkpoint is the old master's to write)", "err", err)
	}
	if err := tx.Close(); err != nil {
		b.log.Debug("replication: close the transaction service before promotion (its last checkpoint is the old master's to write)", "err", err)
	}
	return true
}

// openLogServices opens the transaction and timer services again over the log as it is
// now: their pending state is a function of the log's bytes (broker/txn, broker/timer), so
// the promoted member carries on from what the last master recorded.
func (b *Broker) openLogServices(ctx context.Context) error {
	if err := b.openTxn(ctx); err != nil {
		return err
	}
	if err := b.startTimer(ctx); err != nil {
		return err
	}
	b.log.Info("replication: transactions and timers reopened from the replicated log",
		"pending_transactions", b.txnService().PendingCount(), "pending_timers", b.timerService().Status().Pending)
	return nil
}

// replicaStatus is what the runtime info reports of replication on this member.
type replicaStatus struct {
	master    bool
	inSync    []string                 // the in-sync set stored in etcd (master only)
	followers []replica.FollowerStatus // master only
}

func (r *replication) status() replicaStatus {
	r.mu.Lock()
	t := r.term
	var st replicaStatus
	if t != nil {
		st.master = true
		st.inSync = append([]string(nil), t.isr.Members...)
	}
	r.mu.Unlock()
	if t != nil {
		st.followers = t.server.Followers()
	}
	return st
}
