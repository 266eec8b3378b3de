package acl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
)

// Management requests (every one needs an admin account; Check has admitted the request
// before ServeAdmin sees it). RocketMQ's codes where they fit, with their header fields:
//
//	50 UPDATE_AND_CREATE_ACL_CONFIG   accessKey, secretKey, whiteRemoteAddress, admin,
//	                                  defaultTopicPerm, defaultGroupPerm, topicPerms and
//	                                  groupPerms ("t1=PUB,t2=SUB"). Creates the account, or
//	                                  updates the fields present (a list present replaces
//	                                  the account's list), as RocketMQ does. Strata
//	                                  extension: strataMode=create refuses an existing
//	                                  account, strataMode=update a missing one.
//	51 DELETE_ACL_CONFIG              accessKey
//	52 GET_BROKER_CLUSTER_ACL_INFO    answers version, allAclFileVersion, brokerName,
//	                                  brokerAddr, clusterName (RocketMQ's response header)
//	53 UPDATE_GLOBAL_WHITE_ADDRS_CONFIG globalWhiteAddrs (comma-separated patterns)
//	54 GET_BROKER_CLUSTER_ACL_CONFIG  body: {"globalWhiteAddrs":[...],"plainAccessConfigs":
//	                                  [{accessKey, admin, whiteRemoteAddress,
//	                                  defaultTopicPerm, defaultGroupPerm, topicPerms:
//	                                  ["t=PUB"], groupPerms}]} — RocketMQ's AclConfig
//	                                  without secretKey, which is never returned
//	9110 ACL_GRANT (Strata)           accessKey, topic or group, perm
//	9111 ACL_REVOKE (Strata)          accessKey, topic or group
//
// Each write is read back: the answer is sent once this broker's view holds it, so a client
// that goes on to use the account is not refused by the broker that confirmed it.

// ExtFields of the management requests.
const (
	ExtMode       = "strataMode" // create | update | "" (RocketMQ's create-or-update)
	ModeCreate    = "create"
	ModeUpdate    = "update"
	extTopic      = "topic"
	extGroup      = "group"
	extPerm       = "perm"
	extAccessKey  = "accessKey"
	extSecretKey  = "secretKey"
	extWhiteAddrs = "globalWhiteAddrs"
)

// readBackTimeout bounds the wait for this broker's view to show a write.
const readBackTimeout = 5 * time.Second

// ServeAdmin answers an ACL management request (IsManagementCode).
func (c *Checker) ServeAdmin(ctx context.Context, req *remoting.Command) *remoting.Command {
	if c.mc == nil {
		return remoting.NewResponse(req, remoting.RespSystemError, "acl: this checker has no metadata client")
	}
	var rev int64
	var err error
	switch req.Code {
	case remoting.CodeUpdateAndCreateACLConfig:
		rev, err = c.updateAccount(ctx, req)
	case remoting.CodeDeleteACLConfig:
		rev, err = c.deleteAccount(ctx, req)
	case remoting.CodeACLGrant, remoting.CodeACLRevoke:
		rev, err = c.grant(ctx, req)
	case remoting.CodeUpdateGlobalWhiteAddrsConfig:
		rev, err = c.setWhitelist(ctx, req)
	case remoting.CodeGetBrokerClusterACLInfo:
		return c.aclInfo(req)
	case remoting.CodeGetBrokerClusterACLConfig:
		return c.aclConfig(req)
	default:
		return remoting.NewNotSupportedResponse(req)
	}
	if err != nil {
		code := remoting.RespSystemError
		var bad *badRequest
		if errors.As(err, &bad) || errors.Is(err, meta.ErrNotFound) || errors.Is(err, meta.ErrExists) || errors.Is(err, meta.ErrInvalidName) {
			code = remoting.RespInvalidParameter
		}
		return remoting.NewResponse(req, code, err.Error())
	}
	by := ""
	if id, ok := IdentityFrom(ctx); ok {
		by = id.AccessKey
	}
	// An audit line: who changed which account (never a secret).
	c.cfg.Logger.Info("acl: change", "by", by, "request", remoting.RequestName(req.Code), "access_key", req.ExtFields[extAccessKey],
		"topic", req.ExtFields[extTopic], "group", req.ExtFields[extGroup], "revision", rev)
	wctx, cancel := context.WithTimeout(ctx, readBackTimeout)
	defer cancel()
	if err := c.view.WaitRevision(wctx, rev); err != nil {
		return remoting.NewResponse(req, remoting.RespSystemError, fmt.Sprintf("stored, but this broker has not seen the change yet: %v", err))
	}
	return remoting.NewResponse(req, remoting.RespSuccess, "")
}

// badRequest is a management request whose fields cannot be applied.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// validResourceName accepts RocketMQ's topic and group characters.
func validResourceName(kind, name string) error {
	if name == "" || len(name) > 255 {
		return badf("%s name %.40q must be 1..255 bytes", kind, name)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-' || r == '_' || r == '%' || r == '|' || r == '.' || r == ':':
		default:
			return badf("%s name %q has %q (allowed: letters, digits and -_%%|.:)", kind, name, r)
		}
	}
	return nil
}

// parsePermList reads RocketMQ's "name=PERM,name=PERM" lists.
func parsePermList(kind, s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, perm, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, badf("%s permission %q: want name=PERM", kind, item)
		}
		p, err := ParsePerm(perm)
		if err != nil {
			return nil, badf("%s %s: %v", kind, name, err)
		}
		if kind == "group" {
			name = strings.TrimPrefix(name, retryTopicPrefix)
		}
		if err := validResourceName(kind, name); err != nil {
			return nil, err
		}
		out[name] = p.String()
	}
	return out, nil
}

func (c *Checker) checkSecret(sk string) error {
	if len(sk) < c.cfg.MinSecretKeyBytes {
		return badf("the secret key must be at least %d bytes long", c.cfg.MinSecretKeyBytes)
	}
	if len(sk) > 1024 {
		return badf("the secret key must be at most 1024 bytes long")
	}
	return nil
}

// applyFields sets the fields present in ext on a.
func (c *Checker) applyFields(a *meta.ACLAccount, ext remoting.ExtFields) error {
	if sk, ok := ext[extSecretKey]; ok && sk != "" {
		if err := c.checkSecret(sk); err != nil {
			return err
		}
		a.SecretKey = sk
	}
	if v, ok := ext["admin"]; ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badf("admin=%q: want true or false", v)
		}
		a.Admin = b
	}
	if v, ok := ext["whiteRemoteAddress"]; ok {
		if _, err := ParseAddrMatcher(v); err != nil {
			return badf("whiteRemoteAddress: %v", err)
		}
		a.WhiteRemoteAddress = v
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"defaultTopicPerm", &a.DefaultTopicPerm}, {"defaultGroupPerm", &a.DefaultGroupPerm}} {
		if v, ok := ext[f.key]; ok && v != "" {
			p, err := ParsePerm(v)
			if err != nil {
				return badf("%s: %v", f.key, err)
			}
			*f.dst = p.String()
		}
	}
	if v, ok := ext["topicPerms"]; ok {
		m, err := parsePermList("topic", v)
		if err != nil {
			return err
		}
		a.TopicPerms = m
	}
	if v, ok := ext["groupPerms"]; ok {
		m, err := parsePermList("group", v)
		if err != nil {
			return err
		}
		a.GroupPerms = m
	}
	return nil
}

func (c *Checker) updateAccount(ctx context.Context, req *remoting.Command) (int64, error) {
	ext := req.ExtFields
	ak := ext[extAccessKey]
	if err := meta.ValidateAccessKey(ak); err != nil {
		return 0, err
	}
	mode := ext[ExtMode]
	if mode != "" && mode != ModeCreate && mode != ModeUpdate {
		return 0, badf("%s=%q: want create or update", ExtMode, mode)
	}
	if id, ok := IdentityFrom(ctx); ok && id.AccessKey == ak {
		if v, ok := ext["admin"]; ok && v != "" && v != "true" {
			return 0, badf("access key %q cannot take away its own admin right; do it signed as another admin", ak)
		}
	}
	for attempt := 0; ; attempt++ {
		if mode != ModeCreate {
			a, err := c.mc.UpdateACLAccount(ctx, ak, func(a *meta.ACLAccount) error { return c.applyFields(a, ext) })
			if err == nil {
				return a.Revision, nil
			}
			if !errors.Is(err, meta.ErrNotFound) || mode == ModeUpdate {
				if errors.Is(err, meta.ErrNotFound) {
					return 0, badf("no ACL account %q; create it with `strata acl user create --access-key %s --secret-key ...`", ak, ak)
				}
				return 0, err
			}
		}
		a := meta.ACLAccount{AccessKey: ak, DefaultTopicPerm: DefaultDefaultTopicPerm.String(), DefaultGroupPerm: DefaultDefaultGroupPerm.String()}
		if ext[extSecretKey] == "" {
			return 0, badf("a new account needs a secret key")
		}
		if err := c.applyFields(&a, ext); err != nil {
			return 0, err
		}
		rev, err := c.mc.CreateACLAccount(ctx, a)
		if errors.Is(err, meta.ErrExists) {
			if mode == ModeCreate {
				return 0, badf("ACL account %q exists already; change it with `strata acl user update`", ak)
			}
			if attempt < 3 {
				continue // created meanwhile: update it instead
			}
		}
		return rev, err
	}
}

func (c *Checker) deleteAccount(ctx context.Context, req *remoting.Command) (int64, error) {
	ak := req.ExtFields[extAccessKey]
	if err := meta.ValidateAccessKey(ak); err != nil {
		return 0, err
	}
	if id, ok := IdentityFrom(ctx); ok && id.AccessKey == ak {
		return 0, badf("access key %q cannot delete itself; do it signed as another admin", ak)
	}
	rev, err := c.mc.DeleteACLAccount(ctx, ak)
	if errors.Is(err, meta.ErrNotFound) {
		return 0, badf("no ACL account %q", ak)
	}
	return rev, err
}

func (c *Checker) grant(ctx context.Context, req *remoting.Command) (int64, error) {
	ext := req.ExtFields
	ak := ext[extAccessKey]
	if err := meta.ValidateAccessKey(ak); err != nil {
		return 0, err
	}
	topic, group := ext[extTopic], strings.TrimPrefix(ext[extGroup], retryTopicPrefix)
	if (topic == "") == (group == "") {
		return 0, badf("name either a topic or a group")
	}
	kind, name := "topic", topic
	if group != "" {
		kind, name = "group", group
	}
	if err := validResourceName(kind, name); err != nil {
		return 0, err
	}
	var perm string
	if req.Code == remoting.CodeACLGrant {
		p, err := ParsePerm(ext[extPerm])
		if err != nil {
			return 0, badf("%v", err)
		}
		perm = p.String()
	}
	a, err := c.mc.UpdateACLAccount(ctx, ak, func(a *meta.ACLAccount) error {
		m := &a.TopicPerms
		if kind == "group" {
			m = &a.GroupPerms
		}
		if *m == nil {
			*m = map[string]string{}
		}
		if perm == "" {
			delete(*m, name)
		} else {
			(*m)[name] = perm
		}
		return nil
	})
	if errors.Is(err, meta.ErrNotFound) {
		return 0, badf("no ACL account %q; create it with `strata acl user create --access-key %s --secret-key ...`", ak, ak)
	}
	return a.Revision, err
}

func (c *Checker) setWhitelist(ctx context.Context, req *remoting.Command) (int64, error) {
	raw := req.ExtFields[extWhiteAddrs]
	if _, err := ParseAddrMatcher(raw); err != nil {
		return 0, badf("globalWhiteAddrs: %v", err)
	}
	return c.mc.SetACLWhitelist(ctx, splitPatterns(raw))
}

// dataVersion is RocketMQ's DataVersion JSON.
func dataVersion(rev int64) string {
	b, _ := json.Marshal(map[string]int64{"timestamp": time.Now().UnixMilli(), "counter": rev})
	return string(b)
}

func (c *Checker) aclInfo(req *remoting.Command) *remoting.Command {
	snap, _ := c.src.Current()
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	v := dataVersion(snap.Revision)
	resp.ExtFields["version"] = v
	all, _ := json.Marshal(map[string]json.RawMessage{"etcd": json.RawMessage(v)})
	resp.ExtFields["allAclFileVersion"] = string(all)
	resp.ExtFields["brokerName"] = c.cfg.BrokerName
	resp.ExtFields["brokerAddr"] = c.cfg.BrokerAddr
	resp.ExtFields["clusterName"] = c.cfg.ClusterName
	return resp
}

// AccountView is an account as management answers show it: everything but the secret key.
type AccountView struct {
	AccessKey          string   `json:"accessKey"`
	Admin              bool     `json:"admin"`
	WhiteRemoteAddress string   `json:"whiteRemoteAddress"`
	DefaultTopicPerm   string   `json:"defaultTopicPerm"`
	DefaultGroupPerm   string   `json:"defaultGroupPerm"`
	TopicPerms         []string `json:"topicPerms"`
	GroupPerms         []string `json:"groupPerms"`
}

// ConfigView is GET_BROKER_CLUSTER_ACL_CONFIG's body.
type ConfigView struct {
	GlobalWhiteAddrs   []string      `json:"globalWhiteAddrs"`
	PlainAccessConfigs []AccountView `json:"plainAccessConfigs"`
}

func permList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (c *Checker) aclConfig(req *remoting.Command) *remoting.Command {
	snap, _ := c.src.Current()
	cv := ConfigView{GlobalWhiteAddrs: append([]string{}, snap.Whitelist...), PlainAccessConfigs: []AccountView{}}
	aks := make([]string, 0, len(snap.Accounts))
	for ak := range snap.Accounts {
		aks = append(aks, ak)
	}
	sort.Strings(aks)
	for _, ak := range aks {
		a := snap.Accounts[ak]
		cv.PlainAccessConfigs = append(cv.PlainAccessConfigs, AccountView{
			AccessKey: ak, Admin: a.Admin, WhiteRemoteAddress: a.WhiteRemoteAddress,
			DefaultTopicPerm: a.DefaultTopicPerm, DefaultGroupPerm: a.DefaultGroupPerm,
			TopicPerms: permList(a.TopicPerms), GroupPerms: permList(a.GroupPerms),
		})
	}
	body, err := json.Marshal(cv)
	if err != nil {
		return remoting.NewErrorResponse(req, remoting.RespSystemError, err)
	}
	resp := remoting.NewResponse(req, remoting.RespSuccess, "")
	resp.Body = body
	return resp
}

// EnsureAdmin makes sure an admin account ak with secret sk exists: created if missing, given
// sk and the admin right if present (the operator's configuration wins over changes made
// since).
func (c *Checker) EnsureAdmin(ctx context.Context, ak, sk string) error {
	if err := meta.ValidateAccessKey(ak); err != nil {
		return fmt.Errorf("acl admin account: %w", err)
	}
	if err := c.checkSecret(sk); err != nil {
		return fmt.Errorf("acl admin account %s: %w", ak, err)
	}
	a, err := c.mc.UpdateACLAccount(ctx, ak, func(a *meta.ACLAccount) error {
		a.SecretKey, a.Admin = sk, true
		return nil
	})
	rev := a.Revision
	if errors.Is(err, meta.ErrNotFound) {
		rev, err = c.mc.CreateACLAccount(ctx, meta.ACLAccount{AccessKey: ak, SecretKey: sk, Admin: true,
			DefaultTopicPerm: DefaultDefaultTopicPerm.String(), DefaultGroupPerm: DefaultDefaultGroupPerm.String()})
	}
	if err != nil {
		return fmt.Errorf("acl admin account %s: %w", ak, err)
	}
	return c.view.WaitRevision(ctx, rev)
}
