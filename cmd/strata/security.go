package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/remoting"
)

// ACL and TLS settings of the node (YAML, `strata dev` flags) and of the client commands
// (global flags and STRATA_* variables).

// securityConfig sets the broker's ACL, TLS and HTTP settings from the node config.
func (c NodeConfig) securityConfig(bc *broker.Config) error {
	bc.ACLEnabled = c.ACL.Enabled
	bc.ACL.PublicRoutes = c.ACL.PublicRoutes
	bc.ACL.FailureLogInterval = c.ACL.FailureLogInterval.duration()
	bc.ACL.MaxSignatureAge = c.ACL.MaxSignatureAge.duration()
	bc.ACL.MinSecretKeyBytes = c.ACL.MinSecretKeyBytes
	if (c.ACL.AdminAccessKey == "") != (c.ACL.AdminSecretKey == "") {
		return errors.New("acl: set both admin_access_key and admin_secret_key (STRATA_ACL_ADMIN_SECRET_KEY keeps the secret out of the file), or neither")
	}
	if c.ACL.Enabled {
		bc.ACLAdmin = remoting.Credentials{AccessKey: c.ACL.AdminAccessKey, SecretKey: c.ACL.AdminSecretKey}
	}
	if c.TLS.Enabled {
		bc.TLS = &remoting.ServerTLSConfig{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, ClientCAFile: c.TLS.ClientCAFile,
			ClientAuth: remoting.ClientAuth(c.TLS.ClientAuth), Permissive: c.TLS.Permissive, ReloadCheck: c.TLS.ReloadCheck.duration()}
	} else if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
		return errors.New("tls: certificate files are set but tls.enabled is false; set it to true (or drop the files)")
	}
	bc.HTTP = broker.HTTPConfig{Pprof: c.HTTP.Pprof, AdminToken: c.HTTP.AdminToken, ProtectReads: c.HTTP.ProtectReads}
	return nil
}

// reloadTLSOnHangup reads the broker's certificate files again on each SIGHUP (they are also
// read again when they change); the returned function stops listening.
func reloadTLSOnHangup(b *broker.Broker) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-hup:
				if err := b.ReloadTLS(); err != nil {
					slog.Error("SIGHUP: TLS certificates not reloaded; still serving the previous ones", "err", err)
				} else {
					slog.Info("SIGHUP: TLS certificates reloaded")
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		wg.Wait()
	}
}

// httpScheme is the HTTP listener's scheme for the ready line.
func httpScheme(bc broker.Config) string {
	if bc.TLS != nil {
		return "https"
	}
	return "http"
}

// nodeSecurityFlags are `strata dev`'s ACL, TLS and HTTP flags.
type nodeSecurityFlags struct {
	acl, publicRoutes, pprof, permissive   bool
	admin, cert, key, clientCA, clientAuth string
	adminToken                             string
}

func addNodeSecurityFlags(fs *pflag.FlagSet) *nodeSecurityFlags {
	f := &nodeSecurityFlags{}
	fs.BoolVar(&f.acl, "acl", false, "check every request against ACL accounts (RocketMQ signatures and plain-ACL permissions)")
	fs.StringVar(&f.admin, "acl-admin", "", "with --acl: an admin account AK:SK made sure of at start (env STRATA_ACL_ADMIN)")
	fs.BoolVar(&f.publicRoutes, "acl-public-routes", true, "with --acl: answer route lookups without checking their signature, so refused clients see the broker's reason")
	fs.StringVar(&f.cert, "tls-cert", "", "serve every listener over TLS with this PEM certificate (reloaded when the file changes, or on SIGHUP)")
	fs.StringVar(&f.key, "tls-key", "", "the PEM key of --tls-cert")
	fs.StringVar(&f.clientCA, "tls-client-ca", "", "PEM CAs client certificates are verified against")
	fs.StringVar(&f.clientAuth, "tls-client-auth", "none", "client certificates: none, verify_if_given or require (mTLS)")
	fs.BoolVar(&f.permissive, "tls-permissive", false, "admit plain connections on the TLS ports too")
	fs.BoolVar(&f.pprof, "pprof", false, "serve /debug/pprof/ on the HTTP listener")
	fs.StringVar(&f.adminToken, "http-admin-token", "", "bearer token of the HTTP admin endpoints; env STRATA_HTTP_ADMIN_TOKEN")
	return f
}

func (f *nodeSecurityFlags) apply(nc *NodeConfig) error {
	nc.ACL.Enabled, nc.ACL.PublicRoutes = f.acl, f.publicRoutes
	admin := f.admin
	if admin == "" {
		admin = os.Getenv("STRATA_ACL_ADMIN")
	}
	if admin != "" {
		if !f.acl {
			return errors.New("--acl-admin needs --acl")
		}
		ak, sk, ok := strings.Cut(admin, ":")
		if !ok || ak == "" || sk == "" {
			return fmt.Errorf("--acl-admin %q: want ACCESS_KEY:SECRET_KEY", redactAdmin(admin))
		}
		nc.ACL.AdminAccessKey, nc.ACL.AdminSecretKey = ak, sk
	}
	if f.cert != "" || f.key != "" {
		nc.TLS = TLSYAML{Enabled: true, CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA, ClientAuth: f.clientAuth, Permissive: f.permissive}
	} else if f.clientCA != "" || f.permissive {
		return errors.New("--tls-client-ca and --tls-permissive need --tls-cert and --tls-key")
	}
	token := f.adminToken
	if token == "" {
		token = os.Getenv("STRATA_HTTP_ADMIN_TOKEN") // not the flag's default: -h would print it
	}
	nc.HTTP = HTTPYAML{Pprof: f.pprof, AdminToken: token}
	return nil
}

// redactAdmin shows an AK:SK argument without its secret.
func redactAdmin(s string) string {
	if ak, _, ok := strings.Cut(s, ":"); ok {
		return ak + ":…"
	}
	return "…"
}

// clientSecurity is how the client commands sign and dial: the root's persistent flags
// (globalOptions) over STRATA_* variables.
type clientSecurity struct {
	AccessKey, SecretKey string
	TLS                  bool
	CA, Cert, Key        string
	ServerName           string
	Insecure             bool

	once    sync.Once
	tlsConf *tls.Config
	tlsErr  error
}

// cliSecurity is what the global flags and the environment gave the command that runs.
var cliSecurity = &clientSecurity{}

const securityUsage = `Global flags of the client commands (before the command name, or among its flags):
  --access-key AK --secret-key SK   sign requests as an ACL account (env STRATA_ACCESS_KEY, STRATA_SECRET_KEY)
  --tls [--ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--tls-insecure]
                                    dial brokers over TLS (env STRATA_TLS=true, STRATA_TLS_CA, STRATA_TLS_CERT, STRATA_TLS_KEY)
  --namesrv ADDR                    the name server (env STRATA_NAMESRV)
  --format text|json                output of the tabular commands (env STRATA_FORMAT)
In ` + "`strata acl`" + ` --access-key names the account managed: put the signing keys before "acl" or in the environment.`

func securityFromEnv(getenv func(string) string) *clientSecurity {
	s := &clientSecurity{AccessKey: getenv("STRATA_ACCESS_KEY"), SecretKey: getenv("STRATA_SECRET_KEY"),
		CA: getenv("STRATA_TLS_CA"), Cert: getenv("STRATA_TLS_CERT"), Key: getenv("STRATA_TLS_KEY"), ServerName: getenv("STRATA_TLS_SERVER_NAME")}
	s.TLS, _ = strconv.ParseBool(getenv("STRATA_TLS"))
	s.Insecure, _ = strconv.ParseBool(getenv("STRATA_TLS_INSECURE"))
	return s
}

// globalOptions are the root's persistent flags: every client command takes them, before
// its name or among its own flags.
type globalOptions struct {
	fs                        *pflag.FlagSet
	namesrv, format           string
	ak, sk                    string
	tls, insecure             bool
	ca, cert, key, serverName string
}

var globals = &globalOptions{}

func (g *globalOptions) register(fs *pflag.FlagSet) {
	g.fs = fs
	fs.StringVar(&g.namesrv, "namesrv", "", "name-server address (env STRATA_NAMESRV; default "+defaultNamesrv+")")
	fs.StringVar(&g.format, "format", "", "output of tabular commands: text or json (env STRATA_FORMAT; default text)")
	fs.StringVar(&g.ak, "access-key", "", "sign requests as this ACL account (env STRATA_ACCESS_KEY)")
	fs.StringVar(&g.sk, "secret-key", "", "the secret key of --access-key (env STRATA_SECRET_KEY)")
	fs.BoolVar(&g.tls, "tls", false, "dial brokers over TLS (env STRATA_TLS=true)")
	fs.StringVar(&g.ca, "ca", "", "PEM CAs the brokers' certificates are checked against; implies --tls (env STRATA_TLS_CA; default the system's)")
	fs.StringVar(&g.cert, "tls-cert", "", "client certificate for brokers that require one; implies --tls (env STRATA_TLS_CERT)")
	fs.StringVar(&g.key, "tls-key", "", "the PEM key of --tls-cert (env STRATA_TLS_KEY)")
	fs.StringVar(&g.serverName, "tls-server-name", "", "name to verify in the brokers' certificates; implies --tls")
	fs.BoolVar(&g.insecure, "tls-insecure", false, "accept any broker certificate (as RocketMQ's Go client does); implies --tls")
}

// resolve sets cliSecurity, the name server and the output format from the flags given and
// the environment.
func (g *globalOptions) resolve(*cobra.Command) error {
	changed := func(name string) bool { f := g.fs.Lookup(name); return f != nil && f.Changed }
	s := securityFromEnv(os.Getenv)
	str := func(name, v string, dst *string, impliesTLS bool) {
		if changed(name) {
			*dst = v
			s.TLS = s.TLS || impliesTLS
		}
	}
	str("access-key", g.ak, &s.AccessKey, false)
	str("secret-key", g.sk, &s.SecretKey, false)
	if changed("tls") {
		s.TLS = g.tls
	}
	str("ca", g.ca, &s.CA, true)
	str("tls-cert", g.cert, &s.Cert, true)
	str("tls-key", g.key, &s.Key, true)
	str("tls-server-name", g.serverName, &s.ServerName, true)
	if changed("tls-insecure") {
		s.Insecure = g.insecure
		s.TLS = s.TLS || g.insecure
	}
	cliSecurity = s
	if !changed("namesrv") {
		g.namesrv = cmpOr(os.Getenv("STRATA_NAMESRV"), defaultNamesrv)
	}
	if !changed("format") {
		g.format = cmpOr(os.Getenv("STRATA_FORMAT"), "text")
	}
	if g.format != "text" && g.format != "json" {
		return usageError{fmt.Errorf("--format %q: want text or json", g.format)}
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// namesrvAddr is the name server the client commands dial.
func namesrvAddr() string { return cmpOr(globals.namesrv, defaultNamesrv) }

// jsonOutput says whether a tabular command prints JSON: --format json, or its own --json.
func jsonOutput(asJSON bool) bool { return asJSON || globals.format == "json" }

// takeLeadingGlobals applies the global flags written before the command name and returns the
// rest. cobra would parse them too, but with the command's flags, where `acl` has its own
// --access-key: `strata --access-key root --secret-key S acl user create --access-key app1`
// signs as root and creates app1.
func takeLeadingGlobals(fs *pflag.FlagSet, args []string) ([]string, error) {
	for len(args) > 0 {
		a := args[0]
		if !strings.HasPrefix(a, "--") || a == "--" {
			return args, nil
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		f := fs.Lookup(name)
		if f == nil {
			return args, nil
		}
		used := 1
		if !hasVal {
			switch {
			case f.NoOptDefVal != "":
				val = f.NoOptDefVal
			case len(args) > 1:
				val, used = args[1], 2
			default:
				return nil, fmt.Errorf("flag --%s needs a value", name)
			}
		}
		if err := fs.Set(name, val); err != nil {
			return nil, fmt.Errorf("flag --%s=%q: %v", name, val, err)
		}
		args = args[used:]
	}
	return args, nil
}

func (s *clientSecurity) credentials() (ak, sk string, err error) {
	if (s.AccessKey == "") != (s.SecretKey == "") {
		return "", "", errors.New("set both --access-key and --secret-key (or STRATA_ACCESS_KEY and STRATA_SECRET_KEY), or neither")
	}
	return s.AccessKey, s.SecretKey, nil
}

// tlsConfig is the client TLS configuration, nil without --tls.
func (s *clientSecurity) tlsConfig() (*tls.Config, error) {
	if !s.TLS {
		return nil, nil
	}
	s.once.Do(func() {
		s.tlsConf, s.tlsErr = remoting.ClientTLSConfig{CAFile: s.CA, CertFile: s.Cert, KeyFile: s.Key,
			ServerName: s.ServerName, InsecureSkipVerify: s.Insecure}.Load()
	})
	return s.tlsConf, s.tlsErr
}

// clientOptions are the options of broker/client.Dial.
func (s *clientSecurity) clientOptions() ([]client.Option, error) {
	ak, sk, err := s.credentials()
	if err != nil {
		return nil, err
	}
	var opts []client.Option
	if ak != "" {
		opts = append(opts, client.WithCredentials(ak, sk))
	}
	conf, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	if conf != nil {
		opts = append(opts, client.WithTLS(conf))
	}
	return opts, nil
}

// dialClient is client.Dial with the command's credentials and TLS.
func dialClient(ctx context.Context, namesrv string) (*client.Client, error) {
	opts, err := cliSecurity.clientOptions()
	if err != nil {
		return nil, err
	}
	c, err := client.Dial(ctx, namesrv, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w; `make run` (or ./bin/strata dev) starts one on %s, and --namesrv or STRATA_NAMESRV points the CLI elsewhere", err, defaultNamesrv)
	}
	return c, nil
}

// dialBroker opens a raw connection to a broker with the command's credentials and TLS.
func dialBroker(ctx context.Context, addr string, timeout time.Duration) (*remoting.Client, error) {
	cfg, err := cliSecurity.remotingConfig(remoting.ClientConfig{DialTimeout: timeout})
	if err != nil {
		return nil, err
	}
	return remoting.Dial(ctx, addr, cfg)
}

// httpGet GETs path from a broker's HTTP listener: https with --tls, and the access and
// secret keys as basic auth when given (endpoints behind http.protect_reads take an admin's).
func (s *clientSecurity) httpGet(ctx context.Context, addr, path string) (*http.Response, error) {
	conf, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	scheme, client := "http", http.DefaultClient
	if conf != nil {
		scheme, client = "https", &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return nil, err
	}
	if s.AccessKey != "" {
		req.SetBasicAuth(s.AccessKey, s.SecretKey)
	}
	return client.Do(req)
}

// remotingConfig adds the credentials and TLS to a raw connection's configuration.
func (s *clientSecurity) remotingConfig(base remoting.ClientConfig) (remoting.ClientConfig, error) {
	ak, sk, err := s.credentials()
	if err != nil {
		return base, err
	}
	if ak != "" {
		base.Credentials = remoting.Credentials{AccessKey: ak, SecretKey: sk, BindRequest: true}
	}
	if base.TLS, err = s.tlsConfig(); err != nil {
		return base, err
	}
	return base, nil
}

// producerOptions and consumerOptions give the official client the credentials and TLS (it
// does not verify the broker's certificate: the --ca of the other commands does not apply).
func (s *clientSecurity) producerOptions() []producer.Option {
	var opts []producer.Option
	if s.AccessKey != "" {
		opts = append(opts, producer.WithCredentials(primitive.Credentials{AccessKey: s.AccessKey, SecretKey: s.SecretKey}))
	}
	if s.TLS {
		opts = append(opts, producer.WithTls(true))
	}
	return opts
}

func (s *clientSecurity) consumerOptions() []consumer.Option {
	var opts []consumer.Option
	if s.AccessKey != "" {
		opts = append(opts, consumer.WithCredentials(primitive.Credentials{AccessKey: s.AccessKey, SecretKey: s.SecretKey}))
	}
	if s.TLS {
		opts = append(opts, consumer.WithTls(true))
	}
	return opts
}
