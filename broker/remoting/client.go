package remoting

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// ClientConfig holds the settings of a Client. Zero values take defaults.
type ClientConfig struct {
	// DialTimeout bounds the TCP connect when ctx has no earlier deadline.
	// Default 15 s, as the Go client.
	DialTimeout time.Duration
	// MaxFrameBytes bounds one incoming frame. Default 16 MiB.
	MaxFrameBytes int
	// WriteTimeout bounds one frame write. Default 30 s.
	WriteTimeout time.Duration
	// Handler serves requests the server sends to us (NOTIFY_CONSUMER_IDS_CHANGED
	// and the like). Nil answers them REQUEST_CODE_NOT_SUPPORTED.
	Handler Handler
	// Credentials, when set, sign every request sent on the connection (RocketMQ's
	// ACL signature, sign.go).
	Credentials Credentials
	// TLS, when set, dials TLS with this configuration (ClientTLSConfig.Load builds one
	// from files). An empty ServerName is taken from addr's host.
	TLS *tls.Config
}

// Client is one connection dialled to a remoting server. It is safe for
// concurrent use; its Conn methods (Invoke, InvokeOneway, OnClose, …) are
// available directly.
type Client struct {
	*Conn
}

// Dial connects to addr ("host:port").
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 15 * time.Second
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	d := net.Dialer{Timeout: cfg.DialTimeout}
	var nc net.Conn
	var err error
	var endHint string
	if cfg.TLS != nil {
		tc, asked := noteCertificateRequest(cfg.TLS)
		td := tls.Dialer{NetDialer: &d, Config: tc}
		nc, err = td.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("remoting: dial %s with TLS: %w", addr, tlsDialHint(err))
		}
		if asked.Load() {
			// Under TLS 1.3 a server that requires a certificate refuses it after the
			// handshake has returned here; its alert can be lost to a reset.
			endHint = "the server asked for a client certificate and this client sent none: if it requires one, pass --tls-cert and --tls-key"
		}
	} else if nc, err = d.DialContext(ctx, "tcp", addr); err != nil {
		return nil, fmt.Errorf("remoting: dial %s: %w", addr, err)
	}
	c := newConn(nc, &connConfig{
		maxFrameBytes: cfg.MaxFrameBytes,
		writeTimeout:  cfg.WriteTimeout,
		maxInFlight:   DefaultMaxInFlightPerConn,
		handler:       cfg.Handler,
		credentials:   cfg.Credentials,
		endHint:       endHint,
	})
	go c.serve()
	return &Client{Conn: c}, nil
}

// Close closes the connection and waits for its reader and any handler of
// server requests to return. Do not call it from the client's own Handler.
// It is idempotent.
func (c *Client) Close() error {
	err := c.Conn.Close()
	<-c.Conn.done
	return err
}

// Done is closed once the connection is closed and its goroutines are
// finished, whichever side closed it.
func (c *Client) Done() <-chan struct{} { return c.Conn.done }

// certificateRequiredHint is what a client is told when a server refuses it for want of
// a certificate.
const certificateRequiredHint = "the server requires a client certificate: pass --tls-cert and --tls-key"

// noteCertificateRequest returns cfg, or a copy of it that records whether the server
// asked for a client certificate when cfg has none to give.
func noteCertificateRequest(cfg *tls.Config) (*tls.Config, *atomic.Bool) {
	asked := new(atomic.Bool)
	if len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil {
		return cfg, asked
	}
	c := cfg.Clone()
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked.Store(true)
		return &tls.Certificate{}, nil
	}
	return c, asked
}
