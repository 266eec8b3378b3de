package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
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

func addNodeSecurityFlags(fs *flag.FlagSet) *nodeSecurityFlags {
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

// clientSecurity is how the client commands sign and dial: global flags, valid before the
// command name (`strata --tls acl user list`) or among a command's own flags, and STRATA_*
// variables.
//
//	--access-key AK, --secret-key SK   sign requests (STRATA_ACCESS_KEY, STRATA_SECRET_KEY);
//	                                   in `strata acl` they name the account managed, so
//	                                   there the signing keys go before the command name
//	                                   or in the environment
//	--tls                              dial TLS (STRATA_TLS=true)
//	--ca FILE                          CAs the brokers' certificates are checked against
//	                                   (STRATA_TLS_CA; default the system's)
//	--tls-cert FILE, --tls-key FILE    client certificate for brokers that require one
//	--tls-server-name NAME             name to verify in the certificates
//	--tls-insecure                     accept any certificate (as RocketMQ's Go client)
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

// cliSecurity is what main parsed for the command that runs.
var cliSecurity = &clientSecurity{}

const securityUsage = `Global flags of the client commands (before the command name, or among its flags):
  --access-key AK --secret-key SK   sign requests as an ACL account (env STRATA_ACCESS_KEY, STRATA_SECRET_KEY)
  --tls [--ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--tls-insecure]
                                    dial brokers over TLS (env STRATA_TLS=true, STRATA_TLS_CA, STRATA_TLS_CERT, STRATA_TLS_KEY)
In ` + "`strata acl`" + ` --access-key names the account managed: put the signing keys before "acl" or in the environment.`

func securityFromEnv(getenv func(string) string) *clientSecurity {
	s := &clientSecurity{AccessKey: getenv("STRATA_ACCESS_KEY"), SecretKey: getenv("STRATA_SECRET_KEY"),
		CA: getenv("STRATA_TLS_CA"), Cert: getenv("STRATA_TLS_CERT"), Key: getenv("STRATA_TLS_KEY"), ServerName: getenv("STRATA_TLS_SERVER_NAME")}
	s.TLS, _ = strconv.ParseBool(getenv("STRATA_TLS"))
	s.Insecure, _ = strconv.ParseBool(getenv("STRATA_TLS_INSECURE"))
	return s
}

// globalFlag is one flag clientSecurity takes.
type globalFlag struct {
	name   string
	isBool bool
	set    func(s *clientSecurity, v string) error
}

var globalFlags = []globalFlag{
	{"access-key", false, func(s *clientSecurity, v string) error { s.AccessKey = v; return nil }},
	{"secret-key", false, func(s *clientSecurity, v string) error { s.SecretKey = v; return nil }},
	{"tls", true, func(s *clientSecurity, v string) (err error) { s.TLS, err = strconv.ParseBool(v); return }},
	{"ca", false, func(s *clientSecurity, v string) error { s.CA, s.TLS = v, true; return nil }},
	{"tls-cert", false, func(s *clientSecurity, v string) error { s.Cert, s.TLS = v, true; return nil }},
	{"tls-key", false, func(s *clientSecurity, v string) error { s.Key, s.TLS = v, true; return nil }},
	{"tls-server-name", false, func(s *clientSecurity, v string) error { s.ServerName, s.TLS = v, true; return nil }},
	{"tls-insecure", true, func(s *clientSecurity, v string) (err error) {
		s.Insecure, err = strconv.ParseBool(v)
		s.TLS = s.TLS || s.Insecure
		return
	}},
}

// takeGlobalFlag reads args[i] as a global flag, if it is one of those allowed; it returns
// how many arguments it used (0: not a global flag).
func takeGlobalFlag(s *clientSecurity, args []string, i int, allowed func(string) bool) (int, error) {
	a := args[i]
	if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
		return 0, nil
	}
	name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
	for _, f := range globalFlags {
		if f.name != name || !allowed(name) {
			continue
		}
		used := 1
		switch {
		case hasVal:
		case f.isBool:
			val = "true"
		case i+1 < len(args):
			val, used = args[i+1], 2
		default:
			return 0, fmt.Errorf("flag --%s needs a value", name)
		}
		if err := f.set(s, val); err != nil {
			return 0, fmt.Errorf("flag --%s=%q: %v", name, val, err)
		}
		return used, nil
	}
	return 0, nil
}

// serverCommands take none of the client flags: they have their own.
var serverCommands = map[string]bool{"dev": true, "broker": true}

// splitArgs finds the command name after leading global flags and takes the global flags
// out of the command's arguments (in `acl`, all but --access-key and --secret-key).
func splitArgs(args []string, getenv func(string) string) (name string, rest []string, sec *clientSecurity, err error) {
	sec = securityFromEnv(getenv)
	all := func(string) bool { return true }
	i := 0
	for i < len(args) {
		n, err := takeGlobalFlag(sec, args, i, all)
		if err != nil {
			return "", nil, nil, err
		}
		if n == 0 {
			break
		}
		i += n
	}
	if i == len(args) {
		return "", nil, sec, nil
	}
	name = args[i]
	if serverCommands[name] {
		return name, args[i+1:], sec, nil
	}
	allowed := all
	if name == "acl" {
		allowed = func(f string) bool { return f != "access-key" && f != "secret-key" }
	}
	for j := i + 1; j < len(args); j++ {
		if args[j] == "--" {
			rest = append(rest, args[j:]...)
			break
		}
		n, err := takeGlobalFlag(sec, args, j, allowed)
		if err != nil {
			return "", nil, nil, err
		}
		if n == 0 {
			rest = append(rest, args[j])
			continue
		}
		j += n - 1
	}
	return name, rest, sec, nil
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
	return client.Dial(ctx, namesrv, opts...)
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
