package broker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/remoting/tlstest"
)

func withACL(cfg *Config) {
	cfg.ACLEnabled = true
	cfg.ACLAdmin = remoting.Credentials{AccessKey: "root", SecretKey: "root-secret"}
}

func dialAs(t *testing.T, addr, ak, sk string) *remoting.Client {
	t.Helper()
	c, err := remoting.Dial(context.Background(), addr, remoting.ClientConfig{Credentials: remoting.Credentials{AccessKey: ak, SecretKey: sk, BindRequest: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantRefused(t *testing.T, resp *remoting.Command, remark string) {
	t.Helper()
	if resp.Code != remoting.RespNoPermission || !strings.Contains(resp.Remark, remark) {
		t.Fatalf("code %d remark %q; want NO_PERMISSION with %q", resp.Code, resp.Remark, remark)
	}
}

func sendExt(topic string) remoting.ExtFields {
	return remoting.ExtFields{"producerGroup": "pg", "topic": topic, "queueId": "0", "sysFlag": "0",
		"bornTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "flag": "0", "properties": message.EncodeProperties(nil),
		"reconsumeTimes": "0", "unitMode": "false", "maxReconsumeTimes": "0", "batch": "false"}
}

func TestACLOnTheRemotingRoles(t *testing.T) {
	env := startBroker(t, withACL)
	rootNS := dialAs(t, env.b.NameServerAddr(), "root", "root-secret")
	rootBK := dialAs(t, env.b.BrokerAddr(), "root", "root-secret")

	// Unsigned requests are refused on both roles.
	wantRefused(t, invoke(t, env.ns, remoting.CodeGetAllTopicListFromNameServer, nil, nil), "carries no AccessKey")
	wantRefused(t, invoke(t, env.bk, remoting.CodeSendMessage, sendExt("A"), []byte("x")), "carries no AccessKey")

	for _, topic := range []string{"A", "B"} {
		wantCode(t, invoke(t, rootNS, remoting.CodeUpdateAndCreateTopic, remoting.ExtFields{"topic": topic, "readQueueNums": "1", "writeQueueNums": "1", "perm": "6"}, nil), remoting.RespSuccess)
	}
	wantCode(t, invoke(t, rootNS, remoting.CodeUpdateAndCreateACLConfig, remoting.ExtFields{"accessKey": "app1", "secretKey": "app1-secret", "strataMode": "create"}, nil), remoting.RespSuccess)
	app := dialAs(t, env.b.BrokerAddr(), "app1", "app1-secret")
	appNS := dialAs(t, env.b.NameServerAddr(), "app1", "app1-secret")
	wantRefused(t, invoke(t, appNS, remoting.CodeUpdateAndCreateTopic, remoting.ExtFields{"topic": "C"}, nil), `access key "app1" needs admin`)
	wantRefused(t, invoke(t, app, remoting.CodeSendMessage, sendExt("A"), []byte("x")), `No permission: access key "app1" needs PUB on topic A`)

	wantCode(t, invoke(t, rootBK, remoting.CodeACLGrant, remoting.ExtFields{"accessKey": "app1", "topic": "A", "perm": "PUB|SUB"}, nil), remoting.RespSuccess)
	wantCode(t, invoke(t, app, remoting.CodeSendMessage, sendExt("A"), []byte("on A")), remoting.RespSuccess)
	wantCode(t, invoke(t, rootBK, remoting.CodeSendMessage, sendExt("B"), []byte("on B")), remoting.RespSuccess)

	// A message named by commit-log offset: app1 reads A, not B, whatever topic it claims.
	pull := func(c *remoting.Client, topic string) *message.Message {
		ext := pullExt(topic, 0, 0, "*", 0)
		resp := invoke(t, c, remoting.CodePullMessage, ext, nil)
		wantCode(t, resp, remoting.RespSuccess)
		msgs, err := message.DecodeAll(resp.Body)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("pull %s: %v %v", topic, msgs, err)
		}
		return msgs[0]
	}
	onA, onB := pull(app, "A"), pull(rootBK, "B")
	wantRefused(t, invoke(t, app, remoting.CodePullMessage, pullExt("B", 0, 0, "*", 0), nil), "needs SUB on topic B")
	back := func(m *message.Message) remoting.ExtFields {
		return remoting.ExtFields{"group": "cg", "offset": strconv.FormatInt(m.CommitLogOffset, 10), "delayLevel": "0",
			"originMsgId": m.UniqKey(), "originTopic": "A", "maxReconsumeTimes": "3"}
	}
	wantCode(t, invoke(t, app, remoting.CodeConsumerSendMsgBack, back(onA), nil), remoting.RespSuccess)
	wantRefused(t, invoke(t, app, remoting.CodeConsumerSendMsgBack, back(onB), nil), "needs SUB on topic B")
	view := func(m *message.Message) remoting.ExtFields {
		return remoting.ExtFields{"offset": strconv.FormatInt(m.CommitLogOffset, 10)}
	}
	wantCode(t, invoke(t, app, remoting.CodeViewMessageByID, view(onA), nil), remoting.RespSuccess)
	wantRefused(t, invoke(t, app, remoting.CodeViewMessageByID, view(onB), nil), "needs SUB on topic B")

	// The account list names accounts, never secrets.
	resp := invoke(t, rootNS, remoting.CodeGetBrokerClusterACLConfig, nil, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if strings.Contains(string(resp.Body), "secret") || !strings.Contains(string(resp.Body), `"accessKey":"app1"`) {
		t.Fatalf("account list %s", resp.Body)
	}
}

func TestACLManagementNeedsACLOn(t *testing.T) {
	env := startBroker(t, nil)
	resp := invoke(t, env.ns, remoting.CodeUpdateAndCreateACLConfig, remoting.ExtFields{"accessKey": "x", "secretKey": "xxxxxxxx", "admin": "true"}, nil)
	wantRefused(t, resp, "ACL is off on this broker")
}

func httpGet(t *testing.T, client *http.Client, url string, auth func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(body)
}

func TestHTTPEndpointClasses(t *testing.T) {
	// Off by default: no pprof at all.
	plain := startBroker(t, nil)
	if code, _ := httpGet(t, http.DefaultClient, "http://"+plain.b.HTTPAddr()+"/debug/pprof/", nil); code != http.StatusNotFound {
		t.Fatalf("pprof without http.pprof: %d, want 404", code)
	}

	env := startBroker(t, func(c *Config) {
		withACL(c)
		c.HTTP = HTTPConfig{Pprof: true, AdminToken: "tok-123"}
	})
	base := "http://" + env.b.HTTPAddr()
	wantCode(t, invoke(t, dialAs(t, env.b.NameServerAddr(), "root", "root-secret"), remoting.CodeUpdateAndCreateACLConfig,
		remoting.ExtFields{"accessKey": "app1", "secretKey": "app1-secret"}, nil), remoting.RespSuccess)
	for _, c := range []struct {
		path string
		auth func(*http.Request)
		want int
	}{
		{"/healthz", nil, 200},
		{"/readyz", nil, 200},
		{"/metrics", nil, 200},
		{"/tier/status", nil, 200},
		{"/debug/pprof/", nil, 401},
		{"/debug/pprof/", func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") }, 401},
		{"/debug/pprof/", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-123") }, 200},
		{"/debug/pprof/", func(r *http.Request) { r.SetBasicAuth("root", "root-secret") }, 200},
		{"/debug/pprof/", func(r *http.Request) { r.SetBasicAuth("root", "wrong-secret") }, 401},
		{"/debug/pprof/", func(r *http.Request) { r.SetBasicAuth("app1", "app1-secret") }, 401},
		// With ACL on the console asks for an admin account's keys.
		{"/console/topics", nil, 401},
		{"/console/topics", func(r *http.Request) { r.SetBasicAuth("root", "wrong-secret") }, 401},
		{"/console/topics", func(r *http.Request) { r.SetBasicAuth("root", "root-secret") }, 200},
	} {
		if code, body := httpGet(t, http.DefaultClient, base+c.path, c.auth); code != c.want {
			t.Errorf("GET %s: %d %q, want %d", c.path, code, body, c.want)
		}
	}

	guarded := startBroker(t, func(c *Config) {
		withACL(c)
		c.HTTP = HTTPConfig{ProtectReads: true}
	})
	if code, body := httpGet(t, http.DefaultClient, "http://"+guarded.b.HTTPAddr()+"/metrics", nil); code != 401 || !strings.Contains(body, "ACL admin account") {
		t.Fatalf("protected /metrics without auth: %d %q", code, body)
	}
	if code, _ := httpGet(t, http.DefaultClient, "http://"+guarded.b.HTTPAddr()+"/readyz", nil); code != 200 {
		t.Fatalf("/readyz must stay open: %d", code)
	}
}

func TestTLSListeners(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	pair := ca.Server("broker")
	env := startBroker(t, func(c *Config) {
		c.TLS = &remoting.ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile}
	})
	conf, err := remoting.ClientTLSConfig{CAFile: ca.CertFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{env.b.NameServerAddr(), env.b.BrokerAddr()} {
		c, err := remoting.Dial(context.Background(), addr, remoting.ClientConfig{TLS: conf})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Invoke(context.Background(), remoting.NewRequest(remoting.CodeGetBrokerClusterInfo, nil, nil))
		c.Close()
		if err != nil || resp.Code != remoting.RespSuccess {
			t.Fatalf("%s over TLS: %v %v", addr, resp, err)
		}
		var info map[string]any
		if err := json.Unmarshal(resp.Body, &info); err != nil {
			t.Fatal(err)
		}
	}
	httpsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	if code, _ := httpGet(t, httpsClient, "https://"+env.b.HTTPAddr()+"/readyz", nil); code != 200 {
		t.Fatalf("https /readyz: %d", code)
	}
	// Plain HTTP to the TLS listener gets Go's "HTTP request to an HTTPS server" refusal.
	if code, body := httpGet(t, http.DefaultClient, "http://"+env.b.HTTPAddr()+"/readyz", nil); code != http.StatusBadRequest || !strings.Contains(body, "HTTPS") {
		t.Fatalf("plain HTTP to the TLS port: %d %q", code, body)
	}
	if got := env.b.SecuritySummary(); got != "tls on" {
		t.Fatalf("summary %q", got)
	}
}
