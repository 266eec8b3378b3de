package acl

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
)

// staticSource serves one snapshot: the decision logic alone, without etcd.
type staticSource struct{ snap *meta.ACLSnapshot }

func (s *staticSource) Current() (*meta.ACLSnapshot, <-chan struct{}) { return s.snap, nil }

func testAccounts() *meta.ACLSnapshot {
	return &meta.ACLSnapshot{Revision: 1, Accounts: map[string]meta.ACLAccount{
		"app1": {AccessKey: "app1", SecretKey: "secret-app1", DefaultTopicPerm: "DENY", DefaultGroupPerm: "SUB",
			TopicPerms: map[string]string{"orders": "PUB", "events": "SUB", "both": "PUB|SUB"}, GroupPerms: map[string]string{"banned": "DENY"}},
		"root": {AccessKey: "root", SecretKey: "secret-root", Admin: true, TopicPerms: map[string]string{"vault": "DENY"}},
		"lan":  {AccessKey: "lan", SecretKey: "secret-lan", WhiteRemoteAddress: "10.1.1.*", TopicPerms: map[string]string{"orders": "SUB"}},
	}, Whitelist: []string{"192.168.7.7"}}
}

func newTestChecker(t testing.TB, snap *meta.ACLSnapshot, mutate func(*Config)) (*Checker, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	cfg := Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	return newChecker(cfg, &staticSource{snap}), &logs
}

var lan = &net.TCPAddr{IP: net.ParseIP("10.9.9.9"), Port: 4000}

func sendReq(topic string) *remoting.Command {
	return remoting.NewRequest(remoting.CodeSendMessage, remoting.ExtFields{
		"producerGroup": "pg", "topic": topic, "queueId": "0", "properties": "TAGS\x01a\x02", "bname": ""}, []byte("hello"))
}

func pullReq(topic, group string) *remoting.Command {
	return remoting.NewRequest(remoting.CodePullMessage, remoting.ExtFields{"topic": topic, "consumerGroup": group, "queueId": "1", "queueOffset": "0"}, nil)
}

func signed(req *remoting.Command, ak, sk string) *remoting.Command {
	remoting.Credentials{AccessKey: ak, SecretKey: sk}.Sign(req)
	return req
}

func TestCheckDecisions(t *testing.T) {
	c, _ := newTestChecker(t, testAccounts(), nil)
	cases := []struct {
		name   string
		role   Role
		remote net.Addr
		req    *remoting.Command
		code   int16  // 0: allowed
		remark string // substring of the refusal
	}{
		{"allowed publish", RoleBroker, lan, signed(sendReq("orders"), "app1", "secret-app1"), 0, ""},
		{"publish without PUB", RoleBroker, lan, signed(sendReq("events"), "app1", "secret-app1"), remoting.RespNoPermission,
			`No permission: access key "app1" needs PUB on topic events`},
		{"default topic perm DENY", RoleBroker, lan, signed(sendReq("other"), "app1", "secret-app1"), remoting.RespNoPermission,
			`access key "app1" needs PUB on topic other`},
		{"allowed subscribe, default group SUB", RoleBroker, lan, signed(pullReq("events", "g1"), "app1", "secret-app1"), 0, ""},
		{"denied group", RoleBroker, lan, signed(pullReq("events", "banned"), "app1", "secret-app1"), remoting.RespNoPermission,
			`needs SUB on group banned`},
		{"retry topic is the group", RoleBroker, lan, signed(pullReq("%RETRY%banned", "g1"), "app1", "secret-app1"), remoting.RespNoPermission,
			`needs SUB on group banned`},
		{"wrong secret", RoleBroker, lan, signed(sendReq("orders"), "app1", "not-the-secret"), remoting.RespNoPermission,
			`signature mismatch for access key "app1": check the secret key`},
		{"unknown key", RoleBroker, lan, signed(sendReq("orders"), "x", "whatever"), remoting.RespNoPermission, `unknown access key "x"`},
		{"no key", RoleBroker, lan, sendReq("orders"), remoting.RespNoPermission, "carries no AccessKey"},
		{"admin needed", RoleNameServer, lan, signed(remoting.NewRequest(remoting.CodeUpdateAndCreateTopic, remoting.ExtFields{"topic": "t"}, nil), "app1", "secret-app1"),
			remoting.RespNoPermission, `access key "app1" needs admin for create_topic (request code 17)`},
		{"admin allowed", RoleNameServer, lan, signed(remoting.NewRequest(remoting.CodeUpdateAndCreateTopic, remoting.ExtFields{"topic": "t"}, nil), "root", "secret-root"), 0, ""},
		{"admin is held by an explicit DENY", RoleBroker, lan, signed(sendReq("vault"), "root", "secret-root"), remoting.RespNoPermission, "needs PUB on topic vault"},
		{"admin may do what is not listed", RoleBroker, lan, signed(sendReq("anything"), "root", "secret-root"), 0, ""},
		{"global whitelist without keys", RoleBroker, &net.TCPAddr{IP: net.ParseIP("192.168.7.7")}, sendReq("anything"), 0, ""},
		{"global whitelist grants no admin", RoleBroker, &net.TCPAddr{IP: net.ParseIP("192.168.7.7")},
			remoting.NewRequest(remoting.CodeDeleteTopicInBroker, remoting.ExtFields{"topic": "t"}, nil), remoting.RespNoPermission, "carries no AccessKey"},
		{"account whitelist skips the signature", RoleBroker, &net.TCPAddr{IP: net.ParseIP("10.1.1.5")},
			remoting.NewRequest(remoting.CodePullMessage, remoting.ExtFields{"AccessKey": "lan", "topic": "orders", "consumerGroup": "g"}, nil), 0, ""},
		{"account whitelist keeps permissions", RoleBroker, &net.TCPAddr{IP: net.ParseIP("10.1.1.5")},
			remoting.NewRequest(remoting.CodeSendMessage, remoting.ExtFields{"AccessKey": "lan", "topic": "orders"}, nil), remoting.RespNoPermission, "needs PUB on topic orders"},
		{"account whitelist is per address", RoleBroker, lan,
			remoting.NewRequest(remoting.CodePullMessage, remoting.ExtFields{"AccessKey": "lan", "topic": "orders", "consumerGroup": "g"}, nil), remoting.RespNoPermission, "carries no Signature"},
		{"route lookup needs a signature by default", RoleNameServer, lan,
			remoting.NewRequest(remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "orders"}, nil), remoting.RespNoPermission, "carries no AccessKey"},
		{"route lookup with any valid key", RoleNameServer, lan,
			signed(remoting.NewRequest(remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "vault"}, nil), "app1", "secret-app1"), 0, ""},
		{"heartbeat subscriptions", RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeHeartBeat, nil,
			[]byte(`{"clientID":"c","consumerDataSet":[{"groupName":"g1","subscriptionDataSet":[{"topic":"events"},{"topic":"other"}]}]}`)), "app1", "secret-app1"),
			remoting.RespNoPermission, "needs SUB on topic other"},
		{"heartbeat of a producer", RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeHeartBeat, nil,
			[]byte(`{"clientID":"c","producerDataSet":[{"groupName":"pg"}],"consumerDataSet":[]}`)), "app1", "secret-app1"), 0, ""},
		{"heartbeat that is not JSON", RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeHeartBeat, nil, []byte(`{`)), "app1", "secret-app1"),
			remoting.RespInvalidParameter, "not valid JSON"},
		{"lock names its group in the body", RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeLockBatchMQ, nil,
			[]byte(`{"consumerGroup":"banned","clientId":"c","mqSet":[]}`)), "app1", "secret-app1"), remoting.RespNoPermission, "needs SUB on group banned"},
		{"send V2 header", RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeSendMessageV2, remoting.ExtFields{"a": "pg", "b": "events"}, nil), "app1", "secret-app1"),
			remoting.RespNoPermission, "needs PUB on topic events"},
		{"batch V2 header", RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeSendBatchMessage, remoting.ExtFields{"a": "pg", "b": "both"}, nil), "app1", "secret-app1"), 0, ""},
		{"offset commit", RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeUpdateConsumerOffset, remoting.ExtFields{"consumerGroup": "g", "topic": "orders", "queueId": "0", "commitOffset": "1"}, nil), "app1", "secret-app1"),
			remoting.RespNoPermission, "needs SUB on topic orders"},
		{"ACL change needs admin", RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeUpdateAndCreateACLConfig, remoting.ExtFields{"accessKey": "app1", "admin": "true"}, nil), "app1", "secret-app1"),
			remoting.RespNoPermission, "needs admin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, resp := c.Check(context.Background(), tc.role, tc.remote, tc.req)
			if tc.code == 0 {
				if resp != nil {
					t.Fatalf("refused: code %d %q", resp.Code, resp.Remark)
				}
				if _, ok := IdentityFrom(ctx); !ok {
					t.Fatal("admitted without an identity in the context")
				}
				return
			}
			if resp == nil {
				t.Fatal("admitted")
			}
			if resp.Code != tc.code || !strings.Contains(resp.Remark, tc.remark) {
				t.Fatalf("code %d remark %q; want code %d with %q", resp.Code, resp.Remark, tc.code, tc.remark)
			}
			for _, secret := range []string{"secret-app1", "secret-root", "not-the-secret", "whatever"} {
				if strings.Contains(resp.Remark, secret) {
					t.Fatalf("remark %q reveals a secret", resp.Remark)
				}
			}
		})
	}
}

func TestPublicRoutes(t *testing.T) {
	c, _ := newTestChecker(t, testAccounts(), func(cfg *Config) { cfg.PublicRoutes = true })
	req := signed(remoting.NewRequest(remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "orders"}, nil), "x", "bad-secret")
	if _, resp := c.Check(context.Background(), RoleNameServer, lan, req); resp != nil {
		t.Fatalf("route lookup refused with PublicRoutes: %q", resp.Remark)
	}
	list := signed(remoting.NewRequest(remoting.CodeGetAllTopicListFromNameServer, nil, nil), "x", "bad-secret")
	if _, resp := c.Check(context.Background(), RoleNameServer, lan, list); resp == nil || resp.Code != remoting.RespNoPermission {
		t.Fatalf("topic list admitted with a bad key: %v", resp)
	}
}

// goClientSign signs as rocketmq-client-go's ACLInterceptor does (internal/remote/
// interceptor.go): AccessKey joins the sorted keys, SecurityToken is sent but not signed.
func goClientSign(req *remoting.Command, ak, sk, token string) {
	values := map[string]string{"AccessKey": ak}
	keys := []string{"AccessKey"}
	for k, v := range req.ExtFields {
		values[k] = v
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var content []byte
	for _, k := range keys {
		content = append(content, values[k]...)
	}
	content = append(content, req.Body...)
	mac := hmac.New(sha1.New, []byte(sk))
	mac.Write(content)
	req.ExtFields["Signature"] = base64.StdEncoding.EncodeToString(mac.Sum(nil))
	req.ExtFields["AccessKey"] = ak
	if token != "" {
		req.ExtFields["SecurityToken"] = token
	}
}

// javaClientSign signs as AclClientRPCHook does: every extField, the token and
// _UNIQUE_KEY_QUERY included.
func javaClientSign(req *remoting.Command, ak, sk, token string) {
	req.ExtFields["AccessKey"] = ak
	if token != "" {
		req.ExtFields["SecurityToken"] = token
	}
	req.ExtFields["Signature"] = remoting.Signature([]byte(sk), req.ExtFields, req.Body, func(k string) bool { return k == "Signature" })
}

func TestSignaturesOfClients(t *testing.T) {
	c, _ := newTestChecker(t, testAccounts(), nil)
	cases := map[string]func(*remoting.Command){
		"go client":              func(r *remoting.Command) { goClientSign(r, "app1", "secret-app1", "") },
		"go client with token":   func(r *remoting.Command) { goClientSign(r, "app1", "secret-app1", "sts-token") },
		"java client":            func(r *remoting.Command) { javaClientSign(r, "app1", "secret-app1", "") },
		"java client with token": func(r *remoting.Command) { javaClientSign(r, "app1", "secret-app1", "sts-token") },
		"strata client, bound": func(r *remoting.Command) {
			remoting.Credentials{AccessKey: "app1", SecretKey: "secret-app1", BindRequest: true}.Sign(r)
		},
		"extra client field signed": func(r *remoting.Command) {
			r.ExtFields["OnsChannel"] = "ALIYUN"
			goClientSign(r, "app1", "secret-app1", "")
		},
		"unique-key flag, java 5": func(r *remoting.Command) {
			r.ExtFields["_UNIQUE_KEY_QUERY"] = "true"
			javaClientSign(r, "app1", "secret-app1", "")
		},
		"unique-key flag, unsigned": func(r *remoting.Command) {
			// Java 4.x signed header fields only and added the flag outside them.
			goClientSign(r, "app1", "secret-app1", "")
			r.ExtFields["_UNIQUE_KEY_QUERY"] = "true"
		},
		"binary header serializing": func(r *remoting.Command) {
			r.SerializeType = remoting.SerializeRocketMQ
			javaClientSign(r, "app1", "secret-app1", "")
		},
	}
	for name, sign := range cases {
		t.Run(name, func(t *testing.T) {
			req := sendReq("orders")
			sign(req)
			// Through the wire, as the broker sees it.
			frame, err := remoting.EncodeFrame(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := remoting.DecodeFrame(frame)
			if err != nil {
				t.Fatal(err)
			}
			if _, resp := c.Check(context.Background(), RoleBroker, lan, got); resp != nil {
				t.Fatalf("refused: %q", resp.Remark)
			}
		})
	}
}

// TestTamperedHeaderRefused changes each signed field, the body, or adds a field after
// signing: every change is refused.
func TestTamperedHeaderRefused(t *testing.T) {
	c, _ := newTestChecker(t, testAccounts(), nil)
	base := signed(sendReq("orders"), "app1", "secret-app1")
	tamper := map[string]func(*remoting.Command){
		"topic":     func(r *remoting.Command) { r.ExtFields["topic"] = "both" },
		"queue":     func(r *remoting.Command) { r.ExtFields["queueId"] = "1" },
		"body":      func(r *remoting.Command) { r.Body = []byte("hellO") },
		"added":     func(r *remoting.Command) { r.ExtFields["delayTimeLevel"] = "3" },
		"removed":   func(r *remoting.Command) { delete(r.ExtFields, "producerGroup") },
		"swapped":   func(r *remoting.Command) { r.ExtFields["producerGroup"], r.ExtFields["topic"] = "orders", "pg" },
		"signature": func(r *remoting.Command) { r.ExtFields["Signature"] = strings.Repeat("A", 27) + "=" },
		"truncated": func(r *remoting.Command) { r.ExtFields["Signature"] = r.ExtFields["Signature"][:20] },
		// An unsigned SecurityToken is accepted (the Go client sends it unsigned); Strata
		// does not interpret it, so it is left out here.
	}
	for name, f := range tamper {
		req := *base
		req.ExtFields = maps(base.ExtFields)
		f(&req)
		_, resp := c.Check(context.Background(), RoleBroker, lan, &req)
		if resp == nil || resp.Code != remoting.RespNoPermission || !strings.Contains(resp.Remark, "signature mismatch") {
			t.Errorf("tampered %s: %v, want a signature mismatch", name, resp)
		}
	}
	if _, resp := c.Check(context.Background(), RoleBroker, lan, base); resp != nil {
		t.Fatalf("the untampered request is refused: %q", resp.Remark)
	}
}

func maps(m remoting.ExtFields) remoting.ExtFields {
	out := remoting.ExtFields{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestBoundSignature(t *testing.T) {
	c, _ := newTestChecker(t, testAccounts(), nil)
	creds := remoting.Credentials{AccessKey: "root", SecretKey: "secret-root", BindRequest: true}
	stats := remoting.NewRequest(remoting.CodeGetTopicStatsInfo, remoting.ExtFields{"topic": "orders"}, nil)
	creds.Sign(stats)
	if _, resp := c.Check(context.Background(), RoleBroker, lan, stats); resp != nil {
		t.Fatalf("bound request refused: %q", resp.Remark)
	}
	// The same fields and signature replayed as a topic delete.
	replay := *stats
	replay.Code = remoting.CodeDeleteTopicInBroker
	_, resp := c.Check(context.Background(), RoleBroker, lan, &replay)
	if resp == nil || !strings.Contains(resp.Remark, "was made for request code 202, not 215") {
		t.Fatalf("replay under another code: %v", resp)
	}
	c.now = func() time.Time { return time.Now().Add(time.Hour) }
	_, resp = c.Check(context.Background(), RoleBroker, lan, stats)
	if resp == nil || !strings.Contains(resp.Remark, "replayed") {
		t.Fatalf("an hour-old signature: %v", resp)
	}
}

func TestBadStoredValuesFailClosed(t *testing.T) {
	snap := &meta.ACLSnapshot{Accounts: map[string]meta.ACLAccount{
		"odd": {AccessKey: "odd", SecretKey: "secret-odd", DefaultTopicPerm: "ALL", TopicPerms: map[string]string{"t": "READ"}, WhiteRemoteAddress: "not an address"},
	}, Whitelist: []string{"300.1.1.1"}}
	c, logs := newTestChecker(t, snap, nil)
	for _, req := range []*remoting.Command{signed(sendReq("t"), "odd", "secret-odd"), signed(sendReq("u"), "odd", "secret-odd")} {
		if _, resp := c.Check(context.Background(), RoleBroker, &net.TCPAddr{IP: net.ParseIP("300.1.1.1")}, req); resp == nil {
			t.Fatalf("a bad permission admitted %s", req.ExtFields["topic"])
		}
	}
	if !strings.Contains(logs.String(), "bad value") || !strings.Contains(logs.String(), "global whitelist") {
		t.Fatalf("bad values not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "secret-odd") {
		t.Fatal("the log shows a secret")
	}
}

func TestAuthorizeDeferred(t *testing.T) {
	c, _ := newTestChecker(t, testAccounts(), nil)
	ctx, resp := c.Check(context.Background(), RoleBroker, lan, signed(remoting.NewRequest(remoting.CodeConsumerSendMsgBack,
		remoting.ExtFields{"group": "g1", "offset": "0", "originTopic": "events"}, nil), "app1", "secret-app1"))
	if resp != nil {
		t.Fatalf("send-back refused: %q", resp.Remark)
	}
	if err := c.Authorize(ctx, Topic("events", PermSub)); err != nil {
		t.Fatalf("SUB on events: %v", err)
	}
	err := c.Authorize(ctx, Topic("vault", PermSub))
	if err == nil || !strings.Contains(err.Error(), `access key "app1" needs SUB on topic vault`) {
		t.Fatalf("SUB on vault: %v", err)
	}
	if err := c.Authorize(context.Background(), Topic("events", PermSub)); err == nil {
		t.Fatal("a context Check never saw is authorized")
	}
}

func TestRefusalsAreRateLimited(t *testing.T) {
	c, logs := newTestChecker(t, testAccounts(), nil)
	now := time.Unix(1000, 0)
	c.fails.now = func() time.Time { return now }
	for i := 0; i < 50; i++ {
		c.Check(context.Background(), RoleBroker, lan, signed(sendReq("orders"), "app1", "wrong-secret"))
	}
	if n := strings.Count(logs.String(), "request refused"); n != 1 {
		t.Fatalf("%d lines for 50 refusals within the interval, want 1:\n%s", n, logs.String())
	}
	c.Check(context.Background(), RoleBroker, lan, signed(sendReq("orders"), "x", "wrong-secret")) // another key: its own line
	now = now.Add(DefaultFailureLogInterval)
	c.Check(context.Background(), RoleBroker, lan, signed(sendReq("orders"), "app1", "wrong-secret"))
	out := logs.String()
	if n := strings.Count(out, "request refused"); n != 3 {
		t.Fatalf("%d lines, want 3:\n%s", n, out)
	}
	if !strings.Contains(out, "refused_since_last_line="+strconv.Itoa(49)) {
		t.Fatalf("the line after the interval does not count the 49 refusals in between:\n%s", out)
	}
	if strings.Contains(out, "wrong-secret") {
		t.Fatal("the log shows a secret")
	}
}

func TestFailureLogStaysBounded(t *testing.T) {
	f := newFailureLog(time.Minute, 100, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < 1000; i++ {
		f.record("key"+strconv.Itoa(i), lan.AddrPort().Addr(), remoting.CodeSendMessage, "x")
	}
	if len(f.entries) > 100 {
		t.Fatalf("%d entries, limit 100", len(f.entries))
	}
}
