package acl

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
)

// Defaults of Config.
const (
	DefaultFailureLogInterval = 10 * time.Second
	DefaultMaxSignatureAge    = 5 * time.Minute
	DefaultMinSecretKeyBytes  = 6 // RocketMQ's minimum
	DefaultMaxFailureLogKeys  = 10000
	DefaultDefaultTopicPerm   = PermDeny // RocketMQ's sample plain_acl.yml
	DefaultDefaultGroupPerm   = PermSub
)

// Config configures a Checker.
type Config struct {
	// PublicRoutes answers route lookups (GET_ROUTEINFO_BY_TOPIC) without checking their
	// signature, as RocketMQ 4.x name servers do, so a client with a wrong or unknown key
	// gets the broker's refusal, which names the key, instead of "route info not found".
	// Routes reveal which broker serves a topic, not its messages. Off: route lookups are
	// checked like every other request.
	PublicRoutes bool
	// FailureLogInterval is how often, at most, refusals of one access key (or one address,
	// for unsigned requests) are logged; the line in between counts them. Default 10s.
	FailureLogInterval time.Duration
	// MaxFailureLogKeys bounds the keys the failure log keeps counts for. Default 10000.
	MaxFailureLogKeys int
	// MaxSignatureAge refuses a request whose StrataSignedAt (Strata's clients sign their
	// signing time) is further from now than this: a replay. Default 5m.
	MaxSignatureAge time.Duration
	// MinSecretKeyBytes is the shortest secret key an account may be given. Default 6.
	MinSecretKeyBytes int
	// ClusterName, BrokerName and BrokerAddr identify the broker in
	// GET_BROKER_CLUSTER_ACL_INFO answers.
	ClusterName, BrokerName, BrokerAddr string
	// Logger receives refusals (rate-limited) and account table problems.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.FailureLogInterval == 0 {
		c.FailureLogInterval = DefaultFailureLogInterval
	}
	if c.MaxFailureLogKeys == 0 {
		c.MaxFailureLogKeys = DefaultMaxFailureLogKeys
	}
	if c.MaxSignatureAge == 0 {
		c.MaxSignatureAge = DefaultMaxSignatureAge
	}
	if c.MinSecretKeyBytes == 0 {
		c.MinSecretKeyBytes = DefaultMinSecretKeyBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FailureLogInterval < 0 || c.MaxFailureLogKeys < 0 || c.MaxSignatureAge < 0 || c.MinSecretKeyBytes < 1 {
		return errors.New("acl config: intervals, limits and the minimum secret length must be positive")
	}
	return nil
}

// Source is where a Checker reads accounts from: meta.ACLView.
type Source interface {
	Current() (*meta.ACLSnapshot, <-chan struct{})
}

// Checker verifies signatures and permissions of requests against the accounts in etcd. It
// is safe for concurrent use.
type Checker struct {
	cfg   Config
	src   Source
	mc    *meta.Client  // for ServeAdmin's writes; nil in tests of the decision alone
	view  *meta.ACLView // owned when New made it
	mu    sync.Mutex    // serialises compiling
	state atomic.Pointer[state]
	fails *failureLog
	now   func() time.Time
}

// New loads the accounts from etcd, starts watching them, and returns a Checker; Close stops
// the watch.
func New(ctx context.Context, cfg Config, mc *meta.Client) (*Checker, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	view, err := mc.NewACLView(ctx)
	if err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	c := newChecker(cfg, view)
	c.mc, c.view = mc, view
	return c, nil
}

func newChecker(cfg Config, src Source) *Checker {
	c := &Checker{cfg: cfg, src: src, now: time.Now}
	c.fails = newFailureLog(cfg.FailureLogInterval, cfg.MaxFailureLogKeys, cfg.Logger)
	return c
}

// Close stops watching the accounts; idempotent.
func (c *Checker) Close() error {
	if c.view != nil {
		return c.view.Close()
	}
	return nil
}

// state is the compiled account table of one snapshot.
type state struct {
	snap     *meta.ACLSnapshot
	accounts map[string]*account
	white    AddrMatcher
}

type account struct {
	accessKey          string
	secret             []byte
	admin              bool
	white              AddrMatcher
	defTopic, defGroup Perm
	topics, groups     map[string]Perm
	macs               sync.Pool // hash.Hash keyed with secret
}

func (a *account) mac() hash.Hash {
	if h, ok := a.macs.Get().(hash.Hash); ok {
		h.Reset()
		return h
	}
	return hmac.New(sha1.New, a.secret)
}

// current returns the compiled state of the source's latest snapshot.
func (c *Checker) current() *state {
	snap, _ := c.src.Current()
	if st := c.state.Load(); st != nil && st.snap == snap {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.state.Load(); st != nil && st.snap == snap {
		return st
	}
	st := c.compile(snap)
	c.state.Store(st)
	return st
}

// compile turns a snapshot into lookups. A value that does not parse fails closed: a bad
// permission is DENY, a bad whitelist admits no one, and it is logged once per snapshot.
func (c *Checker) compile(snap *meta.ACLSnapshot) *state {
	st := &state{snap: snap, accounts: make(map[string]*account, len(snap.Accounts))}
	var err error
	if st.white, err = ParseAddrMatcherList(snap.Whitelist); err != nil {
		c.cfg.Logger.Error("acl: the global whitelist in etcd does not parse; it admits no one until fixed", "err", err.Error())
		st.white = AddrMatcher{}
	}
	for _, k := range snap.Undecodable {
		c.cfg.Logger.Error("acl: an ACL record in etcd does not decode; its account is refused until fixed", "key", k)
	}
	for ak, ma := range snap.Accounts {
		a, problems := compileAccount(ma)
		for _, p := range problems {
			c.cfg.Logger.Error("acl: account in etcd has a bad value; it is read as DENY (or no whitelist)", "access_key", ak, "problem", p)
		}
		st.accounts[ak] = a
	}
	return st
}

func compileAccount(ma meta.ACLAccount) (*account, []string) {
	var problems []string
	perm := func(what, s string, def Perm) Perm {
		if s == "" {
			return def
		}
		p, err := ParsePerm(s)
		if err != nil {
			problems = append(problems, what+": "+err.Error())
			return PermDeny
		}
		return p
	}
	a := &account{accessKey: ma.AccessKey, secret: []byte(ma.SecretKey), admin: ma.Admin,
		topics: make(map[string]Perm, len(ma.TopicPerms)), groups: make(map[string]Perm, len(ma.GroupPerms))}
	a.defTopic = perm("defaultTopicPerm", ma.DefaultTopicPerm, DefaultDefaultTopicPerm)
	a.defGroup = perm("defaultGroupPerm", ma.DefaultGroupPerm, DefaultDefaultGroupPerm)
	for t, s := range ma.TopicPerms {
		a.topics[t] = perm("topic "+t, s, PermDeny)
	}
	for g, s := range ma.GroupPerms {
		a.groups[g] = perm("group "+g, s, PermDeny)
	}
	var err error
	if a.white, err = ParseAddrMatcher(ma.WhiteRemoteAddress); err != nil {
		problems = append(problems, "whiteRemoteAddress: "+err.Error())
		a.white = AddrMatcher{}
	}
	return a, problems
}

// allows reports whether the account may act on r: an explicit entry for the topic or group
// decides; otherwise the account's default does, except that admin accounts are allowed
// whatever is not explicitly listed.
func (a *account) allows(r Resource) bool {
	m := a.topics
	def := a.defTopic
	if r.Group {
		m, def = a.groups, a.defGroup
	}
	owned, ok := m[r.Name]
	if !ok {
		if a.admin {
			return true
		}
		owned = def
	}
	return allows(owned, r.Perm)
}

// Identity is who a checked request acts as; the broker's handlers find it in the request's
// context.
type Identity struct {
	// AccessKey is the account; empty for a whitelisted request without one.
	AccessKey string
	Admin     bool
	// Whitelisted requests came from an address on the global whitelist: every topic and
	// group, nothing that needs admin.
	Whitelisted bool
	acct        *account
}

type identityKey struct{}

// IdentityFrom returns the identity Check put into ctx.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok
}

// DeniedError is a refusal; Remark is what the client is told.
type DeniedError struct{ Remark string }

func (e *DeniedError) Error() string { return e.Remark }

// Authorize checks a permission the handler found out about itself, for a request Check
// admitted: SUB on the topic of a message read by commit-log offset, say.
func (c *Checker) Authorize(ctx context.Context, r Resource) error {
	id, ok := IdentityFrom(ctx)
	if !ok {
		return &DeniedError{Remark: "No permission: the request was not checked against the ACL"}
	}
	if id.Whitelisted || id.acct.allows(r) {
		return nil
	}
	return &DeniedError{Remark: noPermission(id.AccessKey, r)}
}

func noPermission(ak string, r Resource) string {
	kind := "topic"
	if r.Group {
		kind = "group"
	}
	perm := r.Perm.String()
	if strings.Contains(perm, "|") {
		perm = "'" + perm + "'" // a shell pipe otherwise
	}
	return fmt.Sprintf("No permission: access key %q needs %s on %s; an admin grants it with `strata acl grant --access-key %s --%s %s --perm %s`",
		ak, r.Perm, r, ak, kind, r.Name, perm)
}

// Check verifies req from remote on role's listener. It returns the context for the
// handler, carrying the request's Identity, and nil; or a NO_PERMISSION (or, for a body the
// check cannot read, INVALID_PARAMETER) answer to send instead of serving it.
func (c *Checker) Check(ctx context.Context, role Role, remote net.Addr, req *remoting.Command) (context.Context, *remoting.Command) {
	st := c.current()
	need, err := Requirements(role, req, c.cfg.PublicRoutes)
	if err != nil {
		return ctx, remoting.NewResponse(req, remoting.RespInvalidParameter, err.Error())
	}
	if need.Public {
		return ctx, nil
	}
	ip := remoteIP(remote)
	if !need.Admin && st.white.Match(ip) {
		return context.WithValue(ctx, identityKey{}, &Identity{AccessKey: req.ExtFields[remoting.ExtAccessKey], Whitelisted: true}), nil
	}
	id, remark := c.authenticate(st, ip, req)
	if remark == "" {
		remark = c.authorize(id, need, req)
	}
	if remark != "" {
		c.fails.record(req.ExtFields[remoting.ExtAccessKey], ip, req.Code, remark)
		return ctx, remoting.NewResponse(req, remoting.RespNoPermission, remark)
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

// authenticate finds the request's account and checks its signature; remark says why not.
func (c *Checker) authenticate(st *state, ip netip.Addr, req *remoting.Command) (*Identity, string) {
	ext := req.ExtFields
	ak := ext[remoting.ExtAccessKey]
	if ak == "" {
		return nil, "No permission: ACL is on and the request carries no AccessKey; sign requests with an access key and secret key " +
			"(RocketMQ clients: WithCredentials; strata: STRATA_ACCESS_KEY and STRATA_SECRET_KEY)"
	}
	a, ok := st.accounts[ak]
	if !ok {
		return nil, fmt.Sprintf("unknown access key %q; an admin creates it with `strata acl user create --access-key %s --secret-key ...`", ak, ak)
	}
	id := &Identity{AccessKey: ak, Admin: a.admin, acct: a}
	if a.white.Match(ip) {
		return id, "" // the account's own whitelist: no signature needed
	}
	sig, ok := ext[remoting.ExtSignature]
	if !ok || sig == "" {
		return nil, fmt.Sprintf("request of access key %q carries no Signature; sign it with the account's secret key", ak)
	}
	if !a.verify(req, sig) {
		return nil, fmt.Sprintf("signature mismatch for access key %q: check the secret key", ak)
	}
	if remark := c.checkBinding(ak, req); remark != "" {
		return nil, remark
	}
	return id, ""
}

// checkBinding refuses a signature Strata's clients bound to another request code or to a
// time long past (remoting.Credentials.BindRequest).
func (c *Checker) checkBinding(ak string, req *remoting.Command) string {
	ext := req.ExtFields
	if v, ok := ext[remoting.ExtStrataCode]; ok && v != strconv.Itoa(int(req.Code)) {
		return fmt.Sprintf("signature of access key %q was made for request code %s, not %d: refused as a replayed request", ak, v, req.Code)
	}
	if v, ok := ext[remoting.ExtStrataSignedAt]; ok {
		ms, err := strconv.ParseInt(v, 10, 64)
		age := c.now().Sub(time.UnixMilli(ms))
		if err != nil || age > c.cfg.MaxSignatureAge || -age > c.cfg.MaxSignatureAge {
			return fmt.Sprintf("signature of access key %q was made at %s, more than %s from the broker's clock: refused as a replayed request; check the client's clock",
				ak, v, c.cfg.MaxSignatureAge)
		}
	}
	return ""
}

// verify checks sig against the request under the account's secret. RocketMQ's broker
// signs every extField but Signature and _UNIQUE_KEY_QUERY; two clients differ, and are
// accepted too: Java clients since 5.x sign _UNIQUE_KEY_QUERY, and the Go client sends a
// SecurityToken without signing it (go: internal/remote/interceptor.go).
func (a *account) verify(req *remoting.Command, sig string) bool {
	// Decode writes up to DecodedLen(len(sig)) bytes: check the length before decoding.
	var want [sha1.Size + 3]byte
	if len(sig) != base64.StdEncoding.EncodedLen(sha1.Size) {
		return false
	}
	if n, err := base64.StdEncoding.Decode(want[:], []byte(sig)); err != nil || n != sha1.Size {
		return false
	}
	mac := a.mac()
	defer a.macs.Put(mac)
	var got [sha1.Size]byte
	try := func(skip func(string) bool) bool {
		mac.Reset()
		remoting.WriteSignedContent(mac, req.ExtFields, req.Body, skip)
		return hmac.Equal(mac.Sum(got[:0]), want[:sha1.Size])
	}
	if try(remoting.SkipSignature) {
		return true
	}
	ext := req.ExtFields
	if _, ok := ext[remoting.ExtUniqueKeyQuery]; ok && try(skipOnlySignature) {
		return true
	}
	if _, ok := ext[remoting.ExtSecurityToken]; ok && try(skipSignatureAndToken) {
		return true
	}
	return false
}

func skipOnlySignature(k string) bool { return k == remoting.ExtSignature }

func skipSignatureAndToken(k string) bool {
	return remoting.SkipSignature(k) || k == remoting.ExtSecurityToken
}

// authorize checks admin and the resources; remark says what is missing.
func (c *Checker) authorize(id *Identity, need Requirement, req *remoting.Command) string {
	if need.Admin && !id.Admin {
		return fmt.Sprintf("No permission: access key %q needs admin for %s (request code %d)", id.AccessKey, remoting.RequestName(req.Code), req.Code)
	}
	for _, r := range need.Resources {
		if !id.acct.allows(r) {
			return noPermission(id.AccessKey, r)
		}
	}
	return ""
}

// VerifyAdminSecret checks an admin account's secret key given in the clear (HTTP basic
// auth to the broker's admin endpoints, over TLS where it matters).
func (c *Checker) VerifyAdminSecret(ak, sk string, from netip.Addr) error {
	st := c.current()
	a, ok := st.accounts[ak]
	if !ok || !hmac.Equal(sha1Sum(a.secret), sha1Sum([]byte(sk))) {
		remark := fmt.Sprintf("wrong access key %q or secret key", ak)
		c.fails.record(ak, from, 0, remark+" (HTTP)")
		return errors.New(remark)
	}
	if !a.admin {
		return fmt.Errorf("access key %q is not an admin account", ak)
	}
	return nil
}

func sha1Sum(b []byte) []byte {
	s := sha1.Sum(b)
	return s[:]
}

// remoteIP is the address of a connection's peer.
func remoteIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
