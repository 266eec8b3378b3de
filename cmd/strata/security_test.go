package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stratamq/strata/broker/remoting"
)

func TestSplitArgsTakesGlobalFlags(t *testing.T) {
	env := map[string]string{"STRATA_ACCESS_KEY": "env-ak", "STRATA_SECRET_KEY": "env-sk"}
	getenv := func(k string) string { return env[k] }
	cases := []struct {
		args       []string
		name       string
		rest       []string
		ak, sk, ca string
		tls        bool
	}{
		{[]string{"topic", "list"}, "topic", []string{"list"}, "env-ak", "env-sk", "", false},
		{[]string{"topic", "create", "--topic", "T", "--access-key", "a1", "--secret-key=s1", "--tls", "--ca", "/ca.pem"},
			"topic", []string{"create", "--topic", "T"}, "a1", "s1", "/ca.pem", true},
		{[]string{"--access-key", "root", "--secret-key", "rs", "acl", "user", "create", "--access-key", "app1", "--secret-key", "app1-sk", "--tls"},
			"acl", []string{"user", "create", "--access-key", "app1", "--secret-key", "app1-sk"}, "root", "rs", "", true},
		{[]string{"--tls=false", "consume", "--topic", "T", "--", "--ca", "x"}, "consume", []string{"--topic", "T", "--", "--ca", "x"}, "env-ak", "env-sk", "", false},
		{[]string{"dev", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "dev", []string{"--tls-cert", "c.pem", "--tls-key", "k.pem"}, "env-ak", "env-sk", "", false},
		{[]string{"message", "get", "--key", "order-1", "--tls-key", "k.pem"}, "message", []string{"get", "--key", "order-1"}, "env-ak", "env-sk", "", true},
	}
	for _, c := range cases {
		name, rest, sec, err := splitArgs(c.args, getenv)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if name != c.name || !reflect.DeepEqual(rest, c.rest) || sec.AccessKey != c.ak || sec.SecretKey != c.sk || sec.CA != c.ca || sec.TLS != c.tls {
			t.Errorf("%v: name %q rest %q ak %q sk %q ca %q tls %v; want %q %q %q %q %q %v",
				c.args, name, rest, sec.AccessKey, sec.SecretKey, sec.CA, sec.TLS, c.name, c.rest, c.ak, c.sk, c.ca, c.tls)
		}
	}
	if _, _, _, err := splitArgs([]string{"topic", "list", "--ca"}, getenv); err == nil || !strings.Contains(err.Error(), "--ca needs a value") {
		t.Fatalf("a value-less --ca: %v", err)
	}
	sec := &clientSecurity{AccessKey: "only-ak"}
	if _, err := sec.clientOptions(); err == nil {
		t.Fatal("an access key without a secret key is accepted")
	}
}

func TestSecurityConfigFromYAML(t *testing.T) {
	nc := defaultNodeConfig()
	if nc.HTTPAddr != "127.0.0.1:8080" {
		t.Fatalf("strata broker binds HTTP to %s by default, want loopback", nc.HTTPAddr)
	}
	nc.ACL = ACLYAML{Enabled: true, PublicRoutes: true, AdminAccessKey: "root", AdminSecretKey: "root-secret"}
	nc.TLS = TLSYAML{Enabled: true, CertFile: "c.pem", KeyFile: "k.pem", ClientAuth: "require", ClientCAFile: "ca.pem"}
	nc.HTTP = HTTPYAML{Pprof: true, AdminToken: "t"}
	bc, err := nc.brokerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !bc.ACLEnabled || !bc.ACL.PublicRoutes || bc.ACLAdmin.AccessKey != "root" || bc.TLS == nil ||
		bc.TLS.ClientAuth != remoting.ClientAuthRequire || !bc.HTTP.Pprof || bc.HTTP.AdminToken != "t" {
		t.Fatalf("broker config %+v %+v %+v", bc.ACL, bc.TLS, bc.HTTP)
	}
	nc.ACL.AdminSecretKey = ""
	if _, err := nc.brokerConfig(); err == nil || !strings.Contains(err.Error(), "admin_secret_key") {
		t.Fatalf("admin key without secret: %v", err)
	}
	nc = defaultNodeConfig()
	nc.TLS.CertFile = "c.pem"
	if _, err := nc.brokerConfig(); err == nil || !strings.Contains(err.Error(), "tls.enabled") {
		t.Fatalf("certificate without tls.enabled: %v", err)
	}
	cfg, err := loadNodeConfig("../../deployments/broker.yaml", []string{"STRATA_ACL_ENABLED=true", "STRATA_ACL_ADMIN_ACCESS_KEY=root",
		"STRATA_ACL_ADMIN_SECRET_KEY=from-env", "STRATA_HTTP_PPROF=true", "STRATA_TIER_S3_CA_BUNDLE_FILE=/ca.pem"})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.ACL.Enabled || cfg.ACL.AdminSecretKey != "from-env" || !cfg.HTTP.Pprof || cfg.Tier.S3.CABundleFile != "/ca.pem" || !cfg.ACL.PublicRoutes {
		t.Fatalf("sample config with overrides: %+v %+v", cfg.ACL, cfg.HTTP)
	}
}

func TestDevSecurityFlags(t *testing.T) {
	f := &nodeSecurityFlags{acl: true, publicRoutes: true, admin: "root:root-secret"}
	nc := defaultNodeConfig()
	if err := f.apply(&nc); err != nil {
		t.Fatal(err)
	}
	if !nc.ACL.Enabled || nc.ACL.AdminAccessKey != "root" || nc.ACL.AdminSecretKey != "root-secret" {
		t.Fatalf("acl %+v", nc.ACL)
	}
	for _, bad := range []*nodeSecurityFlags{{admin: "root:s"}, {acl: true, admin: "root-only"}, {permissive: true}} {
		nc := defaultNodeConfig()
		err := bad.apply(&nc)
		if err == nil {
			t.Errorf("%+v accepted", bad)
		} else if strings.Contains(err.Error(), "root-secret") || strings.Contains(err.Error(), ":s") {
			t.Errorf("error shows the secret: %v", err)
		}
	}
}
