package remoting

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLS for remoting listeners (and any other listener: the broker's HTTP endpoint, later
// replication), from PEM files that are read again when they change, so certificates rotate
// without a restart. ServerTLS is the server side, ClientTLSConfig the dialing side.
//
// RocketMQ's clients dial TLS with `UseTls` (the Go client: producer.WithTls(true), and it
// skips verifying the server's certificate); Java brokers call the listener modes
// "enforcing" (TLS only) and "permissive" (TLS and plain on one port), and so do we.

// ClientAuth says whether a TLS listener asks clients for certificates.
type ClientAuth string

const (
	// ClientAuthNone asks for no client certificate.
	ClientAuthNone ClientAuth = "none"
	// ClientAuthVerifyIfGiven verifies a certificate a client presents, and admits clients
	// without one.
	ClientAuthVerifyIfGiven ClientAuth = "verify_if_given"
	// ClientAuthRequire admits only clients with a certificate signed by ClientCAFile (mTLS).
	// RocketMQ's Go client cannot present one; Strata's CLI can (--cert, --key).
	ClientAuthRequire ClientAuth = "require"
)

// DefaultTLSReloadCheck is how often, at most, a handshake checks whether the certificate
// files changed.
const DefaultTLSReloadCheck = 5 * time.Second

// ServerTLSConfig is the TLS of a listener.
type ServerTLSConfig struct {
	// CertFile and KeyFile are the PEM certificate chain and private key the listener
	// presents. Both are required.
	CertFile string
	KeyFile  string
	// ClientCAFile holds the PEM CAs client certificates are verified against; required
	// unless ClientAuth is none.
	ClientCAFile string
	// ClientAuth is none (default), verify_if_given or require.
	ClientAuth ClientAuth
	// Permissive also admits plain (non-TLS) connections on the same port, told apart by
	// their first byte (a TLS handshake starts with 0x16, which a remoting frame under
	// 352 MiB never does): RocketMQ's "permissive" mode, for moving clients to TLS one by
	// one. Off: TLS only ("enforcing").
	Permissive bool
	// ReloadCheck is how often, at most, a handshake looks at the files' modification
	// times and sizes; a change loads them again (a pair that fails to load is logged and
	// the previous certificate kept). Default DefaultTLSReloadCheck; Reload forces it.
	ReloadCheck time.Duration
}

// Validate reports settings that cannot work.
func (c ServerTLSConfig) Validate() error {
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("tls: a certificate file and a key file are required (tls.cert_file, tls.key_file)")
	}
	switch c.ClientAuth {
	case "", ClientAuthNone:
	case ClientAuthVerifyIfGiven, ClientAuthRequire:
		if c.ClientCAFile == "" {
			return fmt.Errorf("tls: client_auth %s needs client_ca_file, the CAs client certificates are verified against", c.ClientAuth)
		}
	default:
		return fmt.Errorf("tls: client_auth %q: want none, verify_if_given or require", c.ClientAuth)
	}
	if c.ReloadCheck < 0 {
		return fmt.Errorf("tls: reload check %s must not be negative", c.ReloadCheck)
	}
	return nil
}

// ServerTLS serves TLS handshakes with the current certificate of a ServerTLSConfig. It is
// safe for concurrent use; one ServerTLS may serve several listeners.
type ServerTLS struct {
	cfg       ServerTLSConfig
	log       *slog.Logger
	state     atomic.Pointer[serverTLSState]
	lastCheck atomic.Int64 // unix nanos of the last look at the files
	mu        sync.Mutex   // serialises reloads
	failed    [3]fileStamp // stamps of the last load that failed, so it is logged once
}

type serverTLSState struct {
	stamps [3]fileStamp // cert, key, client CA
	config *tls.Config  // immutable once published
	leaf   *x509.Certificate
}

// fileStamp tells whether a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) fileStamp {
	if path == "" {
		return fileStamp{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{size: -1}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}
}

// NewServerTLS loads cfg's files; an error says which file is wrong.
func NewServerTLS(cfg ServerTLSConfig, logger *slog.Logger) (*ServerTLS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ClientAuth == "" {
		cfg.ClientAuth = ClientAuthNone
	}
	if cfg.ReloadCheck == 0 {
		cfg.ReloadCheck = DefaultTLSReloadCheck
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &ServerTLS{cfg: cfg, log: logger}
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	s.lastCheck.Store(time.Now().UnixNano())
	return s, nil
}

func (s *ServerTLS) stamps() [3]fileStamp {
	return [3]fileStamp{stampOf(s.cfg.CertFile), stampOf(s.cfg.KeyFile), stampOf(s.cfg.ClientCAFile)}
}

func (s *ServerTLS) load() (*serverTLSState, error) {
	stamps := s.stamps()
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate %s and key %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	switch s.cfg.ClientAuth {
	case ClientAuthVerifyIfGiven:
		conf.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if s.cfg.ClientCAFile != "" {
		if conf.ClientCAs, err = LoadCertPool(s.cfg.ClientCAFile); err != nil {
			return nil, err
		}
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tls: parse certificate %s: %w", s.cfg.CertFile, err)
	}
	return &serverTLSState{stamps: stamps, config: conf, leaf: leaf}, nil
}

// Reload reads the files again now. On error the current certificate stays in use.
func (s *ServerTLS) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load()
	s.lastCheck.Store(time.Now().UnixNano())
	if err != nil {
		return err
	}
	s.publish(st)
	return nil
}

func (s *ServerTLS) publish(st *serverTLSState) {
	old := s.state.Swap(st)
	if old == nil || !old.leaf.Equal(st.leaf) {
		s.log.Info("tls: certificate loaded", "cert", s.cfg.CertFile, "subject", st.leaf.Subject.String(),
			"not_after", st.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

// maybeReload looks at the files when ReloadCheck has passed since the last look, and loads
// them if they changed.
func (s *ServerTLS) maybeReload() {
	last := s.lastCheck.Load()
	now := time.Now().UnixNano()
	if now-last < int64(s.cfg.ReloadCheck) || !s.lastCheck.CompareAndSwap(last, now) {
		return
	}
	stamps := s.stamps()
	if stamps == s.state.Load().stamps {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load()
	if err != nil {
		// A rotation in progress (certificate written, key not yet) fails here; the
		// next check after the key lands succeeds.
		if stamps != s.failed {
			s.failed = stamps
			s.log.Warn("tls: changed certificate files do not load; still serving the previous certificate", "err", err.Error())
		}
		return
	}
	s.publish(st)
}

// Certificate is the leaf certificate being served.
func (s *ServerTLS) Certificate() *x509.Certificate { return s.state.Load().leaf }

// ClientAuth is the configured client-certificate mode.
func (s *ServerTLS) ClientAuth() ClientAuth { return s.cfg.ClientAuth }

// Permissive reports whether plain connections are admitted too.
func (s *ServerTLS) Permissive() bool { return s.cfg.Permissive }

// TLSConfig returns a server configuration that serves the current certificate (and client
// CAs) of each handshake.
func (s *ServerTLS) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			s.maybeReload()
			return s.state.Load().config, nil
		},
	}
}

// Listener wraps ln so its connections speak TLS (or, when Permissive, TLS or plain, as each
// client starts). Handshakes happen on the connection's first read or write, in the
// connection's own goroutine, under its deadlines: Accept never waits for a client.
func (s *ServerTLS) Listener(ln net.Listener) net.Listener {
	return &tlsListener{Listener: ln, conf: s.TLSConfig(), permissive: s.cfg.Permissive}
}

type tlsListener struct {
	net.Listener
	conf       *tls.Config
	permissive bool
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if !l.permissive {
		return tls.Server(c, l.conf), nil
	}
	return &sniffConn{Conn: c, conf: l.conf}, nil
}

// tlsRecordHandshake is the first byte of every TLS connection (a handshake record).
const tlsRecordHandshake = 0x16

// sniffConn becomes a TLS or a plain connection on its first read or write, by the client's
// first byte.
type sniffConn struct {
	net.Conn // the raw connection: deadlines and Close act on it
	conf     *tls.Config
	once     sync.Once
	inner    net.Conn
	err      error
}

func (c *sniffConn) decide() {
	c.once.Do(func() {
		var b [1]byte
		n, err := c.Conn.Read(b[:])
		if n == 0 {
			if err == nil {
				err = errors.New("no data")
			}
			c.err = err
			return
		}
		pc := &prefixConn{Conn: c.Conn, prefix: b[:1]}
		if b[0] == tlsRecordHandshake {
			c.inner = tls.Server(pc, c.conf)
		} else {
			c.inner = pc
		}
	})
}

func (c *sniffConn) Read(p []byte) (int, error) {
	c.decide()
	if c.inner == nil {
		return 0, c.err
	}
	return c.inner.Read(p)
}

func (c *sniffConn) Write(p []byte) (int, error) {
	c.decide()
	if c.inner == nil {
		return 0, c.err
	}
	return c.inner.Write(p)
}

// prefixConn replays bytes already read before reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// LoadCertPool reads a PEM bundle of CA certificates.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// ClientTLSConfig is the TLS of a dialing side, from PEM files.
type ClientTLSConfig struct {
	// CAFile holds the CAs the server's certificate is verified against; empty: the
	// system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate presented to a listener that asks
	// for one (mTLS); read again when they change.
	CertFile string
	KeyFile  string
	// ServerName is the name verified in the server's certificate; empty: the host dialled.
	ServerName string
	// InsecureSkipVerify accepts any server certificate, as RocketMQ's Go client does. Only
	// for tests and migrations: anyone on the path can then read and alter the traffic.
	InsecureSkipVerify bool
}

// Load builds the tls.Config; an error names the file that does not load.
func (c ClientTLSConfig) Load() (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pool, err := LoadCertPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("tls: a client certificate needs both a certificate file and a key file")
	}
	if c.CertFile != "" {
		r := &clientCertReloader{certFile: c.CertFile, keyFile: c.KeyFile}
		if _, err := r.get(nil); err != nil {
			return nil, err
		}
		conf.GetClientCertificate = r.get
	}
	return conf, nil
}

// clientCertReloader presents the current client certificate, loading the files again when
// they change.
type clientCertReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	stamps            [2]fileStamp
	cert              *tls.Certificate
}

func (r *clientCertReloader) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps := [2]fileStamp{stampOf(r.certFile), stampOf(r.keyFile)}
	if r.cert != nil && stamps == r.stamps {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		if r.cert != nil {
			return r.cert, nil // mid-rotation: keep presenting the old one
		}
		return nil, fmt.Errorf("tls: load client certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamps = &cert, stamps
	return r.cert, nil
}

// tlsDialHint adds what to do to the TLS errors a user meets first.
func tlsDialHint(err error) error {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var rec tls.RecordHeaderError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (the server's certificate is not signed by a CA this client trusts: pass the CA file, --ca)", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w (the certificate does not name the address dialled: put it in the certificate's SANs, or set the server name, --tls-server-name)", err)
	case errors.As(err, &rec):
		return fmt.Errorf("%w (the server does not speak TLS on this port: drop --tls, or enable tls on the broker)", err)
	case strings.Contains(err.Error(), "certificate required"):
		return fmt.Errorf("%w (%s)", err, certificateRequiredHint)
	}
	return err
}
