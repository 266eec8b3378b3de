package meta

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Sentinel errors callers act on.
var (
	ErrNotFound             = errors.New("meta: not found")
	ErrExists               = errors.New("meta: already exists")
	ErrInvalidName          = errors.New("meta: invalid name")
	ErrTierPointerBackwards = errors.New("meta: tier pointer would move backwards")
	ErrClosed               = errors.New("meta: closed")
	// ErrUnreachable is wrapped by Ping when etcd does not answer in time.
	ErrUnreachable = errors.New("cannot reach etcd")
)

// Config says how to reach etcd and which cluster's keys to use.
type Config struct {
	// Endpoints are etcd client URLs, e.g. "http://10.0.0.1:2379".
	Endpoints []string
	// Cluster names the Strata cluster; every key lives under /strata/<Cluster>/.
	Cluster string
	// DialTimeout bounds the first connection and Ping; default 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds each single etcd request made by this package; default 5s.
	RequestTimeout time.Duration
	// TLS of the connection to etcd (tls.go); https:// endpoints need it or the system's
	// roots. ACL secret keys live in etcd, so with ACL on, etcd should require both.
	TLS EtcdTLS
	// Username and Password authenticate to etcd when its auth is enabled.
	Username string
	Password string
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("meta config: no etcd endpoints; set at least one, e.g. http://127.0.0.1:2379")
	}
	return validateName("cluster", c.Cluster)
}

// Client reads and writes one cluster's metadata in etcd. It is safe for concurrent use.
type Client struct {
	cli        *clientv3.Client
	ownsCli    bool
	cluster    string
	root       string // "/strata/<cluster>/"
	reqTimeout time.Duration
	// endpoints and dialTimeout are for Ping's error.
	endpoints   []string
	dialTimeout time.Duration
	health      healthState
	closeOnce   sync.Once
}

// New dials etcd. The connection is made lazily by the etcd client, so New succeeds while etcd
// is down; requests then fail (or, for the background workers, retry) until it is back. A
// process that cannot start without etcd calls Ping next.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	tlsConf, err := cfg.TLS.config(cfg.Endpoints)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		TLS:         tlsConf,
		Username:    cfg.Username,
		Password:    cfg.Password,
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Context:     context.WithoutCancel(ctx),
		Logger:      zap.NewNop(),
		// Keep-alive pings make a dead etcd noticed within seconds, not minutes.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("meta: connect to etcd %v: %w", cfg.Endpoints, err)
	}
	c := newClient(cli, cfg.Cluster, cfg.RequestTimeout)
	c.ownsCli = true
	c.dialTimeout = cfg.DialTimeout
	return c, nil
}

// NewFromEtcd wraps an existing etcd client; Close then leaves that client open.
func NewFromEtcd(cli *clientv3.Client, cluster string) (*Client, error) {
	if err := validateName("cluster", cluster); err != nil {
		return nil, err
	}
	return newClient(cli, cluster, 0), nil
}

func newClient(cli *clientv3.Client, cluster string, reqTimeout time.Duration) *Client {
	if reqTimeout <= 0 {
		reqTimeout = 5 * time.Second
	}
	return &Client{
		cli:         cli,
		cluster:     cluster,
		root:        "/strata/" + cluster + "/",
		reqTimeout:  reqTimeout,
		endpoints:   cli.Endpoints(),
		dialTimeout: 5 * time.Second,
		health:      healthState{faults: map[string]fault{}},
	}
}

// Ping makes one linearizable read, so it succeeds only once an endpoint answers and the
// etcd cluster has a leader. It waits at most the dial timeout; its error then wraps
// ErrUnreachable and names the endpoints tried. If ctx ends first, the error wraps ctx's.
func (c *Client) Ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, c.dialTimeout)
	defer cancel()
	_, err := c.cli.Get(pctx, c.root+"ping", clientv3.WithCountOnly())
	if err == nil {
		return nil
	}
	at := strings.Join(c.endpoints, ", ")
	if ctx.Err() != nil {
		return fmt.Errorf("stopped waiting for etcd at %s: %w", at, ctx.Err())
	}
	if pctx.Err() != nil {
		err = pctx.Err() // the client's own wording varies with where the wait ended
	}
	return fmt.Errorf("%w at %s within %s: %w", ErrUnreachable, at, c.dialTimeout, err)
}

// Etcd returns the underlying etcd client.
func (c *Client) Etcd() *clientv3.Client { return c.cli }

// Cluster returns the cluster name.
func (c *Client) Cluster() string { return c.cluster }

// Prefix returns the key prefix of the cluster, "/strata/<cluster>/".
func (c *Client) Prefix() string { return c.root }

// Close closes the etcd client if New created it. Workers started from this Client
// (registrations, views, offset stores, elections) should be closed first.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.ownsCli {
			err = c.cli.Close()
		}
	})
	return err
}

func (c *Client) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.reqTimeout)
}

// Key layout; see doc.go.
const (
	dirBrokers   = "brokers/"
	dirTopics    = "topics/"
	dirRoutes    = "routes/"
	dirSubGroups = "subgroups/"
	dirOffsets   = "offsets/"
	dirTier      = "tier/"
	dirElection  = "election/"
	dirGroups    = "groups/"
)

func (c *Client) key(parts ...string) string { return c.root + strings.Join(parts, "") }

// validateName accepts the names RocketMQ accepts for topics and groups (letters, digits, '-',
// '_', '%', '|', '.', ':') and nothing that could break the key layout.
func validateName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty %s name", ErrInvalidName, kind)
	}
	if len(name) > 255 {
		return fmt.Errorf("%w: %s name %.20q (truncated) is longer than 255 bytes", ErrInvalidName, kind, name)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-' || r == '_' || r == '%' || r == '|' || r == '.' || r == ':':
		default:
			return fmt.Errorf("%w: %s name %q has %q (allowed: letters, digits and -_%%|.:)", ErrInvalidName, kind, name, r)
		}
	}
	return nil
}

// Health is the state of this client's background work against etcd.
type Health struct {
	// Degraded is true while some component cannot reach etcd: it keeps serving what it
	// knows and retries, but new metadata is not being seen or stored.
	Degraded bool
	// Reasons says which component is degraded and why, sorted.
	Reasons []string
	// Since is when the oldest current fault began.
	Since time.Time
}

type fault struct {
	reason string
	since  time.Time
}

type healthState struct {
	mu     sync.Mutex
	faults map[string]fault
}

func (c *Client) setFault(component string, err error) {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	f, ok := c.health.faults[component]
	if !ok {
		f.since = time.Now()
	}
	f.reason = fmt.Sprintf("%s: %v", component, err)
	c.health.faults[component] = f
}

func (c *Client) clearFault(component string) {
	c.health.mu.Lock()
	delete(c.health.faults, component)
	c.health.mu.Unlock()
}

// Health reports whether every worker of this client is currently in touch with etcd; a
// broker's /readyz reports it.
func (c *Client) Health() Health {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	var h Health
	for _, f := range c.health.faults {
		h.Degraded = true
		h.Reasons = append(h.Reasons, f.reason)
		if h.Since.IsZero() || f.since.Before(h.Since) {
			h.Since = f.since
		}
	}
	sort.Strings(h.Reasons)
	return h
}

// Healthy is !Health().Degraded.
func (c *Client) Healthy() bool { return !c.Health().Degraded }

// backoff yields growing, jittered waits between retries.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur *= 2
		if b.cur > b.max {
			b.cur = b.max
		}
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleepCtx waits d or until ctx ends; it reports whether the full wait happened.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
