package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/broker/acl"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/broker/timer"
	"github.com/stratamq/strata/broker/txn"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/query"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// Broker is one Strata broker process: the name-server role, the broker role and the HTTP
// endpoint over one hot store and the cluster metadata.
type Broker struct {
	cfg  Config
	mc   *meta.Client
	meta *clusterMeta // set by Start
	log  *slog.Logger

	store      *store.Store
	nsServer   *remoting.Server
	brkServer  *remoting.Server
	httpServer *http.Server

	// election is this broker's candidacy for master of its group (election.go).
	election *meta.Election
	// repl replicates the group's log (replication.go), nil when not configured.
	repl *replication
	// tier is the cold tier (tiering.go), nil when no bucket is configured.
	tier         *tier.Tier
	tierBucket   *objstore.MetricsBucket
	tierPointers tier.MetaPointers
	// txnP is transactional half messages (txn.go); reopened when this member is promoted.
	txnP         atomic.Pointer[txn.Service]
	deleting     pendingDeletes // topics being deleted (topicdelete.go)
	incarnations *incarnations  // which incarnation each topic's local data belongs to
	sendTopics   writableTopics // per topic, what the last send's checks found (sendtopics.go)
	// timerP is scheduled delivery (scheduled.go): delay levels, delivery times, retry
	// back-off; reopened when this member is promoted.
	timerP atomic.Pointer[timer.Service]

	nsLn, brkLn, httpLn net.Listener
	storeHost           netip.AddrPort
	advertised          string

	acl *acl.Checker        // nil: ACL off (security.go)
	tls *remoting.ServerTLS // nil: plain listeners

	clients *clientRegistry
	filters *filterCache // compiled subscription expressions (filters.go)
	locks   *lockTable
	metrics *metrics
	held    atomic.Int64 // pulls being held

	ctx    context.Context // cancelled by Close; parent of background work
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	started   time.Time // set by Start; zero until then
	closed    bool
	closeErr  error
	closeDone chan struct{}
	serving   atomic.Bool
}

// New checks cfg and returns a broker that is not yet serving; call Start. mc is the etcd
// metadata client (meta.New); the broker does not close it.
func New(cfg Config, mc *meta.Client) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if mc == nil {
		return nil, errors.New("broker: New needs a cluster metadata client (meta.New)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:       cfg,
		mc:        mc,
		log:       cfg.Logger.With("broker", cfg.BrokerName),
		locks:     newLockTable(cfg.LockExpiry),
		metrics:   newMetrics(cfg.Metrics),
		ctx:       ctx,
		cancel:    cancel,
		closeDone: make(chan struct{}),
	}
	b.filters = newFilterCache(cfg.SQL92Limits)
	b.wireMetrics()
	b.clients = newClientRegistry(func(group string, conns []*remoting.Conn) {
		notifyConsumerIDsChanged(b.ctx, group, conns)
	}, b.filters.compile)
	return b, nil
}

// startCleanupTimeout bounds the undoing of a failed Start (offsets flushed, lease revoked,
// files closed) when etcd is slow or gone.
const startCleanupTimeout = 10 * time.Second

// Start opens the store, binds the listeners, registers the broker in the metadata and starts
// serving. Every step that waits (etcd, the bucket, recovery) ends when ctx does. On error
// everything it started is closed again.
func (b *Broker) Start(ctx context.Context) (err error) {
	b.mu.Lock()
	if !b.started.IsZero() || b.closed {
		b.mu.Unlock()
		return errors.New("broker: Start called twice or after Close")
	}
	b.started = time.Now()
	b.mu.Unlock()
	defer func() {
		if err != nil {
			// ctx may be what ended the start (a signal); the cleanup still needs time.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startCleanupTimeout)
			defer cancel()
			_ = b.Close(cctx)
		}
	}()

	if err := b.prepareTier(ctx); err != nil {
		return err
	}
	b.cfg.Store.Replicated = b.cfg.Replication.Enabled()
	st, err := store.OpenContext(ctx, b.cfg.Store)
	if err != nil {
		return fmt.Errorf("broker: open store: %w", err)
	}
	b.store = st
	if b.incarnations, err = loadIncarnations(b.incarnationsPath()); err != nil {
		return fmt.Errorf("broker: %w", err)
	}

	if err := b.loadTLS(); err != nil {
		return err
	}
	if err := b.startReplication(); err != nil {
		return err
	}
	if b.nsLn, err = net.Listen("tcp", b.cfg.NameServerListen); err != nil {
		return fmt.Errorf("broker: listen for the name-server role on %s: %w", b.cfg.NameServerListen, err)
	}
	b.nsLn = b.secure(b.nsLn)
	if b.brkLn, err = net.Listen("tcp", b.cfg.BrokerListen); err != nil {
		return fmt.Errorf("broker: listen for the broker role on %s: %w", b.cfg.BrokerListen, err)
	}
	b.brkLn = b.secure(b.brkLn)
	if b.cfg.HTTPListen != "-" {
		if b.httpLn, err = net.Listen("tcp", b.cfg.HTTPListen); err != nil {
			return fmt.Errorf("broker: listen for HTTP on %s: %w", b.cfg.HTTPListen, err)
		}
		b.httpLn = b.secure(b.httpLn)
	}
	if b.advertised, err = advertisedAddr(b.cfg.AdvertisedAddr, b.brkLn.Addr()); err != nil {
		return err
	}
	b.storeHost = netip.MustParseAddrPort(b.advertised)
	if err := b.startACL(ctx); err != nil {
		return err
	}

	rcfg := b.cfg.Remoting
	rcfg.Logger = b.log
	if b.nsServer, err = remoting.NewServer(rcfg, remoting.HandlerFunc(b.serveNameServer)); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if b.brkServer, err = remoting.NewServer(rcfg, brokerHandler{b}); err != nil {
		return fmt.Errorf("broker: %w", err)
	}

	role := meta.RoleMaster // the configured role; the acting master is elected
	if b.cfg.BrokerID != 0 {
		role = meta.RoleSlave
	}
	info := meta.BrokerInfo{
		Name: b.memberName(), Group: b.cfg.BrokerName, Role: role,
		ID: b.cfg.BrokerID, BrokerAddr: b.advertised, NamesrvAddr: b.nsLn.Addr().String(),
	}
	if b.httpLn != nil {
		info.HTTPAddr = b.httpLn.Addr().String()
	}
	if b.repl != nil {
		info.ReplicaAddr = b.repl.addr
	}
	if b.meta, err = openClusterMeta(ctx, b.mc, &b.cfg, info); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if b.repl != nil {
		b.repl.startFollowing()
	}

	if err := b.startTier(ctx); err != nil {
		return err
	}
	if err := b.startElection(ctx); err != nil {
		return err
	}
	if err := b.openTxn(ctx); err != nil {
		return err
	}
	if err := b.startTimer(ctx); err != nil {
		return err
	}
	// Topics deleted (or deleted and created again) while this broker was down.
	b.reconcileTopics(ctx, b.meta.view.Snapshot())
	if !b.cfg.DisableTraceTopic {
		// Out of the box, as RocketMQ's traceTopicEnable: clients drop trace records for a
		// topic without a route.
		if _, err := b.meta.createTopicIfAbsent(ctx, topicInfo{Name: query.TraceTopic, ReadQueueNums: 1, WriteQueueNums: 1,
			Perm: permRW, RetentionMs: b.cfg.TraceRetention.Milliseconds()}, b.cfg.BrokerName); err != nil {
			return fmt.Errorf("broker: create the message-trace topic %s: %w", query.TraceTopic, err)
		}
	}
	b.wg.Add(1)
	go b.followTopicDeletions()
	b.serve(b.nsServer, b.nsLn)
	b.serve(b.brkServer, b.brkLn)
	if b.httpLn != nil {
		b.httpServer = &http.Server{Handler: b.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if err := b.httpServer.Serve(b.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				b.log.Error("http server stopped", "err", err)
			}
		}()
	}
	b.wg.Add(1)
	go b.housekeeping()
	b.serving.Store(true)
	b.log.Info("broker started", "namesrv", b.nsLn.Addr().String(), "broker_listen", b.brkLn.Addr().String(), "advertised", b.advertised,
		"acl", b.acl != nil, "tls", b.tls != nil)
	return nil
}

func (b *Broker) serve(s *remoting.Server, ln net.Listener) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := s.Serve(ln); err != nil && !errors.Is(err, remoting.ErrServerClosed) {
			b.log.Error("remoting listener stopped", "addr", ln.Addr().String(), "err", err)
			b.serving.Store(false)
		}
	}()
}

// housekeeping expires silent clients and stale locks (PROTOCOL.md §1.6) and lowers the read
// queues of drained shrunk topics (queuedrain.go).
func (b *Broker) housekeeping() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.HousekeepingPeriod)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			b.clients.expire(now.Add(-b.cfg.ClientExpiry))
			b.locks.sweep(now)
			b.drainReadQueues(b.ctx)
		}
	}
}

// advertisedAddr picks the address clients dial: the configured one, or the listener's with
// a wildcard host replaced by the first non-loopback IPv4 address.
func advertisedAddr(configured string, ln net.Addr) (string, error) {
	if configured != "" {
		return netip.MustParseAddrPort(configured).String(), nil
	}
	tcp, ok := ln.(*net.TCPAddr)
	if !ok {
		return "", fmt.Errorf("broker: listener address %s is not TCP", ln)
	}
	ip := tcp.IP
	if ip.IsUnspecified() || ip == nil {
		ip = firstIPv4()
	}
	ip4 := ip.To4()
	if ip4 == nil {
		return "", fmt.Errorf("broker: the broker listens on %s, which is not IPv4; set AdvertisedAddr to a reachable IPv4 ip:port", tcp)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip4)), uint16(tcp.Port)).String(), nil
}

func firstIPv4() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.To4()
			}
		}
	}
	return net.IPv4(127, 0, 0, 1).To4()
}

// NameServerAddr is the name-server role's bound address ("ip:port"); valid after Start.
func (b *Broker) NameServerAddr() string { return b.nsLn.Addr().String() }

// BrokerAddr is the broker role's advertised address; valid after Start.
func (b *Broker) BrokerAddr() string { return b.advertised }

// HTTPAddr is the HTTP listener's bound address, "" when HTTP is disabled; valid after Start.
func (b *Broker) HTTPAddr() string {
	if b.httpLn == nil {
		return ""
	}
	return b.httpLn.Addr().String()
}

// Store is the broker's hot store (for the tier and query layers); valid after Start.
func (b *Broker) Store() *store.Store { return b.store }

// Ready reports nil when the broker serves both remoting roles and reaches etcd, or why not.
func (b *Broker) Ready() error {
	if !b.serving.Load() {
		return errors.New("broker is not serving: not started, stopping, or a listener failed")
	}
	if b.meta == nil {
		return errors.New("broker is not started")
	}
	if err := b.meta.healthy(); err != nil {
		return fmt.Errorf("cluster metadata (etcd) unreachable: %w", err)
	}
	return nil
}

// Close stops serving (held pulls are answered), flushes consumer offsets, deregisters the
// broker and closes the store. It is idempotent; later calls wait for the first.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.closeDone
		return b.closeErr
	}
	b.closed = true
	b.mu.Unlock()
	defer close(b.closeDone)

	b.serving.Store(false)
	var errs []error
	// Cancelling b.ctx wakes held pulls, which then answer PULL_NOT_FOUND before the
	// servers' drain completes.
	b.cancel()
	for _, s := range []*remoting.Server{b.brkServer, b.nsServer} {
		if s != nil {
			if err := s.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, ln := range []net.Listener{b.nsLn, b.brkLn} {
		if ln != nil {
			_ = ln.Close() // closed already when served; harmless otherwise
		}
	}
	if b.repl != nil {
		_ = b.repl.ln.Close() // ends its accept loop
	}
	if b.httpServer != nil {
		if err := b.httpServer.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("broker: stop http: %w", err))
		}
	} else if b.httpLn != nil {
		_ = b.httpLn.Close()
	}
	b.wg.Wait()
	if b.repl != nil {
		b.repl.close()
	}
	if b.timerService() != nil {
		// Before the tier and the store: it fires what is due and checkpoints into the log.
		// On a replication follower its last checkpoint is the master's to write.
		if err := b.timerService().Close(ctx); err != nil && !errors.Is(err, store.ErrFollower) {
			errs = append(errs, fmt.Errorf("broker: scheduled delivery: %w", err))
		}
	}
	if b.txnService() != nil {
		if err := b.txnService().Close(); err != nil && !errors.Is(err, store.ErrFollower) {
			errs = append(errs, fmt.Errorf("broker: close transactions: %w", err))
		}
	}
	if b.acl != nil {
		_ = b.acl.Close()
	}
	if b.meta != nil {
		// Flushes consumer offsets, then leaves the cluster.
		if err := b.meta.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("broker: cluster metadata: %w", err))
		}
	}
	if err := b.closeTier(); err != nil {
		errs = append(errs, fmt.Errorf("broker: close cold tier: %w", err))
	}
	if b.election != nil {
		// After the tier stopped: the next master starts once our term is over.
		if err := b.election.Close(); err != nil {
			errs = append(errs, fmt.Errorf("broker: leave the master election of %s: %w", b.cfg.BrokerName, err))
		}
	}
	if b.incarnations != nil {
		if err := b.incarnations.close(); err != nil {
			errs = append(errs, fmt.Errorf("broker: close topic incarnations: %w", err))
		}
	}
	if b.store != nil {
		if err := b.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("broker: close store: %w", err))
		}
	}
	b.closeErr = errors.Join(errs...)
	return b.closeErr
}
