package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/netcut"
)

// replicaMember is one member of a replicated broker group, run as `strata broker`.
type replicaMember struct {
	*strataProc
	name    string
	dataDir string
}

// startReplicaMember runs member id of group on etcd with sync replication (min in sync 2).
func startReplicaMember(t testing.TB, etcd *etcdProcess, group string, id int, mode string) *replicaMember {
	t.Helper()
	return startReplicaMemberVia(t, etcd.Endpoints(), group, id, mode)
}

// startReplicaMemberVia is startReplicaMember reaching etcd at endpoints (a proxy, say).
func startReplicaMemberVia(t testing.TB, endpoints []string, group string, id int, mode string) *replicaMember {
	t.Helper()
	return startReplicaMemberWith(t, endpoints, group, id, mode, "")
}

// startReplicaMemberWith is startReplicaMemberVia with more keys of the replication section
// (YAML lines indented by two spaces).
func startReplicaMemberWith(t testing.TB, endpoints []string, group string, id int, mode, replication string) *replicaMember {
	t.Helper()
	namesrv, brokerAddr, httpAddr, replAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := fmt.Sprintf(`cluster: it
broker_name: %s
broker_id: %d
election_ttl: 3s
data_dir: %s
etcd_endpoints: [%s]
namesrv_addr: %s
broker_addr: %s
advertised_addr: %s
http_addr: %s
auto_create_topics: false
replication:
  listen: %s
  mode: %s
  min_in_sync_replicas: 2
  max_lag: 1s
  ack_timeout: 3s
%s`, group, id, dataDir, strings.Join(endpoints, ","), namesrv, brokerAddr, brokerAddr, httpAddr, replAddr, mode, replication)
	path := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.yaml", group, id))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return &replicaMember{startProc(t, namesrv, brokerAddr, httpAddr, "broker", "--config", path), fmt.Sprintf("%s-%d", group, id), dataDir}
}

func metaClient(t testing.TB, etcd *etcdProcess) *meta.Client {
	t.Helper()
	mc, err := meta.New(context.Background(), meta.Config{Endpoints: etcd.Endpoints(), Cluster: "it"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	return mc
}

func inSync(t testing.TB, mc *meta.Client, group string) []string {
	s, err := mc.GetInSyncSet(context.Background(), group)
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		t.Logf("read in-sync set: %v", err)
	}
	return s.Members
}

func masterOf(t testing.TB, mc *meta.Client, group string) string {
	v, err := mc.NewView(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	return v.Snapshot().Masters[group]
}

// ackLog records which sends the broker acknowledged (SEND_OK) and when.
type ackLog struct {
	mu     sync.Mutex
	acked  []string
	at     []time.Time
	hosts  []string // the storing broker, as the offset message id names it
	failed int
	notOK  map[primitive.SendStatus]int
}

func (a *ackLog) add(body string, res *primitive.SendResult, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err != nil:
		a.failed++
	case res.Status != primitive.SendOK:
		a.notOK[res.Status]++
	default:
		a.acked = append(a.acked, body)
		a.at = append(a.at, time.Now())
		a.hosts = append(a.hosts, res.OffsetMsgID[:min(16, len(res.OffsetMsgID))])
	}
}

// firstAfter is the time of the first acknowledgement after t by another broker than the
// one whose offset message ids start with notHost (zero if none yet).
func (a *ackLog) firstAfter(t time.Time, notHost string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, at := range a.at {
		if at.After(t) && a.hosts[i] != notHost {
			return at
		}
	}
	return time.Time{}
}

// msgIDHost is how an offset message id starts for a broker at addr (ip:port): the IPv4
// address and the port, 8 hex digits each.
func msgIDHost(t testing.TB, addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ip := ap.Addr().As4()
	return fmt.Sprintf("%02X%02X%02X%02X%08X", ip[0], ip[1], ip[2], ip[3], ap.Port())
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

// TestSyncReplicationSurvivesMasterKill runs a group of three members in sync mode under
// load from the official client, kills the master with SIGKILL and checks that every
// acknowledged message is still there, measures kill → first acknowledged send, then brings
// the old master back: it truncates whatever it held beyond the new master and rejoins.
func TestSyncReplicationSurvivesMasterKill(t *testing.T) { testMasterKill(t, "sync") }

// TestAsyncReplicationMasterKillLoss is the same in async mode, where a failover may lose
// what the slaves had not copied yet: the lost acknowledged messages are counted.
func TestAsyncReplicationMasterKillLoss(t *testing.T) { testMasterKill(t, "async") }

func testMasterKill(t *testing.T, mode string) {
	etcd := startEtcdProcess(t)
	mc := metaClient(t, etcd)
	const group, topic = "broker-a", "replicated"
	members := []*replicaMember{}
	for id := 0; id < 3; id++ {
		members = append(members, startReplicaMember(t, etcd, group, id, mode))
	}
	waitUntil(t, 60*time.Second, "all three members in sync", func() bool { return len(inSync(t, mc, group)) == 3 })
	createTopic(t, members[0].Namesrv, topic, 4)
	var namesrvs primitive.NamesrvAddr
	for _, m := range members {
		namesrvs = append(namesrvs, m.Namesrv)
	}

	p, err := producer.NewDefaultProducer(producer.WithNameServer(namesrvs), producer.WithGroupName("pg-repl"),
		producer.WithInstanceName(fmt.Sprintf("p-%d", time.Now().UnixNano())), producer.WithRetry(2),
		producer.WithSendMsgTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown()
	acks, stop := startLoad(t, p, topic, "w")
	defer stop()
	waitUntil(t, 60*time.Second, "acknowledged sends before the kill", func() bool { return acks.count() >= 300 })

	master := masterOf(t, mc, group)
	var victim *replicaMember
	for _, m := range members {
		if m.name == master {
			victim = m
		}
	}
	if victim == nil {
		t.Fatalf("master %q is none of the members", master)
	}
	oldHost := msgIDHost(t, victim.Broker)
	before := acks.count()
	killed := time.Now()
	victim.Kill()

	// A fresh client (its route read after the kill) shows the broker side of the failover;
	// the running producer also waits for its 30s route poll.
	fresh := firstFreshAck(t, members, victim, topic, killed)
	waitUntil(t, 90*time.Second, "the running producer's first acknowledged send after the kill", func() bool {
		return !acks.firstAfter(killed, oldHost).IsZero()
	})
	running := acks.firstAfter(killed, oldHost)
	waitUntil(t, 30*time.Second, "more sends on the new master", func() bool { return acks.count() >= before+200 })
	stop()
	newMaster := masterOf(t, mc, group)
	t.Logf("failover (%s, 3 members, election_ttl 3s): kill → first acked send: fresh client %v, running client %v (its route poll is 30s); new master %s; acked %d before the kill, %d in all; failed sends %d, not SEND_OK %v", mode,
		fresh.Sub(killed).Round(time.Millisecond), running.Sub(killed).Round(time.Millisecond), newMaster, before, acks.count(), acks.failed, acks.notOK)
	if newMaster == master || newMaster == "" {
		t.Fatalf("master after the kill: %q (was %q)", newMaster, master)
	}

	// Every acknowledged message is on the new master: consume them all.
	var live *replicaMember
	for _, m := range members {
		if m.name == newMaster {
			live = m
		}
	}
	got := newReceived()
	startPushConsumer(t, live.Namesrv, "cg-repl", topic, "*", "c1", got)
	acks.mu.Lock()
	want := slices.Clone(acks.acked)
	acks.mu.Unlock()
	if mode == "sync" {
		got.waitFor(t, want, 120*time.Second)
		t.Logf("consumed all %d acknowledged messages after the failover; %d bodies delivered more than once (client retries of a send whose answer was lost, or redelivery)",
			len(want), len(got.duplicates()))
	} else {
		// Nothing tells when the last surviving message has been delivered: wait until the
		// deliveries stop for 5s.
		for last, since := -1, time.Now(); time.Since(since) < 5*time.Second; time.Sleep(250 * time.Millisecond) {
			if n := got.total(); n != last {
				last, since = n, time.Now()
			}
		}
		got.mu.Lock()
		lost := 0
		for _, w := range want {
			if got.counts[w] == 0 {
				lost++
			}
		}
		got.mu.Unlock()
		t.Logf("async failover: %d of %d acknowledged messages lost (acknowledged by the killed master before a slave copied them)", lost, len(want))
	}
	// The old master returns: it truncates any tail beyond the new master, follows and
	// rejoins the in-sync set.
	victim.start()
	waitUntil(t, 60*time.Second, "the old master back in the in-sync set", func() bool {
		return slices.Contains(inSync(t, mc, group), victim.name)
	})
	if m := masterOf(t, mc, group); m != newMaster {
		t.Fatalf("master changed to %s when the old master returned", m)
	}
	if !strings.Contains(victim.output.String(), "following the group's master") {
		t.Fatalf("the returned member does not say it follows:\n%s", victim.output)
	}
}

// firstFreshAck sends from a new producer, its route read from the members other than
// victim, until a send is acknowledged, and returns when; it fails after 60s from killed.
func firstFreshAck(t testing.TB, members []*replicaMember, victim *replicaMember, topic string, killed time.Time) time.Time {
	t.Helper()
	var alive primitive.NamesrvAddr
	for _, m := range members {
		if m != victim {
			alive = append(alive, m.Namesrv)
		}
	}
	for time.Since(killed) < 60*time.Second {
		fp := newProducer(t, alive[0], producer.WithNameServer(alive), producer.WithRetry(0))
		res, err := fp.SendSync(context.Background(), primitive.NewMessage(topic, []byte("probe")))
		_ = fp.Shutdown()
		if err == nil && res.Status == primitive.SendOK {
			return time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no send acknowledged by a fresh client within 60s of killing the master")
	return time.Time{}
}

// startLoad sends from four goroutines until the returned stop is called.
func startLoad(t testing.TB, p interface {
	SendSync(context.Context, ...*primitive.Message) (*primitive.SendResult, error)
}, topic, prefix string) (*ackLog, func()) {
	acks := &ackLog{notOK: map[primitive.SendStatus]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf("%s%d-%06d", prefix, w, i)
				res, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(body)))
				acks.add(body, res, err)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	var once sync.Once
	return acks, func() { once.Do(func() { close(stop); wg.Wait() }) }
}

// lastBy is the time of the last acknowledgement stored by host (zero if none).
func (a *ackLog) lastBy(host string) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var last time.Time
	for i, at := range a.at {
		if a.hosts[i] == host {
			last = at
		}
	}
	return last
}

// TestMasterCutOffFromEtcdStopsAcking cuts the master off from etcd (a proxy between it and
// etcd drops everything) while the official client sends: the old master stops acknowledging
// before another member is elected, every acknowledged message is on the new master, and
// once etcd is reachable again the old master follows.
func TestMasterCutOffFromEtcdStopsAcking(t *testing.T) {
	etcd := startEtcdProcess(t)
	mc := metaClient(t, etcd)
	const group, topic = "broker-a", "partitioned"
	px := netcut.New(t, etcd.clientAddr)
	first := startReplicaMemberVia(t, []string{"http://" + px.Addr()}, group, 0, "sync")
	waitUntil(t, 30*time.Second, "member 0 leads", func() bool { return masterOf(t, mc, group) == first.name })
	members := []*replicaMember{first,
		startReplicaMember(t, etcd, group, 1, "sync"), startReplicaMember(t, etcd, group, 2, "sync")}
	waitUntil(t, 60*time.Second, "all three members in sync", func() bool { return len(inSync(t, mc, group)) == 3 })
	createTopic(t, members[1].Namesrv, topic, 4)
	p := newProducer(t, members[1].Namesrv, producer.WithNameServer(primitive.NamesrvAddr{members[1].Namesrv, members[2].Namesrv}),
		producer.WithSendMsgTimeout(3*time.Second))
	acks, stop := startLoad(t, p, topic, "p")
	defer stop()
	waitUntil(t, 60*time.Second, "acknowledged sends before the cut", func() bool { return acks.count() >= 300 })

	// Watch the election from the test's own, direct etcd client.
	v, err := mc.NewView(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	oldHost := msgIDHost(t, first.Broker)
	cutAt := time.Now()
	px.SetCut(true)
	var elected time.Time
	for elected.IsZero() {
		s, changed := v.Current()
		if m := s.Masters[group]; m != "" && m != first.name {
			elected = time.Now()
			break
		}
		select {
		case <-changed:
		case <-time.After(60 * time.Second):
			t.Fatal("no new master within 60s of cutting the master off")
		}
	}
	lastOld := acks.lastBy(oldHost)
	waitUntil(t, 90*time.Second, "an acknowledged send on the new master", func() bool { return !acks.firstAfter(elected, oldHost).IsZero() })
	newFirst := acks.firstAfter(elected, oldHost)
	stop()
	t.Logf("etcd cut-off (sync, election_ttl 3s): last ack by the old master %v after the cut, new master elected %v after the cut, first ack on it %v after the cut; %d acked in all",
		lastOld.Sub(cutAt).Round(time.Millisecond), elected.Sub(cutAt).Round(time.Millisecond), newFirst.Sub(cutAt).Round(time.Millisecond), acks.count())
	if !lastOld.Before(elected) {
		t.Fatalf("the cut-off master acknowledged a send %v after the cut, at or after the new master's election (%v)", lastOld.Sub(cutAt), elected.Sub(cutAt))
	}

	got := newReceived()
	startPushConsumer(t, members[1].Namesrv, "cg-cut", topic, "*", "c1", got)
	acks.mu.Lock()
	want := slices.Clone(acks.acked)
	acks.mu.Unlock()
	got.waitFor(t, want, 120*time.Second)

	px.SetCut(false)
	waitUntil(t, 60*time.Second, "the old master back in the in-sync set", func() bool {
		return slices.Contains(inSync(t, mc, group), first.name)
	})
}

// TestDevClusterListsMembers runs `strata dev --groups 1 --replicas 2`: GET /cluster lists
// both member processes with their roles and pids, the name-server address serves the
// official client, and when the master's pid is killed the other member becomes master.
func TestDevClusterListsMembers(t *testing.T) {
	ns, httpAddr := freeAddr(t), freeAddr(t)
	dev := startProc(t, ns, "", httpAddr, "dev", "--data", t.TempDir(), "--groups", "1", "--replicas", "2",
		"--namesrv-addr", ns, "--http-addr", httpAddr, "--election-ttl", "3s")
	type member struct {
		Group, Member, Role, Addr string
		Pid                       int
		Alive                     bool
	}
	cluster := func() []member {
		resp, err := http.Get("http://" + httpAddr + "/cluster")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ms []member
		if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
			t.Fatal(err)
		}
		return ms
	}
	roles := func(ms []member) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Member+"="+m.Role)
		}
		return strings.Join(out, ",")
	}
	ms := cluster()
	if len(ms) != 2 || ms[0].Group != "broker-a" || ms[0].Pid == 0 || ms[1].Pid == 0 || ms[0].Pid == ms[1].Pid ||
		ms[0].Addr == "" || ms[1].Addr == "" {
		t.Fatalf("GET /cluster: %+v", ms)
	}
	var master member
	for _, m := range ms {
		if m.Role == "master" {
			master = m
		}
	}
	if master.Pid == 0 || !strings.Contains(roles(ms), "=slave") {
		t.Fatalf("want one master and one slave: %s", roles(ms))
	}
	if !strings.Contains(dev.output.String(), "clients connect to name server "+ns) {
		t.Fatalf("the banner does not say where clients connect:\n%s", dev.output)
	}
	p := newProducer(t, ns)
	if res, err := p.SendSync(context.Background(), primitive.NewMessage("dev-topic", []byte("hello"))); err != nil || res.Status != primitive.SendOK {
		t.Fatalf("send through the dev name server: %v %v", res, err)
	}

	if err := syscall.Kill(master.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 60*time.Second, "the other member to become master", func() bool {
		for _, m := range cluster() {
			if m.Member != master.Member && m.Role == "master" {
				return true
			}
		}
		return false
	})
	for _, m := range cluster() {
		if m.Member == master.Member && (m.Alive || m.Role == "master") {
			t.Fatalf("killed member still listed as %s, alive %v", m.Role, m.Alive)
		}
	}
}

// TestSlaveKilledAndRestartedMidStream kills a slave with SIGKILL while the official client
// sends in sync mode: the master drops it from the in-sync set and goes on acknowledging;
// restarted, the slave catches up from its own log end and rejoins; nothing acknowledged is
// lost.
func TestSlaveKilledAndRestartedMidStream(t *testing.T) {
	etcd := startEtcdProcess(t)
	mc := metaClient(t, etcd)
	const group, topic = "broker-a", "slave-restart"
	members := []*replicaMember{}
	for id := 0; id < 3; id++ {
		members = append(members, startReplicaMember(t, etcd, group, id, "sync"))
	}
	waitUntil(t, 60*time.Second, "all three members in sync", func() bool { return len(inSync(t, mc, group)) == 3 })
	createTopic(t, members[0].Namesrv, topic, 4)
	master := masterOf(t, mc, group)
	checkClusterStatus(t, members[0].Namesrv, etcd, group, master, 3)
	var slave, live *replicaMember
	for _, m := range members {
		switch {
		case m.name == master:
			live = m
		case slave == nil:
			slave = m
		}
	}
	p := newProducer(t, live.Namesrv, producer.WithSendMsgTimeout(5*time.Second))
	acks, stop := startLoad(t, p, topic, "s")
	defer stop()
	waitUntil(t, 60*time.Second, "acknowledged sends before the kill", func() bool { return acks.count() >= 200 })
	slave.Kill()
	killed := time.Now()
	waitUntil(t, 30*time.Second, "the killed slave out of the in-sync set", func() bool {
		return !slices.Contains(inSync(t, mc, group), slave.name)
	})
	dropped := time.Since(killed)
	if st := clusterStatus(t, live.Namesrv, etcd, group); slices.Contains(st.InSync, slave.name) {
		t.Fatalf("cluster status still lists the killed slave %s in sync: %+v", slave.name, st)
	}
	n := acks.count()
	waitUntil(t, 30*time.Second, "sends acknowledged without the killed slave", func() bool { return acks.count() >= n+200 })

	slave.start()
	restarted := time.Now()
	waitUntil(t, 60*time.Second, "the restarted slave back in the in-sync set", func() bool {
		return slices.Contains(inSync(t, mc, group), slave.name)
	})
	rejoined := time.Since(restarted)
	n = acks.count()
	waitUntil(t, 30*time.Second, "sends acknowledged with the slave back", func() bool { return acks.count() >= n+100 })

	// Its data directory wiped, the slave rebuilds its log from the master and rejoins.
	slave.Kill()
	if err := os.RemoveAll(slave.dataDir); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the wiped slave out of the in-sync set", func() bool {
		return !slices.Contains(inSync(t, mc, group), slave.name)
	})
	slave.start()
	wiped := time.Now()
	waitUntil(t, 60*time.Second, "the wiped slave back in the in-sync set", func() bool {
		return slices.Contains(inSync(t, mc, group), slave.name)
	})
	rebuilt := time.Since(wiped)
	n = acks.count()
	waitUntil(t, 30*time.Second, "sends acknowledged with the rebuilt slave", func() bool { return acks.count() >= n+100 })
	stop()
	t.Logf("wiped slave: back in the in-sync set %v after its restart", rebuilt.Round(time.Millisecond))
	t.Logf("slave kill: dropped from the in-sync set %v after the kill (max_lag 1s); restarted, back in it after %v; %d acked, failed %d, not SEND_OK %v",
		dropped.Round(time.Millisecond), rejoined.Round(time.Millisecond), acks.count(), acks.failed, acks.notOK)

	got := newReceived()
	startPushConsumer(t, live.Namesrv, "cg-slave", topic, "*", "c1", got)
	acks.mu.Lock()
	want := slices.Clone(acks.acked)
	acks.mu.Unlock()
	got.waitFor(t, want, 120*time.Second)
}

// clusterStatusGroup is the part of `strata cluster status --format json` these tests read.
type clusterStatusGroup struct {
	Name       string   `json:"name"`
	BrokerRole string   `json:"brokerRole"`
	InSync     []string `json:"inSync"`
	Members    []struct {
		Name     string `json:"name"`
		Elected  bool   `json:"elected"`
		InSync   bool   `json:"inSync"`
		LagBytes int64  `json:"lagBytes"`
	} `json:"members"`
}

func clusterStatus(t *testing.T, namesrv string, etcd *etcdProcess, group string) clusterStatusGroup {
	t.Helper()
	out := runCLI(t, "", "cluster", "status", "--namesrv", namesrv, "--etcd", strings.Join(etcd.Endpoints(), ","), "--cluster", "it", "--format", "json")
	var groups []clusterStatusGroup
	if err := json.Unmarshal([]byte(out), &groups); err != nil {
		t.Fatalf("cluster status JSON: %v\n%s", err, out)
	}
	for _, g := range groups {
		if g.Name == group {
			return g
		}
	}
	t.Fatalf("cluster status lists no group %s:\n%s", group, out)
	return clusterStatusGroup{}
}

// checkClusterStatus asserts what an operator reads of a healthy sync group: every member,
// the elected master, all in sync.
func checkClusterStatus(t *testing.T, namesrv string, etcd *etcdProcess, group, master string, members int) {
	t.Helper()
	st := clusterStatus(t, namesrv, etcd, group)
	if st.BrokerRole != "SYNC_MASTER" || len(st.InSync) != members || len(st.Members) != members {
		t.Fatalf("cluster status of %s: role %q, in sync %v, %d members; want SYNC_MASTER with all %d in sync", group, st.BrokerRole, st.InSync, len(st.Members), members)
	}
	for _, m := range st.Members {
		if m.Elected != (m.Name == master) || !m.InSync || m.LagBytes < 0 {
			t.Fatalf("cluster status member %+v (master %s)", m, master)
		}
	}
}

// TestTimersAndTransactionsMoveWithTheMaster: a delayed message and an undecided
// transaction are acknowledged by a sync group's master, which is then killed before either
// is due. The promoted member fires the timer no earlier than its delay and checks the
// transaction back with the producer, which commits it there: each arrives exactly once.
func TestTimersAndTransactionsMoveWithTheMaster(t *testing.T) {
	etcd := startEtcdProcess(t)
	mc := metaClient(t, etcd)
	const group, topic = "broker-a", "moves"
	members := []*replicaMember{}
	for id := 0; id < 3; id++ {
		members = append(members, startReplicaMember(t, etcd, group, id, "sync"))
	}
	waitUntil(t, 60*time.Second, "all three members in sync", func() bool { return len(inSync(t, mc, group)) == 3 })
	createTopic(t, members[0].Namesrv, topic, 2)
	var namesrvs primitive.NamesrvAddr
	for _, m := range members {
		namesrvs = append(namesrvs, m.Namesrv)
	}

	// The producer answers check-backs "unknown" until the master is dead, so only the
	// promoted member can see the transaction committed.
	var mayCommit atomic.Bool
	app := newTxnApp(func(string) primitive.LocalTransactionState { return primitive.UnkonwnState },
		func(string) primitive.LocalTransactionState {
			if mayCommit.Load() {
				return primitive.CommitMessageState
			}
			return primitive.UnkonwnState
		})
	tp := newTxnProducer(t, members[0].Namesrv, "pg-moves", app, producer.WithNameServer(namesrvs))
	half := primitive.NewMessage(topic, []byte("txn-undecided"))
	half.WithProperty("CHECK_IMMUNITY_TIME_IN_SECONDS", "1")
	if res, err := tp.SendMessageInTransaction(context.Background(), half); err != nil || res.State != primitive.UnkonwnState {
		t.Fatalf("half send: %+v, %v", res, err)
	}
	p := newProducer(t, members[0].Namesrv, producer.WithNameServer(namesrvs))
	const delay = 10 * time.Second // level 3
	sent := time.Now()
	if res, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte("delayed")).WithDelayTimeLevel(3)); err != nil || res.Status != primitive.SendOK {
		t.Fatalf("delayed send: %+v, %v", res, err)
	}

	master := masterOf(t, mc, group)
	var survivors primitive.NamesrvAddr
	for _, m := range members {
		if m.name == master {
			m.Kill()
		} else {
			survivors = append(survivors, m.Namesrv)
		}
	}
	killed := time.Now()
	if time.Since(sent) >= delay {
		t.Fatalf("the master was killed %v after the delayed send, not before it was due", time.Since(sent))
	}
	mayCommit.Store(true)
	waitUntil(t, 30*time.Second, "a new master", func() bool {
		m := masterOf(t, mc, group)
		return m != "" && m != master
	})

	var mu sync.Mutex
	arrived := map[string][]time.Time{}
	c, err := consumer.NewPushConsumer(consumer.WithNameServer(survivors), consumer.WithGroupName("cg-moves"),
		consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset),
		consumer.WithInstance(fmt.Sprintf("moves-%d", time.Now().UnixNano()))) // one client per run, under -count too
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(topic, consumer.MessageSelector{}, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			arrived[string(m.Body)] = append(arrived[string(m.Body)], time.Now())
		}
		return consumer.ConsumeSuccess, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// The brokers die before the consumer shuts down: the client closes its queues' channels
	// while a pull that found messages may still send on them (a panic that kills the test
	// binary), and a pull to a dead broker finds nothing.
	defer func() {
		for _, m := range members {
			m.Kill()
		}
		_ = c.Shutdown()
	}()
	waitUntil(t, 90*time.Second, "the delayed and the transactional message on the new master", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(arrived["delayed"]) > 0 && len(arrived["txn-undecided"]) > 0
	})
	// A duplicate is the absence of an event to wait for: a second firing or commit would
	// come within the check-back and timer checkpoint intervals, so watch a few seconds more.
	time.Sleep(3 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if n := len(arrived["delayed"]); n != 1 {
		t.Fatalf("the delayed message arrived %d times, want once", n)
	}
	if n := len(arrived["txn-undecided"]); n != 1 {
		t.Fatalf("the committed transactional message arrived %d times, want once", n)
	}
	// The broker schedules by the wall clock (a due time in Unix milliseconds), so the delay
	// is checked on the wall clock too: Round(0) drops the monotonic readings, which a paused
	// VM or a clock step moves apart from the wall clock.
	waited := arrived["delayed"][0].Round(0).Sub(sent.Round(0))
	if waited < delay {
		t.Fatalf("the delayed message arrived %v after its send, before its %v delay", waited, delay)
	}
	t.Logf("after killing the master: the delayed message arrived %v after its send (delay %v); the transaction was committed by check-back and consumed %v after the kill",
		waited.Round(time.Millisecond), delay, arrived["txn-undecided"][0].Sub(killed).Round(time.Millisecond))
}
