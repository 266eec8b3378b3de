package remoting

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/remoting/tlstest"
)

// startTLSServer serves echo behind s's listener.
func startTLSServer(t *testing.T, s *ServerTLS) string {
	t.Helper()
	srv, err := NewServer(Config{}, echo)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(s.Listener(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		_ = srv.Close(ctx)
		<-served
	})
	return ln.Addr().String()
}

func newServerTLS(t *testing.T, cfg ServerTLSConfig) *ServerTLS {
	t.Helper()
	s, err := NewServerTLS(cfg, slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func clientTLS(t *testing.T, c ClientTLSConfig) *tls.Config {
	t.Helper()
	conf, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

func roundTrip(t *testing.T, addr string, cfg ClientConfig) error {
	t.Helper()
	c, err := Dial(testCtx(t), addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.Invoke(testCtx(t), NewRequest(CodeHeartBeat, ExtFields{"k": "v"}, []byte("body")))
	if err != nil {
		return err
	}
	if resp.Code != RespSuccess || string(resp.Body) != "body" {
		t.Fatalf("echo answered %v", resp)
	}
	return nil
}

func TestTLSEnforcing(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Server("broker")
	addr := startTLSServer(t, newServerTLS(t, ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile}))

	if err := roundTrip(t, addr, ClientConfig{TLS: clientTLS(t, ClientTLSConfig{CAFile: ca.CertFile})}); err != nil {
		t.Fatalf("TLS client trusting the CA: %v", err)
	}
	if err := roundTrip(t, addr, ClientConfig{TLS: clientTLS(t, ClientTLSConfig{InsecureSkipVerify: true})}); err != nil {
		t.Fatalf("TLS client skipping verification (as the RocketMQ Go client does): %v", err)
	}
	err := roundTrip(t, addr, ClientConfig{TLS: clientTLS(t, ClientTLSConfig{})})
	if err == nil || !strings.Contains(err.Error(), "--ca") {
		t.Fatalf("TLS client without the CA: %v, want an unknown-authority error naming --ca", err)
	}
	err = roundTrip(t, addr, ClientConfig{DialTimeout: time.Second})
	if err == nil || !errors.Is(err, ErrConnClosed) {
		t.Fatalf("plain client on a TLS-only port: %v, want the connection closed", err)
	}
}

func TestTLSPermissiveAdmitsBoth(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Server("broker")
	addr := startTLSServer(t, newServerTLS(t, ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile, Permissive: true}))
	if err := roundTrip(t, addr, ClientConfig{TLS: clientTLS(t, ClientTLSConfig{CAFile: ca.CertFile})}); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	if err := roundTrip(t, addr, ClientConfig{}); err != nil {
		t.Fatalf("plain client: %v", err)
	}
}

func TestMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	other := tlstest.NewCA(t, "someone else's CA")
	pair := ca.Server("broker")
	addr := startTLSServer(t, newServerTLS(t, ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile,
		ClientCAFile: ca.CertFile, ClientAuth: ClientAuthRequire}))

	client := ca.Client("cli")
	if err := roundTrip(t, addr, ClientConfig{TLS: clientTLS(t, ClientTLSConfig{CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile})}); err != nil {
		t.Fatalf("client with a certificate of the CA: %v", err)
	}
	err := roundTrip(t, addr, ClientConfig{TLS: clientTLS(t, ClientTLSConfig{CAFile: ca.CertFile})})
	if err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Fatalf("client without a certificate: %v, want a refusal that names the client certificate", err)
	}
	stranger := other.Client("stranger")
	if err := roundTrip(t, addr, ClientConfig{TLS: clientTLS(t, ClientTLSConfig{CAFile: ca.CertFile, CertFile: stranger.CertFile, KeyFile: stranger.KeyFile})}); err == nil {
		t.Fatal("a client certificate of another CA got in")
	}
}

// TestCertificateRotation replaces the certificate files under a running listener: new
// handshakes get the new certificate without a restart, and a half-written rotation keeps
// the old one.
func TestCertificateRotation(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	first, second := ca.Server("first"), ca.Server("second")
	dir := t.TempDir()
	certFile, keyFile := dir+"/tls.pem", dir+"/tls-key.pem"
	first.CopyTo(t, certFile, keyFile)
	s := newServerTLS(t, ServerTLSConfig{CertFile: certFile, KeyFile: keyFile, ReloadCheck: time.Millisecond})
	addr := startTLSServer(t, s)
	served := func() string {
		conn, err := tls.Dial("tcp", addr, clientTLS(t, ClientTLSConfig{CAFile: ca.CertFile}))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := served(); cn != "first" {
		t.Fatalf("serving %q, want first", cn)
	}
	second.CopyTo(t, certFile, keyFile)
	deadline := time.Now().Add(testWait)
	for served() != "second" {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate is not served")
		}
		time.Sleep(5 * time.Millisecond) // past ReloadCheck
	}
	if err := roundTrip(t, addr, ClientConfig{TLS: clientTLS(t, ClientTLSConfig{CAFile: ca.CertFile})}); err != nil {
		t.Fatalf("after rotation: %v", err)
	}

	// A key that does not belong to the certificate: the previous pair stays in use.
	third := ca.Server("third")
	third.CopyTo(t, certFile, dir+"/unused-key.pem")
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted a certificate with another certificate's key")
	}
	if cn := served(); cn != "second" {
		t.Fatalf("after a failed reload serving %q, want second", cn)
	}
}

func TestServerTLSConfigErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Server("broker")
	for _, c := range []struct {
		cfg  ServerTLSConfig
		want string
	}{
		{ServerTLSConfig{}, "certificate file and a key file are required"},
		{ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientAuth: ClientAuthRequire}, "needs client_ca_file"},
		{ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientAuth: "maybe"}, "want none, verify_if_given or require"},
		{ServerTLSConfig{CertFile: pair.CertFile, KeyFile: ca.CertFile}, "load certificate"},
		{ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: pair.KeyFile, ClientAuth: ClientAuthRequire}, "holds no PEM certificate"},
	} {
		if _, err := NewServerTLS(c.cfg, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

// TestClientSigns checks that a client with credentials signs every request so that the
// signature verifies over what the server received.
func TestClientSigns(t *testing.T) {
	got := make(chan *Command, 1)
	_, addr := startServer(t, Config{}, HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		got <- req
		return NewResponse(req, RespSuccess, "")
	}))
	c := dial(t, addr, ClientConfig{Credentials: Credentials{AccessKey: "ak", SecretKey: "sk-123456", BindRequest: true}})
	if _, err := c.Invoke(testCtx(t), NewRequest(CodeSendMessage, ExtFields{"topic": "T"}, []byte("m"))); err != nil {
		t.Fatal(err)
	}
	req := <-got
	if req.ExtFields[ExtAccessKey] != "ak" || req.ExtFields[ExtStrataCode] != "10" || req.ExtFields[ExtStrataSignedAt] == "" {
		t.Fatalf("signed fields %v", req.ExtFields)
	}
	if want := Signature([]byte("sk-123456"), req.ExtFields, req.Body, SkipSignature); req.ExtFields[ExtSignature] != want {
		t.Fatalf("signature %q, want %q", req.ExtFields[ExtSignature], want)
	}
	if s := req.String(); strings.Contains(s, req.ExtFields[ExtSignature]) {
		t.Fatalf("String shows the signature: %s", s)
	}
}
