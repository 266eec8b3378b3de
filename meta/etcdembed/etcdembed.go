// Package etcdembed starts a single-member etcd server inside the current process, for
// `strata dev` and for tests. Start it with Start, hand Endpoints to meta.New, stop it with
// Close. A cluster node (`strata broker`) never uses this package: it joins external etcd.
//
// etcd's log goes to slog (warnings and errors by default, logger.go), and a Fatal in etcd
// does not exit the process: it is logged and delivered on Server.Err, so the owner can
// shut down cleanly.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// Option adjusts the embedded server.
type Option func(*options)

type options struct {
	embed    []func(*embed.Config)
	logger   *slog.Logger
	logLevel zapcore.Level
}

// WithUnsafeNoFsync disables fsync. Faster; acceptable only for tests and benchmarks whose data
// may be lost on a machine crash.
func WithUnsafeNoFsync() Option {
	return func(o *options) { o.embed = append(o.embed, func(c *embed.Config) { c.UnsafeNoFsync = true }) }
}

// WithLogger sends etcd's log to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithLogLevel sets the lowest level of etcd's own entries that are logged ("debug", "info",
// "warn", "error"); the default is "warn". An unknown name keeps the default.
func WithLogLevel(level string) Option {
	return func(o *options) {
		if l, err := zapcore.ParseLevel(level); err == nil {
			o.logLevel = l
		}
	}
}

// WithClientAddr serves clients on host:port instead of a free port of 127.0.0.1, e.g. to
// restart a member on the address its clients already know.
func WithClientAddr(hostPort string) Option {
	return func(o *options) {
		o.embed = append(o.embed, func(c *embed.Config) {
			u := url.URL{Scheme: "http", Host: hostPort}
			c.ListenClientUrls = []url.URL{u}
			c.AdvertiseClientUrls = []url.URL{u}
		})
	}
}

// WithClientTLS serves clients over TLS (https://) with the given PEM certificate and key;
// with a non-empty clientCAFile, clients must present a certificate signed by it. For tests
// of etcd TLS settings.
func WithClientTLS(certFile, keyFile, clientCAFile string) Option {
	return func(o *options) {
		o.embed = append(o.embed, func(c *embed.Config) {
			c.ClientTLSInfo.CertFile, c.ClientTLSInfo.KeyFile = certFile, keyFile
			if clientCAFile != "" {
				c.ClientTLSInfo.TrustedCAFile, c.ClientTLSInfo.ClientCertAuth = clientCAFile, true
			}
			for i := range c.ListenClientUrls {
				c.ListenClientUrls[i].Scheme = "https"
			}
			for i := range c.AdvertiseClientUrls {
				c.AdvertiseClientUrls[i].Scheme = "https"
			}
		})
	}
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	clientURL string
	errc      chan error // the first fatal error; see Err
	stop      chan struct{}
	closing   atomic.Bool // quiets etcd's log while it closes
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// abandonedStarts counts start-ups that Start gave up waiting for; tests wait for them.
var abandonedStarts sync.WaitGroup

// startTimeout bounds how long Start waits for the member to become ready when ctx has no
// earlier deadline; a fresh single member is ready in well under a second.
const startTimeout = 60 * time.Second

// Start runs a single-member etcd with its data under dataDir (created if missing), serving
// clients on a free port of 127.0.0.1. It returns once the member is ready to serve, or as
// soon as ctx ends: etcd's own start-up cannot be interrupted (it waits without end for a
// database file another process holds), so it is left to finish in the background and the
// member it starts, if any, is closed at once.
func Start(ctx context.Context, dataDir string, opts ...Option) (*Server, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: create data dir %s: %w", dataDir, err)
	}
	// etcd warns at every start about a directory others can read; it is etcd's alone.
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: make data dir %s private: %w", dataDir, err)
	}
	o := options{logLevel: zapcore.WarnLevel}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	s := &Server{errc: make(chan error, 1), stop: make(chan struct{})}
	cfg := embed.NewConfig()
	cfg.Name = "strata-dev"
	cfg.Dir = dataDir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(o.logger, o.logLevel, s.report, &s.closing))
	// NewConfig leaves this 0, which logs every request as slow.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
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
	for _, f := range o.embed {
		f(cfg)
	}

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	type result struct {
		e   *embed.Etcd
		err error
	}
	startc := make(chan result, 1)
	go func() {
		// Deferred, so that a Fatal during start-up (fatalHook ends this goroutine) still
		// answers.
		r := result{err: errors.New("start-up ended by a fatal error")}
		defer func() { startc <- r }()
		r.e, r.err = embed.StartEtcd(cfg)
	}()
	var e *embed.Etcd
	abandon := func() {
		abandonedStarts.Add(1)
		go func() {
			defer abandonedStarts.Done()
			if r := <-startc; r.e != nil {
				r.e.Close()
			}
		}()
	}
	select {
	case r := <-startc:
		if r.err != nil {
			return nil, fmt.Errorf("embedded etcd: start in %s: %w", dataDir, r.err)
		}
		e = r.e
	case err := <-s.errc:
		abandon()
		return nil, err
	case <-ctx.Done():
		abandon()
		return nil, fmt.Errorf("embedded etcd: stopped while opening its files in %s (if that takes long, another process may hold them): %w", dataDir, ctx.Err())
	case <-timer.C:
		abandon()
		return nil, fmt.Errorf("embedded etcd: still opening its files in %s after %s; another process may hold them, or the disk is failing", dataDir, startTimeout)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: failed while starting: %w", err)
	case err := <-s.errc:
		e.Close()
		return nil, err
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: start: %w", ctx.Err())
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedded etcd: not ready after %s; check the data directory and disk", startTimeout)
	}
	if len(e.Clients) == 0 {
		e.Close()
		return nil, errors.New("embedded etcd: no client listener")
	}
	addr := e.Clients[0].Addr().(*net.TCPAddr)
	s.etcd = e
	s.clientURL = fmt.Sprintf("%s://%s", cfg.ListenClientUrls[0].Scheme, net.JoinHostPort(addr.IP.String(), fmt.Sprint(addr.Port)))
	s.wg.Add(1)
	go s.forwardErrors()
	return s, nil
}

// report keeps the first fatal error for Err; later ones are logged already.
func (s *Server) report(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

// forwardErrors passes the errors etcd's servers report (a listener that failed, …) to Err.
func (s *Server) forwardErrors() {
	defer s.wg.Done()
	select {
	case err, ok := <-s.etcd.Err():
		if ok && err != nil {
			s.report(fmt.Errorf("embedded etcd stopped serving: %w", err))
		}
	case <-s.stop:
	}
}

// ClientAddr returns host:port of the client listener.
func (s *Server) ClientAddr() string { return strings.TrimPrefix(s.clientURL, "http://") }

// Endpoints returns the client URLs, ready for clientv3.Config.Endpoints or meta.Config.
func (s *Server) Endpoints() []string { return []string{s.clientURL} }

// ClientURL returns the one client URL, e.g. "http://127.0.0.1:43121".
func (s *Server) ClientURL() string { return s.clientURL }

// Err delivers the first fatal error after start: a Fatal entry in etcd's log (which would
// otherwise have ended the process) or a server that stopped. The member is no longer
// usable then; the owner should shut down and Close it.
func (s *Server) Err() <-chan error { return s.errc }

// Close stops the server and waits for it; calling it again does nothing.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.closing.Store(true)
		s.etcd.Close()
		s.wg.Wait()
	})
	return nil
}
