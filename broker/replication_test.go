package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/remoting/tlstest"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
)

func replicaConfig(t *testing.T, id int64, log *syncBuffer) Config {
	cfg := memberConfig(t, id, nil, log)
	cfg.ElectionTTL = 2 * time.Second
	cfg.Replication = ReplicationConfig{Listen: "127.0.0.1:0", Mode: ReplicationSync, MinInSyncReplicas: 2,
		MaxLag: time.Second, AckTimeout: 3 * time.Second}
	return cfg
}

func inSyncSet(t *testing.T, mc *meta.Client) []string {
	s, err := mc.GetInSyncSet(context.Background(), "g")
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		t.Fatal(err)
	}
	return s.Members
}

// refusal is the code a send to e would be refused with before it is stored (success: none).
func refusal(e *testEnv) int16 {
	if r := e.b.refuseWrite(&remoting.Command{ExtFields: remoting.ExtFields{}}); r != nil {
		return r.Code
	}
	return remoting.RespSuccess
}

// A group of three in sync mode: sends are refused while too few members are in sync, an
// acknowledged send is on every in-sync member, slaves refuse sends, and after the master
// is deposed an in-sync slave takes over with the whole log while the old master follows.
func TestSyncReplicationAndFailover(t *testing.T) {
	srv := startEtcd(t, t.TempDir())
	var logs [3]syncBuffer
	mcs := make([]*meta.Client, 3)
	for i := range mcs {
		mcs[i] = newMetaClient(t, srv.Endpoints(), time.Second)
	}
	a := startMember(t, replicaConfig(t, 0, &logs[0]), mcs[0])
	waitFor(t, "g-0 leads", func() bool { return refusal(a) == remoting.RespSlaveNotAvailable })
	createTopic(t, a, "R", 1)
	before := a.b.Store().EndOffset()
	resp := send(t, a, "R", 0, "", "alone")
	wantCode(t, resp, remoting.RespSlaveNotAvailable)
	if !strings.Contains(resp.Remark, "min_in_sync_replicas 2") {
		t.Fatalf("refusal remark %q does not name the setting", resp.Remark)
	}
	if end := a.b.Store().EndOffset(); end != before {
		t.Fatalf("a refused send was stored: log end %d, was %d", end, before)
	}

	b := startMember(t, replicaConfig(t, 1, &logs[1]), mcs[1])
	c := startMember(t, replicaConfig(t, 2, &logs[2]), mcs[2])
	waitFor(t, "all three in sync", func() bool { return len(inSyncSet(t, mcs[0])) == 3 })
	for i := 0; i < 50; i++ {
		resp := send(t, a, "R", 0, "", fmt.Sprintf("m%03d", i))
		wantCode(t, resp, remoting.RespSuccess)
		// Acknowledged means every in-sync member holds it: the log ships whole records, so
		// holding past the record's start is holding the record. (The master's log end may
		// already be past it: its own control records come and go.)
		_, pos, err := message.ParseOffsetMsgID(resp.ExtFields["msgId"])
		if err != nil {
			t.Fatalf("send %d: msgId %q: %v", i, resp.ExtFields["msgId"], err)
		}
		if b.b.Store().EndOffset() <= pos || c.b.Store().EndOffset() <= pos {
			t.Fatalf("send %d acknowledged at position %d; slaves hold %d and %d", i, pos, b.b.Store().EndOffset(), c.b.Store().EndOffset())
		}
	}
	resp = send(t, b, "R", 0, "", "to a slave")
	wantCode(t, resp, remoting.RespServiceNotAvailable)
	if !strings.Contains(resp.Remark, "slave") {
		t.Fatalf("slave's refusal %q", resp.Remark)
	}
	routes := b.b.brokersByGroup()["g"]
	if len(routes.Addrs) != 3 || routes.Addrs[0] != a.b.BrokerAddr() {
		t.Fatalf("route addresses %v, want three with g-0 (%s) as 0", routes.Addrs, a.b.BrokerAddr())
	}

	// A consumer's commit through the master, stored in etcd: the slaves loaded their
	// offsets before it.
	upd := remoting.ExtFields{"consumerGroup": "cg", "topic": "R", "queueId": "0", "commitOffset": "42"}
	wantCode(t, invoke(t, a.bk, remoting.CodeUpdateConsumerOffset, upd, nil), remoting.RespSuccess)
	if err := a.b.meta.offsets.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The master's term ends (its lease revoked, as if it died): an in-sync slave wins.
	masterEnd := a.b.Store().EndOffset()
	if _, err := mcs[0].Etcd().Revoke(context.Background(), a.b.election.Lease()); err != nil {
		t.Fatal(err)
	}
	var next *testEnv
	waitFor(t, "a slave takes over and accepts sends", func() bool {
		for _, e := range []*testEnv{b, c} {
			if refusal(e) == remoting.RespSuccess {
				next = e
				return true
			}
		}
		return false
	})
	if got := next.b.Store().EndOffset(); got < masterEnd {
		t.Fatalf("new master's log ends at %d, below the acknowledged %d", got, masterEnd)
	}
	if l, max := next.b.Store().ReadLimit(), next.b.Store().MaxOffset("R", 0); l != store.Unlimited || max != 50 {
		t.Fatalf("new master reads up to %d (max offset %d), want its whole log of 50", l, max)
	}
	q := remoting.ExtFields{"consumerGroup": "cg", "topic": "R", "queueId": "0"}
	if r := invoke(t, next.bk, remoting.CodeQueryConsumerOffset, q, nil); r.Code != remoting.RespSuccess || r.ExtFields["offset"] != "42" {
		t.Fatalf("the new master answers the offset committed through the old one with code %d, ext %v; want 42", r.Code, r.ExtFields)
	}
	waitFor(t, "the old master rejoins the in-sync set", func() bool { return len(inSyncSet(t, mcs[1])) >= 2 })
	for i := 50; i < 60; i++ {
		wantCode(t, send(t, next, "R", 0, "", fmt.Sprintf("m%03d", i)), remoting.RespSuccess)
	}
	end := next.b.Store().EndOffset()
	waitFor(t, "the old master follows the new one", func() bool { return a.b.Store().EndOffset() == end })
	if refusal(a) != remoting.RespServiceNotAvailable {
		t.Fatal("the deposed master still accepts writes")
	}
	if l := a.b.Store().ReadLimit(); l == store.Unlimited || l > end {
		t.Fatalf("the deposed master's read limit is %d; want the new master's watermark, at most %d", l, end)
	}
}

func TestReplicationConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		rc   ReplicationConfig
		want string // "" for valid
	}{
		{ReplicationConfig{}, ""},
		{ReplicationConfig{Mode: ReplicationSync}, "needs a replication listener"},
		{ReplicationConfig{MinInSyncReplicas: 2}, "needs a replication listener"},
		{ReplicationConfig{Listen: "127.0.0.1:0", Mode: "quorum"}, "want async or sync"},
		{ReplicationConfig{Listen: "nohostport"}, "not host:port"},
		{ReplicationConfig{Listen: "127.0.0.1:0", MinInSyncReplicas: 4}, "1..3"},
		{ReplicationConfig{Listen: "127.0.0.1:0", AdvertisedAddr: "host:1"}, "must be ip:port"},
		{ReplicationConfig{Listen: "127.0.0.1:0", Mode: ReplicationSync, MinInSyncReplicas: 2}, ""},
	} {
		cfg := Config{DataDir: t.TempDir(), Replication: tc.rc}
		err := cfg.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.rc, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one saying %q", tc.rc, err, tc.want)
		}
	}
	cfg := Config{DataDir: t.TempDir(), Replication: ReplicationConfig{Listen: "127.0.0.1:0"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := cfg.Replication; r.Mode != ReplicationAsync || r.MinInSyncReplicas != 1 || r.MaxLag != DefaultReplicationMaxLag || r.AckTimeout != DefaultReplicationAckTimeout {
		t.Fatalf("defaults: %+v", r)
	}
	cfg = Config{DataDir: t.TempDir(), ElectionTTL: time.Second, Replication: ReplicationConfig{Listen: "127.0.0.1:0"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "below 2s") {
		t.Fatalf("1s election TTL with replication: %v", err)
	}
	// Under tls the replication listener serves TLS: a follower needs the members' CAs, and a
	// certificate of its own where client certificates are required.
	serverTLS := remoting.ServerTLSConfig{CertFile: "c.pem", KeyFile: "k.pem"}
	for _, tc := range []struct {
		tls  remoting.ServerTLSConfig
		rc   ReplicationConfig
		want string
	}{
		{serverTLS, ReplicationConfig{Listen: "127.0.0.1:0"}, "replication.tls_ca_file"},
		{serverTLS, ReplicationConfig{Listen: "127.0.0.1:0", TLSCAFile: "ca.pem", TLSCertFile: "c.pem"}, "go together"},
		{remoting.ServerTLSConfig{CertFile: "c.pem", KeyFile: "k.pem", ClientCAFile: "ca.pem", ClientAuth: remoting.ClientAuthRequire},
			ReplicationConfig{Listen: "127.0.0.1:0"}, "client_auth require also holds for replication"},
		{serverTLS, ReplicationConfig{Listen: "127.0.0.1:0", TLSCAFile: "ca.pem"}, ""},
	} {
		cfg := Config{DataDir: t.TempDir(), TLS: &tc.tls, Replication: tc.rc}
		err := cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("tls %+v, replication %+v: error %v, want %q", tc.tls, tc.rc, err, tc.want)
		}
	}
}

// A slave serves pulls only of records the in-sync set holds: with one in-sync member away,
// a send's record reaches the other slave but is not pulled from it (nor acknowledged), while
// the master serves it; once the member is back and holds it, the slave serves it too.
func TestSlavePullsOnlyConfirmedRecords(t *testing.T) {
	srv := startEtcd(t, t.TempDir())
	var logs [3]syncBuffer
	cfgs := make([]Config, 3)
	mcs := make([]*meta.Client, 3)
	for i := range cfgs {
		cfgs[i] = replicaConfig(t, int64(i), &logs[i])
		// The stopped member stays in the set, and the send waits, until it is back.
		cfgs[i].Replication.MaxLag, cfgs[i].Replication.AckTimeout = time.Minute, time.Minute
		mcs[i] = newMetaClient(t, srv.Endpoints(), time.Second)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range logs {
				logs[i].mu.Lock()
				t.Logf("member %d's log:\n%s", i, logs[i].b.String())
				logs[i].mu.Unlock()
			}
		}
	})
	a := startMember(t, cfgs[0], mcs[0])
	waitFor(t, "g-0 leads", func() bool { return refusal(a) == remoting.RespSlaveNotAvailable })
	createTopic(t, a, "W", 1)
	b := startMember(t, cfgs[1], mcs[1])
	c := startMember(t, cfgs[2], mcs[2])
	waitFor(t, "all three in sync", func() bool { return len(inSyncSet(t, mcs[0])) == 3 })

	pull := func(e *testEnv, offset int64, suspend time.Duration) (*remoting.Command, []string) {
		t.Helper()
		resp := invoke(t, e.bk, remoting.CodePullMessage, pullExt("W", 0, offset, "*", suspend), nil)
		var bodies []string
		if resp.Code == remoting.RespSuccess {
			ms, err := message.DecodeAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				bodies = append(bodies, string(m.Body))
			}
		}
		return resp, bodies
	}
	wantCode(t, send(t, a, "W", 0, "", "first"), remoting.RespSuccess)
	// The watermark follows the acknowledgement by a round trip: a held pull waits for it.
	if resp, got := pull(b, 0, 20*time.Second); resp.Code != remoting.RespSuccess || fmt.Sprint(got) != "[first]" {
		t.Fatalf("slave pull of a confirmed record: code %d (%s), %v", resp.Code, resp.Remark, got)
	}

	if err := c.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		resp *remoting.Command
		err  error
	}
	sent := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := a.bk.Invoke(ctx, sendRequest("W", 0, "", "second"))
		sent <- answer{resp, err}
	}()
	waitFor(t, "the slave holds the unconfirmed record", func() bool {
		end := a.b.Store().EndOffset()
		return a.b.Store().MaxOffset("W", 0) == 2 && b.b.Store().EndOffset() == end
	})
	resp, _ := pull(b, 1, 0)
	wantCode(t, resp, remoting.RespPullNotFound)
	if resp.ExtFields["maxOffset"] != "1" || resp.ExtFields["nextBeginOffset"] != "1" {
		t.Fatalf("slave pull past the watermark: ext %v, want max and next offset 1", resp.ExtFields)
	}
	resp, _ = pull(b, 1, 300*time.Millisecond) // held until its timeout, not woken by the hidden record
	wantCode(t, resp, remoting.RespPullNotFound)
	if resp, got := pull(a, 1, 0); resp.Code != remoting.RespSuccess || fmt.Sprint(got) != "[second]" {
		t.Fatalf("master pull of its own record: code %d (%s), %v", resp.Code, resp.Remark, got)
	}
	select {
	case r := <-sent:
		t.Fatalf("the send was answered (%+v, %v) before the in-sync set held it", r.resp, r.err)
	default:
	}

	startMember(t, cfgs[2], mcs[2]) // back, it catches up: the record is confirmed
	if resp, got := pull(b, 1, 20*time.Second); resp.Code != remoting.RespSuccess || fmt.Sprint(got) != "[second]" {
		t.Fatalf("slave pull once confirmed: code %d (%s), %v", resp.Code, resp.Remark, got)
	}
	if r := <-sent; r.err != nil || r.resp.Code != remoting.RespSuccess {
		t.Fatalf("send once confirmed: %+v, %v", r.resp, r.err)
	}

	// The slave keeps its watermark for its next run: restarted, it serves what was
	// confirmed before a master streams to it (startReplication restores KeptReadLimit).
	confirmed, scfg := b.b.Store().ReadLimit(), b.b.cfg.Store
	if err := b.b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(scfg)
	if err != nil {
		t.Fatal(err)
	}
	kept := st.KeptReadLimit()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if kept < confirmed || confirmed == store.Unlimited {
		t.Fatalf("the stopped slave kept read limit %d; it served up to %d", kept, confirmed)
	}
}

// TestReplicationOverTLS runs a sync group of two whose brokers serve TLS: the replication
// listener speaks TLS too (a plain peer gets nothing), the follower reaches it with the
// members' CA, and an acknowledged send is on the follower.
func TestReplicationOverTLS(t *testing.T) {
	srv := startEtcd(t, t.TempDir())
	ca := tlstest.NewCA(t, "members' CA")
	pair := ca.Server("member")
	var logs [2]syncBuffer
	mcs := make([]*meta.Client, 2)
	envs := make([]*testEnv, 2)
	clientTLS, err := remoting.ClientTLSConfig{CAFile: ca.CertFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	secureDial := func(addr string) *remoting.Client {
		c, err := remoting.Dial(context.Background(), addr, remoting.ClientConfig{TLS: clientTLS})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for i := range envs {
		cfg := replicaConfig(t, int64(i), &logs[i])
		cfg.TLS = &remoting.ServerTLSConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile}
		cfg.Replication.TLSCAFile = ca.CertFile
		mcs[i] = newMetaClient(t, srv.Endpoints(), time.Second)
		e := startMember(t, cfg, mcs[i])
		envs[i] = &testEnv{b: e.b, ns: secureDial(e.b.NameServerAddr()), bk: secureDial(e.b.BrokerAddr())}
		if i == 0 {
			waitFor(t, "g-0 leads", func() bool { return refusal(envs[0]) == remoting.RespSlaveNotAvailable })
		}
	}
	waitFor(t, "both members in sync", func() bool { return len(inSyncSet(t, mcs[0])) == 2 })

	// The master's replication listener: a TLS handshake with the CA succeeds, plain bytes
	// get the connection closed without a frame.
	replAddr := envs[0].b.repl.addr
	tc, err := tls.Dial("tcp", replAddr, clientTLS)
	if err != nil {
		t.Fatalf("TLS handshake with the replication listener: %v", err)
	}
	tc.Close()
	plain, err := net.Dial("tcp", replAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_ = plain.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := plain.Write(bytes.Repeat([]byte{0}, 64)); err != nil {
		t.Fatal(err)
	}
	if n, err := plain.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a plain peer on the replication listener read %d bytes (%v), want the connection closed", n, err)
	}

	createTopic(t, envs[0], "S", 1)
	resp := send(t, envs[0], "S", 0, "", "over tls")
	wantCode(t, resp, remoting.RespSuccess)
	_, pos, err := message.ParseOffsetMsgID(resp.ExtFields["msgId"])
	if err != nil {
		t.Fatal(err)
	}
	if end := envs[1].b.Store().EndOffset(); end <= pos {
		t.Fatalf("acknowledged at position %d; the follower holds %d", pos, end)
	}
}
