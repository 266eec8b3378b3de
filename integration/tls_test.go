package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/remoting/tlstest"
	"github.com/stratamq/strata/tier/objstore"
)

// TLS on every listener, end to end: the official Go client with WithTls, the strata CLI
// with --tls --ca, a certificate rotated under a running process, client certificates.

func clientTLS(t *testing.T, c remoting.ClientTLSConfig) *tls.Config {
	t.Helper()
	conf, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

// servedName is the common name of the certificate a new TLS connection to addr is served.
func servedName(t *testing.T, addr string, conf *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// hangup sends SIGHUP: the process reads its certificate files again.
func (p *strataProc) hangup() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		p.t.Fatal("strata is not running")
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		p.t.Fatal(err)
	}
}

func TestTLSWithOfficialClient(t *testing.T) {
	resetClientTLS(t)
	ca := tlstest.NewCA(t, "strata test CA")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker-key.pem")
	ca.Server("first").CopyTo(t, certFile, keyFile)
	trust := clientTLS(t, remoting.ClientTLSConfig{CAFile: ca.CertFile})
	dev := startDevTLS(t, t.TempDir(), trust, "--tls-cert", certFile, "--tls-key", keyFile)
	const topic = "tls-topic"

	// The CLI: --tls with the CA works; without the CA, or without TLS, it is told why not.
	runCLI(t, "", "--tls", "--ca", ca.CertFile, "topic", "create", "--namesrv", dev.Namesrv, "--topic", topic, "--queues", "2")
	if _, errOut, err := runStrata(t, nil, "topic", "list", "--namesrv", dev.Namesrv, "--tls"); err == nil || !strings.Contains(errOut, "--ca") {
		t.Fatalf("--tls without the CA: %v\n%s", err, errOut)
	}
	if _, _, err := runStrata(t, nil, "topic", "list", "--namesrv", dev.Namesrv); err == nil {
		t.Fatal("a plain CLI got through a TLS-only name server")
	}
	if !strings.Contains(dev.output.String(), "tls on") {
		t.Fatalf("the ready line does not say TLS is on:\n%s", dev.output.String())
	}

	// The official client with WithTls(true).
	p := newProducer(t, dev.Namesrv, producer.WithTls(true))
	want := bodies("tls", 5)
	for _, b := range want {
		if err := sendErr(t, p, topic, b); err != nil {
			t.Fatalf("send over TLS: %v", err)
		}
	}
	got := newReceived()
	startPushConsumer(t, dev.Namesrv, "tls-group", topic, "*", "c1", got, consumer.WithTls(true))
	got.waitFor(t, want, 60*time.Second)
	// Rotation: new files, SIGHUP, and new connections get the new certificate from the
	// same process; connections made before keep working.
	if name := servedName(t, dev.Broker, trust); name != "first" {
		t.Fatalf("serving %q, want first", name)
	}
	ca.Server("second").CopyTo(t, certFile, keyFile)
	dev.hangup()
	waitUntil(t, 10*time.Second, "the rotated certificate is served", func() bool { return servedName(t, dev.Broker, trust) == "second" })
	if name := servedName(t, dev.Namesrv, trust); name != "second" {
		t.Fatalf("name server serves %q after rotation", name)
	}
	if err := sendErr(t, p, topic, "after-rotation"); err != nil {
		t.Fatalf("send after rotation: %v", err)
	}
	if err := sendErr(t, newProducer(t, dev.Namesrv, producer.WithTls(true)), topic, "new-producer"); err != nil {
		t.Fatalf("new producer after rotation: %v", err)
	}
}

// resetClientTLS undoes WithTls(true) when the test ends: the official Go client keeps
// UseTls in a process-wide default (internal.defaultClientOptions points every client at
// remote.DefaultRemotingClientConfig), so one client's WithTls(true) switches every later
// client of the process to TLS, and WithTls(false) switches them all back.
func resetClientTLS(t *testing.T) {
	t.Cleanup(func() {
		if _, err := producer.NewDefaultProducer(producer.WithNameServer(primitive.NamesrvAddr{"127.0.0.1:1"}), producer.WithTls(false)); err != nil {
			t.Errorf("reset the Go client's TLS default: %v", err)
		}
	})
}

func TestMutualTLSRefusesClientWithoutCertificate(t *testing.T) {
	resetClientTLS(t)
	ca := tlstest.NewCA(t, "strata test CA")
	server, cli := ca.Server("broker"), ca.Client("operator")
	withCert := clientTLS(t, remoting.ClientTLSConfig{CAFile: ca.CertFile, CertFile: cli.CertFile, KeyFile: cli.KeyFile})
	dev := startDevTLS(t, t.TempDir(), withCert, "--tls-cert", server.CertFile, "--tls-key", server.KeyFile,
		"--tls-client-auth", "require", "--tls-client-ca", ca.CertFile)

	out := runCLI(t, "", "--tls", "--ca", ca.CertFile, "--tls-cert", cli.CertFile, "--tls-key", cli.KeyFile, "topic", "create", "--namesrv", dev.Namesrv, "--topic", "mtls", "--queues", "1")
	if !strings.Contains(out, "created topic mtls") {
		t.Fatalf("CLI with a client certificate: %s", out)
	}
	if _, errOut, err := runStrata(t, nil, "--tls", "--ca", ca.CertFile, "topic", "list", "--namesrv", dev.Namesrv); err == nil || !strings.Contains(errOut, "client certificate") {
		t.Fatalf("CLI without a client certificate: %v\n%s", err, errOut)
	}
	// RocketMQ's Go client cannot present a certificate: refused (no retries: each waits out
	// the client's 3s route timeout).
	p := newProducer(t, dev.Namesrv, producer.WithTls(true), producer.WithRetry(0))
	if err := sendErr(t, p, "mtls", "x"); err == nil {
		t.Fatal("a client without a certificate sent through mTLS")
	}
	// Nor does HTTP answer without one.
	noCert := clientTLS(t, remoting.ClientTLSConfig{CAFile: ca.CertFile})
	conn, err := tls.Dial("tcp", dev.HTTP, noCert)
	if err == nil {
		_, _ = conn.Write([]byte("GET /metrics HTTP/1.0\r\n\r\n"))
		var buf bytes.Buffer
		_, rerr := io.Copy(&buf, conn)
		conn.Close()
		if strings.Contains(buf.String(), "200 OK") {
			t.Fatalf("HTTP served a client without a certificate (%v)", rerr)
		}
	}
}

// TestS3OverTLSWithCABundle reaches a MinIO with its own CA: refused without the CA bundle,
// served with it.
func TestS3OverTLSWithCABundle(t *testing.T) {
	ca := tlstest.NewCA(t, "private S3 CA")
	m := startMinIOWith(t, ca)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := m.S3Options("tls/")
	opts.MaxAttempts = 1
	untrusting, err := objstore.NewS3(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := untrusting.Ping(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("ping without the CA bundle: %v, want a certificate error", err)
	}
	opts.CABundleFile = ca.CertFile
	b, err := objstore.NewS3(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("ping with the CA bundle: %v", err)
	}
	if err := b.Put(ctx, "hello", bytes.NewReader([]byte("over tls")), 8); err != nil {
		t.Fatal(err)
	}
	data, _ := minioObject(t, m, "tls/hello")
	if string(data) != "over tls" {
		t.Fatalf("stored %q", data)
	}
}
