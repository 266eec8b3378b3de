package acl

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
)

func startMeta(t *testing.T) *meta.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	etcd, err := etcdembed.Start(ctx, t.TempDir(), etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	mc, err := meta.New(ctx, meta.Config{Endpoints: etcd.Endpoints(), Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	return mc
}

func newEtcdChecker(t *testing.T, mc *meta.Client) *Checker {
	t.Helper()
	return newEtcdCheckerLogging(t, mc, io.Discard)
}

func newEtcdCheckerLogging(t *testing.T, mc *meta.Client, w io.Writer) *Checker {
	t.Helper()
	c, err := New(context.Background(), Config{Logger: slog.New(slog.NewTextHandler(w, nil)), BrokerName: "broker-a"}, mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// admin sends a management request through Check and ServeAdmin, signed by root.
func admin(t *testing.T, c *Checker, code int16, ext remoting.ExtFields) *remoting.Command {
	t.Helper()
	req := signed(remoting.NewRequest(code, ext, nil), "root", "root-secret")
	ctx, resp := c.Check(context.Background(), RoleBroker, lan, req)
	if resp != nil {
		return resp
	}
	return c.ServeAdmin(ctx, req)
}

func wantOK(t *testing.T, resp *remoting.Command) {
	t.Helper()
	if resp.Code != remoting.RespSuccess {
		t.Fatalf("code %d: %s", resp.Code, resp.Remark)
	}
}

func checkSend(c *Checker, ak, sk, topic string) *remoting.Command {
	_, resp := c.Check(context.Background(), RoleBroker, lan, signed(sendReq(topic), ak, sk))
	return resp
}

func TestManagementThroughEtcd(t *testing.T) {
	mc := startMeta(t)
	var logs syncBuffer
	c := newEtcdCheckerLogging(t, mc, &logs)
	other := newEtcdChecker(t, mc) // a second broker of the cluster
	ctx := context.Background()
	if err := c.EnsureAdmin(ctx, "root", "root-secret"); err != nil {
		t.Fatal(err)
	}

	wantOK(t, admin(t, c, remoting.CodeUpdateAndCreateACLConfig, remoting.ExtFields{"accessKey": "app1", "secretKey": "app1-secret", ExtMode: ModeCreate}))
	if resp := admin(t, c, remoting.CodeUpdateAndCreateACLConfig, remoting.ExtFields{"accessKey": "app1", "secretKey": "app1-secret", ExtMode: ModeCreate}); resp.Code != remoting.RespInvalidParameter || !strings.Contains(resp.Remark, "exists already") {
		t.Fatalf("second create: %d %q", resp.Code, resp.Remark)
	}
	// New accounts: DENY on topics, SUB on groups.
	if resp := checkSend(c, "app1", "app1-secret", "orders"); resp == nil || !strings.Contains(resp.Remark, `needs PUB on topic orders`) {
		t.Fatalf("send before the grant: %v", resp)
	}
	if _, resp := c.Check(ctx, RoleBroker, lan, signed(pullReq("%RETRY%g1", "g1"), "app1", "app1-secret")); resp != nil {
		t.Fatalf("default group SUB: %q", resp.Remark)
	}

	wantOK(t, admin(t, c, remoting.CodeACLGrant, remoting.ExtFields{"accessKey": "app1", "topic": "orders", "perm": "PUB"}))
	if resp := checkSend(c, "app1", "app1-secret", "orders"); resp != nil {
		t.Fatalf("send after the grant, on the broker that made it: %q", resp.Remark)
	}
	waitFor(t, "the other broker sees the grant", func() bool { return checkSend(other, "app1", "app1-secret", "orders") == nil })

	// A grant of another topic keeps the first (no lost update).
	wantOK(t, admin(t, c, remoting.CodeACLGrant, remoting.ExtFields{"accessKey": "app1", "topic": "events", "perm": "PUB|SUB"}))
	wantOK(t, admin(t, c, remoting.CodeACLGrant, remoting.ExtFields{"accessKey": "app1", "group": "banned", "perm": "DENY"}))
	if resp := checkSend(c, "app1", "app1-secret", "orders"); resp != nil {
		t.Fatalf("first grant lost: %q", resp.Remark)
	}

	// The list shows accounts and permissions, never a secret.
	resp := admin(t, c, remoting.CodeGetBrokerClusterACLConfig, nil)
	wantOK(t, resp)
	if strings.Contains(string(resp.Body), "secret") {
		t.Fatalf("the account list shows a secret: %s", resp.Body)
	}
	var cv ConfigView
	if err := json.Unmarshal(resp.Body, &cv); err != nil {
		t.Fatal(err)
	}
	if len(cv.PlainAccessConfigs) != 2 || cv.PlainAccessConfigs[0].AccessKey != "app1" ||
		strings.Join(cv.PlainAccessConfigs[0].TopicPerms, ",") != "events=PUB|SUB,orders=PUB" ||
		strings.Join(cv.PlainAccessConfigs[0].GroupPerms, ",") != "banned=DENY" || !cv.PlainAccessConfigs[1].Admin {
		t.Fatalf("account list %+v", cv)
	}

	wantOK(t, admin(t, c, remoting.CodeACLRevoke, remoting.ExtFields{"accessKey": "app1", "topic": "orders"}))
	if resp := checkSend(c, "app1", "app1-secret", "orders"); resp == nil {
		t.Fatal("send admitted after the revoke")
	}

	// A new secret: the old one stops working at once.
	wantOK(t, admin(t, c, remoting.CodeUpdateAndCreateACLConfig, remoting.ExtFields{"accessKey": "app1", "secretKey": "app1-secret-2", ExtMode: ModeUpdate}))
	if resp := checkSend(c, "app1", "app1-secret", "events"); resp == nil || !strings.Contains(resp.Remark, "signature mismatch") {
		t.Fatalf("old secret after rotation: %v", resp)
	}
	if resp := checkSend(c, "app1", "app1-secret-2", "events"); resp != nil {
		t.Fatalf("new secret: %q", resp.Remark)
	}

	// RocketMQ's create-or-update with topicPerms replaces the list.
	wantOK(t, admin(t, c, remoting.CodeUpdateAndCreateACLConfig, remoting.ExtFields{"accessKey": "app2", "secretKey": "app2-secret", "topicPerms": "t1=PUB,t2=SUB", "admin": "false"}))
	if resp := checkSend(c, "app2", "app2-secret", "t1"); resp != nil {
		t.Fatalf("app2 on t1: %q", resp.Remark)
	}

	for _, bad := range []remoting.ExtFields{
		{"accessKey": "app3", "secretKey": "short"},
		{"accessKey": "app3", "secretKey": "long-enough", "defaultTopicPerm": "ALL"},
		{"accessKey": "app3", "secretKey": "long-enough", "topicPerms": "t1:PUB"},
		{"accessKey": "bad/key", "secretKey": "long-enough"},
		{"accessKey": "nobody", "secretKey": "long-enough", ExtMode: ModeUpdate},
		{"accessKey": "root", "admin": "false"},
	} {
		if resp := admin(t, c, remoting.CodeUpdateAndCreateACLConfig, bad); resp.Code != remoting.RespInvalidParameter {
			t.Errorf("%v: code %d %q, want INVALID_PARAMETER", bad, resp.Code, resp.Remark)
		}
	}
	if resp := admin(t, c, remoting.CodeDeleteACLConfig, remoting.ExtFields{"accessKey": "root"}); resp.Code != remoting.RespInvalidParameter {
		t.Fatalf("root deleting itself: %d %q", resp.Code, resp.Remark)
	}

	wantOK(t, admin(t, c, remoting.CodeDeleteACLConfig, remoting.ExtFields{"accessKey": "app1"}))
	if resp := checkSend(c, "app1", "app1-secret-2", "events"); resp == nil || !strings.Contains(resp.Remark, `unknown access key "app1"`) {
		t.Fatalf("deleted account: %v", resp)
	}

	// The global whitelist, live.
	unsigned := sendReq("anything")
	from := &net.TCPAddr{IP: net.ParseIP("172.16.5.9")}
	if _, resp := c.Check(ctx, RoleBroker, from, unsigned); resp == nil {
		t.Fatal("unsigned request admitted before the whitelist")
	}
	wantOK(t, admin(t, c, remoting.CodeUpdateGlobalWhiteAddrsConfig, remoting.ExtFields{"globalWhiteAddrs": "172.16.5.*,10.0.0.0/8"}))
	if _, resp := c.Check(ctx, RoleBroker, from, unsigned); resp != nil {
		t.Fatalf("whitelisted address: %q", resp.Remark)
	}

	info := admin(t, c, remoting.CodeGetBrokerClusterACLInfo, nil)
	wantOK(t, info)
	if info.ExtFields["brokerName"] != "broker-a" || !strings.Contains(info.ExtFields["version"], "counter") {
		t.Fatalf("acl info %v", info.ExtFields)
	}

	// Changes are audited by who made them; no secret reaches the log.
	out := logs.String()
	if !strings.Contains(out, "acl: change") || !strings.Contains(out, "by=root") || !strings.Contains(out, "access_key=app1") {
		t.Fatalf("no audit lines:\n%s", out)
	}
	for _, secret := range []string{"root-secret", "app1-secret", "app2-secret", "long-enough"} {
		if strings.Contains(out, secret) {
			t.Fatalf("the log shows secret %q:\n%s", secret, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
