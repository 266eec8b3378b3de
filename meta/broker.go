package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Broker roles as configured; the acting master of a group is decided by election.
const (
	RoleMaster = "MASTER"
	RoleSlave  = "SLAVE"
)

// BrokerInfo is one live broker process, stored under its lease at brokers/<Group>/<Name>.
type BrokerInfo struct {
	// Name identifies the broker process in the cluster.
	Name string `json:"name"`
	// Group is the broker group: RocketMQ's brokerName, the unit queues are assigned to.
	Group string `json:"group"`
	// Role is the configured role, RoleMaster or RoleSlave.
	Role string `json:"role"`
	// ID is RocketMQ's brokerId within the group for a slave (>0); the acting master is
	// reported as id 0 whatever its ID.
	ID int64 `json:"id"`
	// BrokerAddr is host:port of the broker-role remoting listener.
	BrokerAddr string `json:"brokerAddr"`
	// NamesrvAddr is host:port of the name-server-role remoting listener.
	NamesrvAddr string `json:"namesrvAddr"`
	// HTTPAddr is host:port of the HTTP listener (metrics, health, admin).
	HTTPAddr string `json:"httpAddr"`
	// ReplicaAddr is host:port of the log-replication listener its followers dial while it is
	// the group's master; empty when the broker does not replicate.
	ReplicaAddr string `json:"replicaAddr,omitempty"`
}

func (b BrokerInfo) validate() error {
	if err := validateName("broker", b.Name); err != nil {
		return err
	}
	if err := validateName("broker group", b.Group); err != nil {
		return err
	}
	if b.Role != RoleMaster && b.Role != RoleSlave {
		return fmt.Errorf("%w: broker %s role %q; use %s or %s", ErrInvalidName, b.Name, b.Role, RoleMaster, RoleSlave)
	}
	return nil
}

// Registration keeps a broker registered: its key lives under a lease kept alive in the
// background, and if the lease is lost (etcd outage longer than the TTL, or revoked) the broker
// registers again under a new lease as soon as etcd answers.
type Registration struct {
	c      *Client
	info   BrokerInfo
	ttl    int64
	key    string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	leaseID clientv3.LeaseID
	regs    int // successful registrations, for tests and metrics

	closeOnce sync.Once
}

// DefaultBrokerTTL is the membership lease TTL: a killed broker disappears this long after.
const DefaultBrokerTTL = 10 * time.Second

// Register puts info under a lease of ttl (DefaultBrokerTTL if 0) and keeps it alive until
// Close. It returns after the first registration succeeded, or with an error if it could not
// within ctx.
func (c *Client) Register(ctx context.Context, info BrokerInfo, ttl time.Duration) (*Registration, error) {
	if err := info.validate(); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = DefaultBrokerTTL
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	r := &Registration{
		c:    c,
		info: info,
		ttl:  secs,
		key:  c.key(dirBrokers, info.Group, "/", info.Name),
		done: make(chan struct{}),
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ka, err := r.register(ctx, runCtx)
	if err != nil {
		cancel()
		return nil, err
	}
	r.cancel = cancel
	go r.run(runCtx, ka)
	return r, nil
}

func (r *Registration) component() string { return "registration " + r.info.Group + "/" + r.info.Name }

// register grants a lease, puts the broker key under it and keeps the lease alive for as long as
// runCtx lives; ctx bounds only the requests.
func (r *Registration) register(ctx, runCtx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	val, err := json.Marshal(r.info)
	if err != nil {
		return nil, err
	}
	rctx, cancel := r.c.reqCtx(ctx)
	defer cancel()
	lease, err := r.c.cli.Grant(rctx, r.ttl)
	if err != nil {
		return nil, fmt.Errorf("register broker %s: grant lease: %w", r.info.Name, err)
	}
	if _, err := r.c.cli.Put(rctx, r.key, string(val), clientv3.WithLease(lease.ID)); err != nil {
		return nil, fmt.Errorf("register broker %s: put %s: %w", r.info.Name, r.key, err)
	}
	ka, err := r.c.cli.KeepAlive(runCtx, lease.ID)
	if err != nil {
		return nil, fmt.Errorf("register broker %s: keep lease alive: %w", r.info.Name, err)
	}
	r.mu.Lock()
	r.leaseID = lease.ID
	r.regs++
	r.mu.Unlock()
	return ka, nil
}

func (r *Registration) run(ctx context.Context, ka <-chan *clientv3.LeaseKeepAliveResponse) {
	defer close(r.done)
	bo := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for {
		for range ka {
			// Drain keep-alive answers; the channel closes when the lease is lost.
		}
		if ctx.Err() != nil {
			return
		}
		r.c.setFault(r.component(), fmt.Errorf("lease lost; registering again"))
		for {
			if !sleepCtx(ctx, bo.next()) {
				return
			}
			var err error
			ka, err = r.register(ctx, ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			r.c.setFault(r.component(), err)
		}
		bo.reset()
		r.c.clearFault(r.component())
	}
}

// LeaseID returns the current membership lease.
func (r *Registration) LeaseID() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaseID
}

// Registrations counts successful registrations (1 + re-registrations after lease loss).
func (r *Registration) Registrations() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.regs
}

// Close stops keeping the lease alive and revokes it, so the broker leaves at once rather than
// after the TTL. Revocation is best effort within a few seconds; Close is idempotent.
func (r *Registration) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.cancel()
		<-r.done
		r.c.clearFault(r.component())
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		// A lease already gone (expired while etcd was out of reach) is a deregistration too.
		if _, rerr := r.c.cli.Revoke(ctx, r.LeaseID()); rerr != nil && !errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
			err = fmt.Errorf("deregister broker %s: revoke lease (it expires by itself in %ds): %w", r.info.Name, r.ttl, rerr)
		}
	})
	return err
}

// Brokers lists the live brokers, sorted by group and name.
func (c *Client) Brokers(ctx context.Context) ([]BrokerInfo, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.key(dirBrokers), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list brokers: %w", err)
	}
	out := make([]BrokerInfo, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var b BrokerInfo
		if err := json.Unmarshal(kv.Value, &b); err != nil {
			return nil, fmt.Errorf("list brokers: decode %s: %w", kv.Key, err)
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
