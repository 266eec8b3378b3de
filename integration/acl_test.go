package integration

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/stratamq/strata/broker/remoting"
)

// Access control with the official Go client's WithCredentials, against `strata dev --acl`,
// managed with `strata acl` as an operator would.

// runStrata runs a strata command and returns its output and error, for commands expected
// to fail.
func runStrata(t testing.TB, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, strataBin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// asAdmin runs a strata command signed by the dev process's admin account.
func asAdmin(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := runStrata(t, []string{"STRATA_ACCESS_KEY=root", "STRATA_SECRET_KEY=root-secret"}, args...)
	if err != nil {
		t.Fatalf("strata %v: %v\n%s%s", args, err, out, errOut)
	}
	return out
}

func credentialed(ak, sk string) producer.Option {
	return producer.WithCredentials(primitive.Credentials{AccessKey: ak, SecretKey: sk})
}

func sendErr(t *testing.T, p interface {
	SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
}, topic, body string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(body)))
	return err
}

func wantClientError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("client error %v, want one containing %q", err, want)
	}
}

func TestACLWithOfficialClient(t *testing.T) {
	dev := startDev(t, t.TempDir(), "--acl", "--acl-admin", "root:root-secret")
	ns := "--namesrv=" + dev.Namesrv
	for _, topic := range []string{"acl-orders", "acl-events", "acl-vault"} {
		asAdmin(t, "topic", "create", ns, "--topic", topic, "--queues", "2")
	}
	asAdmin(t, "acl", "user", "create", ns, "--access-key", "app1", "--secret-key", "app1-secret")
	asAdmin(t, "acl", "grant", ns, "--access-key", "app1", "--topic", "acl-orders", "--perm", "PUB|SUB")

	// Allowed publish and subscribe.
	p := newProducer(t, dev.Namesrv, credentialed("app1", "app1-secret"))
	want := bodies("acl", 5)
	for _, b := range want {
		if err := sendErr(t, p, "acl-orders", b); err != nil {
			t.Fatalf("allowed send: %v", err)
		}
	}
	got := newReceived()
	startPushConsumer(t, dev.Namesrv, "acl-group", "acl-orders", "*", "c1", got,
		consumer.WithCredentials(primitive.Credentials{AccessKey: "app1", SecretKey: "app1-secret"}))
	got.waitFor(t, want, 60*time.Second)

	// Refusals, each with the reason in the error the client returns.
	wantClientError(t, sendErr(t, p, "acl-vault", "x"), `No permission: access key "app1" needs PUB on topic acl-vault`)
	wrong := newProducer(t, dev.Namesrv, credentialed("app1", "not-the-secret"))
	wantClientError(t, sendErr(t, wrong, "acl-orders", "x"), `signature mismatch for access key "app1": check the secret key`)
	ghost := newProducer(t, dev.Namesrv, credentialed("ghost", "ghost-secret"))
	wantClientError(t, sendErr(t, ghost, "acl-orders", "x"), `unknown access key "ghost"`)
	anonymous := newProducer(t, dev.Namesrv)
	wantClientError(t, sendErr(t, anonymous, "acl-orders", "x"), "carries no AccessKey")

	// A grant is picked up at once, without restarting anything.
	wantClientError(t, sendErr(t, p, "acl-events", "before"), "needs PUB on topic acl-events")
	asAdmin(t, "acl", "grant", ns, "--access-key", "app1", "--topic", "acl-events", "--perm", "PUB")
	if err := sendErr(t, p, "acl-events", "after"); err != nil {
		t.Fatalf("send after the grant, same producer, no restart: %v", err)
	}
	// And a revoke.
	asAdmin(t, "acl", "revoke", ns, "--access-key", "app1", "--topic", "acl-events")
	wantClientError(t, sendErr(t, p, "acl-events", "revoked"), "needs PUB on topic acl-events")

	// A whitelisted address needs no keys.
	asAdmin(t, "acl", "whitelist", "set", ns, "127.0.0.1")
	if err := sendErr(t, anonymous, "acl-vault", "whitelisted"); err != nil {
		t.Fatalf("send from the whitelisted address without keys: %v", err)
	}
	asAdmin(t, "acl", "whitelist", "set", ns, "")
	wantClientError(t, sendErr(t, anonymous, "acl-vault", "x"), "carries no AccessKey")

	// The account list shows no secret; the log shows no secret either.
	list := asAdmin(t, "acl", "user", "list", ns)
	if !strings.Contains(list, "app1") || !strings.Contains(list, "acl-orders=PUB|SUB") || strings.Contains(list, "secret") {
		t.Fatalf("acl user list:\n%s", list)
	}
	if out := dev.output.String(); strings.Contains(out, "app1-secret") || strings.Contains(out, "not-the-secret") || strings.Contains(out, "root-secret") {
		t.Fatalf("the broker log shows a secret:\n%s", out)
	}
	if !strings.Contains(dev.output.String(), "acl: request refused") {
		t.Fatal("refusals are not logged")
	}

	// Where no account is managed, --access-key and --secret-key sign.
	if out, errOut, err := runStrata(t, nil, "acl", "user", "list", ns, "--access-key", "root", "--secret-key", "root-secret"); err != nil || !strings.Contains(out, "app1") {
		t.Fatalf("acl user list signed by flags: %v\n%s%s", err, out, errOut)
	}

	// A CLI command without an admin key, and one by a non-admin, are refused with the reason.
	if _, errOut, err := runStrata(t, []string{"STRATA_ACCESS_KEY=app1", "STRATA_SECRET_KEY=app1-secret"}, "topic", "create", ns, "--topic", "nope"); err == nil ||
		!strings.Contains(errOut, `access key "app1" needs admin`) {
		t.Fatalf("topic create by a non-admin: %v\n%s", err, errOut)
	}
}

// TestACLTamperedRequestRefused signs a request, changes a header field after signing and
// sends it raw: the broker refuses it, and accepts the untampered one.
func TestACLTamperedRequestRefused(t *testing.T) {
	dev := startDev(t, t.TempDir(), "--acl", "--acl-admin", "root:root-secret")
	asAdmin(t, "topic", "create", "--namesrv", dev.Namesrv, "--topic", "acl-raw", "--queues", "1")
	c, err := remoting.Dial(context.Background(), dev.Broker, remoting.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ext := remoting.ExtFields{"topic": "acl-raw", "queueId": "0"}
	signedReq := func() *remoting.Command {
		req := remoting.NewRequest(remoting.CodeGetMaxOffset, maps(ext), nil)
		remoting.Credentials{AccessKey: "root", SecretKey: "root-secret"}.Sign(req)
		return req
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Invoke(ctx, signedReq())
	if err != nil || resp.Code != remoting.RespSuccess {
		t.Fatalf("signed request: %v %v", resp, err)
	}
	tampered := signedReq()
	tampered.ExtFields["queueId"] = "1"
	resp, err = c.Invoke(ctx, tampered)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code != remoting.RespNoPermission || !strings.Contains(resp.Remark, `signature mismatch for access key "root"`) {
		t.Fatalf("tampered request answered %d %q", resp.Code, resp.Remark)
	}
}

func maps(m remoting.ExtFields) remoting.ExtFields {
	out := remoting.ExtFields{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
