package meta

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/meta/etcdembed"
)

func TestACLAccounts(t *testing.T) {
	srv := startEtcd(t)
	c := newTestClient(t, srv.Endpoints())
	ctx := testCtx(t)
	v, err := c.NewACLView(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })

	rev, err := c.CreateACLAccount(ctx, ACLAccount{AccessKey: "app1", SecretKey: "s3cret", DefaultTopicPerm: "DENY"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateACLAccount(ctx, ACLAccount{AccessKey: "app1", SecretKey: "other"}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if err := v.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	snap, _ := v.Current()
	if a := snap.Accounts["app1"]; a.SecretKey != "s3cret" || a.DefaultTopicPerm != "DENY" {
		t.Fatalf("view has %+v", a)
	}

	// Concurrent read-modify-writes: none is lost.
	var wg sync.WaitGroup
	for _, topic := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.UpdateACLAccount(ctx, "app1", func(a *ACLAccount) error {
				if a.TopicPerms == nil {
					a.TopicPerms = map[string]string{}
				}
				a.TopicPerms[topic] = "PUB"
				return nil
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	a, err := c.ACLAccount(ctx, "app1")
	if err != nil || len(a.TopicPerms) != 8 {
		t.Fatalf("after 8 concurrent grants: %+v, %v", a.TopicPerms, err)
	}
	if err := v.WaitRevision(ctx, a.Revision); err != nil {
		t.Fatal(err)
	}
	if snap, _ := v.Current(); len(snap.Accounts["app1"].TopicPerms) != 8 {
		t.Fatalf("view has %v", snap.Accounts["app1"].TopicPerms)
	}

	if _, err := c.UpdateACLAccount(ctx, "ghost", func(*ACLAccount) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing account: %v", err)
	}
	rev, err = c.SetACLWhitelist(ctx, []string{"10.0.0.*"})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if snap, _ := v.Current(); strings.Join(snap.Whitelist, ",") != "10.0.0.*" {
		t.Fatalf("whitelist %v", snap.Whitelist)
	}

	rev, err = c.DeleteACLAccount(ctx, "app1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteACLAccount(ctx, "app1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := v.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if snap, _ := v.Current(); len(snap.Accounts) != 0 {
		t.Fatalf("deleted account still in the view: %v", snap.Accounts)
	}

	// A value that does not decode is left out and named, not guessed at.
	if _, err := c.cli.Put(ctx, c.key(dirACLAccounts, "broken"), "{not json"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the view names the undecodable account", func() bool {
		snap, _ := v.Current()
		_, present := snap.Accounts["broken"]
		return !present && len(snap.Undecodable) == 1
	})

	for _, bad := range []string{"", "a/b", "a b", strings.Repeat("k", 256)} {
		if _, err := c.CreateACLAccount(ctx, ACLAccount{AccessKey: bad, SecretKey: "x"}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("access key %q: %v, want ErrInvalidName", bad, err)
		}
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 (its own CA) and its key.
func selfSigned(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestEtcdOverTLS(t *testing.T) {
	serverCert, serverKey := selfSigned(t, "etcd")
	clientCert, clientKey := selfSigned(t, "strata")
	srv := startEtcd(t, etcdembed.WithClientTLS(serverCert, serverKey, clientCert))
	if !strings.HasPrefix(srv.Endpoints()[0], "https://") {
		t.Fatalf("endpoint %s is not https", srv.Endpoints()[0])
	}
	ping := func(tls EtcdTLS) error {
		c, err := New(testCtx(t), Config{Endpoints: srv.Endpoints(), Cluster: "test", DialTimeout: 2 * time.Second, TLS: tls})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Ping(testCtx(t))
	}
	if err := ping(EtcdTLS{CAFile: serverCert, CertFile: clientCert, KeyFile: clientKey}); err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	if err := ping(EtcdTLS{CAFile: serverCert}); err == nil {
		t.Fatal("etcd requires a client certificate, yet a client without one got in")
	}
	if err := ping(EtcdTLS{CertFile: clientCert, KeyFile: clientKey}); err == nil {
		t.Fatal("etcd's certificate is not from a trusted CA, yet the client went on")
	}
	if _, err := New(testCtx(t), Config{Endpoints: srv.Endpoints(), Cluster: "test", TLS: EtcdTLS{CAFile: "/nonexistent/ca.pem"}}); err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Fatalf("missing CA file: %v", err)
	}
}
