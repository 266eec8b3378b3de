// Package etcdembed starts a single-member etcd server inside the current process, for
// `strata dev` and for tests. Start it with Start, hand Endpoints to meta.New, stop it with
// Close. A cluster node (`strata broker`) never uses this package: it joins external etcd.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Option adjusts the embedded server's configuration.
type Option func(*embed.Config)

// WithUnsafeNoFsync disables fsync. Faster; acceptable only for tests and benchmarks whose data
// may be lost on a machine crash.
func WithUnsafeNoFsync() Option { return func(c *embed.Config) { c.UnsafeNoFsync = true } }

// WithLogLevel sets etcd's own log level ("debug", "info", "warn", "error"). The default is to
// log nothing: Strata reports etcd trouble through its own errors and health state.
func WithLogLevel(level string) Option {
	return func(c *embed.Config) {
		c.LogLevel = level
		c.ZapLoggerBuilder = nil
		c.LogOutputs = []string{"stderr"}
	}
}

// WithClientAddr serves clients on host:port instead of a free port of 127.0.0.1, e.g. to
// restart a member on the address its clients already know.
func WithClientAddr(hostPort string) Option {
	return func(c *embed.Config) {
		u := url.URL{Scheme: "http", Host: hostPort}
		c.ListenClientUrls = []url.URL{u}
		c.AdvertiseClientUrls = []url.URL{u}
	}
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	clientURL string
	closeOnce sync.Once
}

// startTimeout bounds how long Start waits for the member to become ready when ctx has no
// earlier deadline; a fresh single member is ready in well under a second.
const startTimeout = 60 * time.Second

// Start runs a single-member etcd with its data under dataDir (created if missing), serving
// clients on a free port of 127.0.0.1. It returns once the member is ready to serve.
func Start(ctx context.Context, dataDir string, opts ...Option) (*Server, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: create data dir %s: %w", dataDir, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "strata-dev"
	cfg.Dir = dataDir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	// Port 0 lets the kernel pick; the real address is read back from the listener.
	cu, _ := url.Parse("http://127.0.0.1:0")
	pu, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ClusterState = embed.ClusterStateFlagNew
	for _, o := range opts {
		o(cfg)
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: start in %s (is another etcd using this directory?): %w", dataDir, err)
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: failed while starting: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: start: %w", ctx.Err())
	case <-timer.C:
		e.Close()
		return nil, errors.New("embedded etcd: not ready after 60s; check the data directory and disk")
	}
	if len(e.Clients) == 0 {
		e.Close()
		return nil, errors.New("embedded etcd: no client listener")
	}
	addr := e.Clients[0].Addr().(*net.TCPAddr)
	return &Server{etcd: e, clientURL: fmt.Sprintf("http://%s", net.JoinHostPort(addr.IP.String(), fmt.Sprint(addr.Port)))}, nil
}

// ClientAddr returns host:port of the client listener.
func (s *Server) ClientAddr() string { return strings.TrimPrefix(s.clientURL, "http://") }

// Endpoints returns the client URLs, ready for clientv3.Config.Endpoints or meta.Config.
func (s *Server) Endpoints() []string { return []string{s.clientURL} }

// ClientURL returns the one client URL, e.g. "http://127.0.0.1:43121".
func (s *Server) ClientURL() string { return s.clientURL }

// Err reports a fatal server error after start, if one happens.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the server and waits for it; calling it again does nothing.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.etcd.Close() })
	return nil
}
