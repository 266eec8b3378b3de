package main

import (
	"strings"
	"testing"

	"github.com/stratamq/strata/broker/remoting"
)

// TestGlobalFlags checks the root's persistent flags wherever they are written, over the
// STRATA_* variables, and that `acl`'s own --access-key names the account while the one
// before "acl" signs.
func TestGlobalFlags(t *testing.T) {
	t.Setenv("STRATA_ACCESS_KEY", "env-ak")
	t.Setenv("STRATA_SECRET_KEY", "env-sk")
	t.Setenv("STRATA_NAMESRV", "")
	cases := []struct {
		args       []string
		path       string
		ak, sk, ca string
		tls        bool
		namesrv    string
	}{
		{[]string{"topic", "list"}, "strata topic list", "env-ak", "env-sk", "", false, defaultNamesrv},
		{[]string{"topic", "create", "--topic", "T", "--access-key", "a1", "--secret-key=s1", "--tls", "--ca", "/ca.pem", "--namesrv", "h:1"},
			"strata topic create", "a1", "s1", "/ca.pem", true, "h:1"},
		{[]string{"--access-key", "root", "--secret-key", "rs", "acl", "user", "create", "--access-key", "app1", "--secret-key", "app1-sk", "--tls"},
			"strata acl user create", "root", "rs", "", true, defaultNamesrv},
		{[]string{"--tls=false", "--namesrv=n:2", "consume", "--topic", "T"}, "strata consume", "env-ak", "env-sk", "", false, "n:2"},
		{[]string{"message", "get", "--id", "X", "--tls-key", "k.pem"}, "strata message get", "env-ak", "env-sk", "", true, defaultNamesrv},
	}
	for _, c := range cases {
		root := newRoot()
		args, err := takeLeadingGlobals(root.PersistentFlags(), c.args)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		cmd, rest, err := root.Find(args)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if err := globals.resolve(cmd); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		sec := cliSecurity
		if cmd.CommandPath() != c.path || sec.AccessKey != c.ak || sec.SecretKey != c.sk || sec.CA != c.ca || sec.TLS != c.tls || namesrvAddr() != c.namesrv {
			t.Errorf("%v: %q ak %q sk %q ca %q tls %v namesrv %q; want %q %q %q %q %v %q", c.args, cmd.CommandPath(),
				sec.AccessKey, sec.SecretKey, sec.CA, sec.TLS, namesrvAddr(), c.path, c.ak, c.sk, c.ca, c.tls, c.namesrv)
		}
		if c.path == "strata acl user create" {
			if v, _ := cmd.Flags().GetString("access-key"); v != "app1" {
				t.Errorf("acl user create manages %q, want app1", v)
			}
		}
	}
	if _, err := takeLeadingGlobals(newRoot().PersistentFlags(), []string{"--ca"}); err == nil || !strings.Contains(err.Error(), "--ca needs a value") {
		t.Fatalf("a value-less --ca: %v", err)
	}
	root := newRoot()
	if err := root.PersistentFlags().Set("format", "yaml"); err != nil {
		t.Fatal(err)
	}
	if err := globals.resolve(root); err == nil || !strings.Contains(err.Error(), "want text or json") {
		t.Fatalf("--format yaml: %v", err)
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
