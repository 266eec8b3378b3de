package broker

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
)

// The slave-read rule (slaveread.go) as a table: who answers, how far behind the pull
// starts, whether it reached the member's visible end, and which slaves are in sync.
func TestSuggestBrokerIDRule(t *testing.T) {
	const bound = 1000
	far, near := int64(bound+1), int64(bound)
	for _, tc := range []struct {
		name   string
		p      pullPlacement
		slaves []int64
		self   int64
		want   int64
	}{
		{"off: master never suggests a slave", pullPlacement{master: true, found: true, behind: far}, []int64{1, 2}, 0, 0},
		{"off: slave sends back to the master", pullPlacement{found: true, behind: far}, nil, 1, 0},
		{"master, far behind: an in-sync slave", pullPlacement{enabled: true, master: true, found: true, behind: far}, []int64{1, 2}, 0, 1},
		{"master, far behind: queues spread over the slaves", pullPlacement{enabled: true, master: true, found: true, behind: far, queueID: 3}, []int64{1, 2}, 0, 2},
		{"master, at the bound: stays", pullPlacement{enabled: true, master: true, found: true, behind: near}, []int64{1, 2}, 0, 0},
		{"master, far behind, none in sync: stays", pullPlacement{enabled: true, master: true, found: true, behind: far}, nil, 0, 0},
		{"master, cold tier: stays (slaves do not follow the tier's manifest)", pullPlacement{enabled: true, master: true, found: true, cold: true, behind: far}, []int64{2}, 0, 0},
		{"master, nothing found: stays", pullPlacement{enabled: true, master: true, behind: far}, []int64{1}, 0, 0},
		{"master, far behind and at its end: a slave (the end is the master's, not the slave's limit)", pullPlacement{enabled: true, master: true, found: true, behind: far, atEnd: true}, []int64{1}, 0, 1},
		{"slave, far behind: keeps it", pullPlacement{enabled: true, found: true, behind: far}, nil, 2, 2},
		{"slave, cold tier: back to the master", pullPlacement{enabled: true, found: true, cold: true, behind: far}, nil, 1, 0},
		{"slave, caught up to the bound: back to the master", pullPlacement{enabled: true, found: true, behind: near}, nil, 1, 0},
		{"slave, reached its read limit: back to the master", pullPlacement{enabled: true, found: true, behind: far, atEnd: true}, nil, 1, 0},
		{"slave, pull not found: back to the master", pullPlacement{enabled: true, behind: far}, nil, 1, 0},
		{"slave not in the route: back to the master", pullPlacement{enabled: true, found: true, behind: far}, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.lagBytes = bound
			asked := false
			got := suggestBrokerID(tc.p, func() []int64 { asked = true; return tc.slaves }, func() int64 { return tc.self })
			if got != tc.want {
				t.Fatalf("suggestBrokerID(%+v, slaves %v, self %d) = %d, want %d", tc.p, tc.slaves, tc.self, got, tc.want)
			}
			if asked && (!tc.p.master || !tc.p.enabled) {
				t.Fatal("the in-sync slaves were looked up for a pull that is not the master's to redirect")
			}
		})
	}
}

func TestSlaveReadConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		rc   ReplicationConfig
		want string
	}{
		{ReplicationConfig{SlaveReadEnable: true}, "slave_read_enable needs a replication listener"},
		{ReplicationConfig{Listen: "127.0.0.1:0", SlaveReadEnable: true, SlaveReadLagBytes: -1}, "slave_read_lag_bytes -1 must not be negative"},
		{ReplicationConfig{Listen: "127.0.0.1:0", SlaveReadEnable: true, SlaveReadLagBytes: 1 << 20}, ""},
	} {
		cfg := Config{DataDir: t.TempDir(), Replication: tc.rc}
		err := cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: error %v, want %q", tc.rc, err, tc.want)
		}
	}
	cfg := Config{DataDir: t.TempDir(), Replication: ReplicationConfig{Listen: "127.0.0.1:0"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := cfg.Replication; r.SlaveReadEnable || r.SlaveReadLagBytes != DefaultSlaveReadLagBytes {
		t.Fatalf("slave-read defaults: enable %v, lag %d; want off and %d", r.SlaveReadEnable, r.SlaveReadLagBytes, DefaultSlaveReadLagBytes)
	}
}

// A sync group of three with slave reads on g-0 and g-1 (not g-2) and a 4 KiB bound: a pull
// far behind is sent by the master to slave 1, which keeps it while it is behind and sends
// it back once within the bound, at its visible end or when nothing is left, and leaves an
// offset that moved for the master to say; g-2, with the feature off, always answers 0.
// Offsets committed through a slave reach etcd.
func TestSlaveReadSuggestions(t *testing.T) {
	srv := startEtcd(t, t.TempDir())
	var logs [3]syncBuffer
	envs := make([]*testEnv, 3)
	mcs := make([]*meta.Client, 3)
	t.Cleanup(func() {
		if t.Failed() {
			for i := range logs {
				logs[i].mu.Lock()
				t.Logf("member %d's log:\n%s", i, logs[i].b.String())
				logs[i].mu.Unlock()
			}
		}
	})
	const bound = 4 << 10
	for i := range envs {
		cfg := replicaConfig(t, int64(i), &logs[i])
		cfg.Replication.SlaveReadEnable = i != 2
		cfg.Replication.SlaveReadLagBytes = bound
		mcs[i] = newMetaClient(t, srv.Endpoints(), time.Second)
		envs[i] = startMember(t, cfg, mcs[i])
		if i == 0 {
			waitFor(t, "g-0 leads", func() bool { return refusal(envs[0]) == remoting.RespSlaveNotAvailable })
		}
	}
	a, b, c := envs[0], envs[1], envs[2]
	waitFor(t, "all three in sync", func() bool { return len(inSyncSet(t, mcs[0])) == 3 })
	createTopic(t, a, "SR", 1)
	const n = 100 // ~40 KiB of records, ten times the bound
	sendBodies(t, a, "SR", 0, n)
	for _, e := range []*testEnv{b, c} {
		waitFor(t, "the slaves serve every record", func() bool { return e.b.Store().MaxOffset("SR", 0) == n })
	}
	routes := a.b.brokersByGroup()["g"].Addrs
	if routes[1] != b.b.BrokerAddr() || routes[2] != c.b.BrokerAddr() {
		t.Fatalf("routes %v; want g-1 (%s) as 1 and g-2 (%s) as 2", routes, b.b.BrokerAddr(), c.b.BrokerAddr())
	}

	pull := func(e *testEnv, offset int64) (code int16, suggest string, next int64) {
		t.Helper()
		resp := invoke(t, e.bk, remoting.CodePullMessage, pullExt("SR", 0, offset, "*", 0), nil)
		next, _ = strconv.ParseInt(resp.ExtFields["nextBeginOffset"], 10, 64)
		return resp.Code, resp.ExtFields["suggestWhichBrokerId"], next
	}
	for _, tc := range []struct {
		who    string
		e      *testEnv
		offset int64
		code   int16
		want   string
	}{
		{"master, far behind", a, 0, remoting.RespSuccess, "1"},
		{"master, within the bound", a, n - 5, remoting.RespSuccess, "0"},
		{"master, at the end", a, n, remoting.RespPullNotFound, "0"},
		{"slave 1, far behind", b, 0, remoting.RespSuccess, "1"},
		{"slave 1, far behind, not yet at its end", b, 40, remoting.RespSuccess, "1"},
		{"slave 1, far behind but reaching its visible end", b, n - 20, remoting.RespSuccess, "0"},
		{"slave 1, within the bound", b, n - 5, remoting.RespSuccess, "0"},
		{"slave 1, nothing left", b, n, remoting.RespPullNotFound, "0"},
		{"slave 2 with slave reads off, far behind", c, 0, remoting.RespSuccess, "0"},
	} {
		code, got, _ := pull(tc.e, tc.offset)
		if code != tc.code || got != tc.want {
			t.Errorf("%s: pull at %d: code %d, suggestWhichBrokerId %q; want code %d, %q", tc.who, tc.offset, code, got, tc.code, tc.want)
		}
	}
	// Past the end: the master and a slave with slave reads off say the offset moved; a slave
	// with them on leaves that to the master.
	for _, tc := range []struct {
		who  string
		e    *testEnv
		code int16
		next int64
	}{
		{"master", a, remoting.RespPullOffsetMoved, n},
		{"slave 1", b, remoting.RespPullRetryImmediately, n + 10},
		{"slave 2 with slave reads off", c, remoting.RespPullOffsetMoved, n},
	} {
		code, s, next := pull(tc.e, n+10)
		if code != tc.code || next != tc.next || s != "0" {
			t.Errorf("%s: pull past the end: code %d, next %d, suggestWhichBrokerId %q; want code %d, next %d, 0", tc.who, code, next, s, tc.code, tc.next)
		}
	}
	// A consumer that follows the suggestions reads everything once and ends on the master.
	at, off, served := a, int64(0), map[*testEnv]int{}
	for off < n {
		code, s, next := pull(at, off)
		if code != remoting.RespSuccess {
			t.Fatalf("pull at %d from %s: code %d", off, at.b.BrokerAddr(), code)
		}
		served[at] += int(next - off)
		off = next
		at = map[string]*testEnv{"0": a, "1": b, "2": c}[s]
	}
	if at != a || served[b] == 0 || served[a] == 0 || served[b]+served[a] != n {
		t.Fatalf("following the suggestions: ended on %s, master served %d, slave 1 %d; want the master last and both serving, %d in all",
			at.b.BrokerAddr(), served[a], served[b], n)
	}
	if m := mustSeries(t, a.b.Registry(), "strata_broker_pull_slave_suggestions_total", map[string]string{"role": "master"}); m.GetCounter().GetValue() < 2 {
		t.Errorf("master's slave suggestions %v, want at least 2", m.GetCounter().GetValue())
	}
	if m := mustSeries(t, b.b.Registry(), "strata_broker_slave_read_messages_total", nil); m.GetCounter().GetValue() < float64(served[b]) {
		t.Errorf("slave 1 counted %v messages served, want at least %d", m.GetCounter().GetValue(), served[b])
	}

	// Offsets: commits through a slave are the group's, kept in etcd.
	q := remoting.ExtFields{"consumerGroup": "cg", "topic": "SR", "queueId": "0"}
	upd := remoting.ExtFields{"commitOffset": "42"}
	for k, v := range q {
		upd[k] = v
	}
	wantCode(t, invoke(t, b.bk, remoting.CodeUpdateConsumerOffset, upd, nil), remoting.RespSuccess)
	resp := invoke(t, b.bk, remoting.CodeQueryConsumerOffset, q, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if resp.ExtFields["offset"] != "42" {
		t.Fatalf("slave's QUERY_CONSUMER_OFFSET after its UPDATE: %v, want 42", resp.ExtFields)
	}
	waitFor(t, "the slave's commit in etcd", func() bool {
		off, err := mcs[0].GetOffset(context.Background(), "g", meta.QueueKey{Group: "cg", Topic: "SR", QueueID: 0})
		return err == nil && off == 42
	})
}
