package meta

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// EtcdTLS says how to reach etcd over TLS, from PEM files.
type EtcdTLS struct {
	// CAFile holds the CAs etcd's certificate is verified against; empty: the system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate for etcd's --client-cert-auth.
	CertFile string
	KeyFile  string
	// ServerName is the name verified in etcd's certificate; empty: the endpoint's host.
	ServerName string
}

func (t EtcdTLS) isZero() bool { return t == EtcdTLS{} }

// config returns the client TLS configuration, or nil for plain connections: none is
// configured and no endpoint is https://.
func (t EtcdTLS) config(endpoints []string) (*tls.Config, error) {
	https := false
	for _, e := range endpoints {
		if strings.HasPrefix(e, "https://") {
			https = true
		}
	}
	if t.isZero() && !https {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("meta: etcd CA file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("meta: etcd CA file %s holds no PEM certificate", t.CAFile)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("meta: an etcd client certificate needs both a certificate file and a key file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("meta: etcd client certificate %s and key %s: %w", t.CertFile, t.KeyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}
