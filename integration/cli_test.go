package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCLIVerbs drives the mqadmin/rpk-style verbs against `strata dev` as an operator would:
// topic create refusing an existing topic, consume --group resuming where it committed,
// --from newest and -N, group list and delete, topic delete, and JSON output.
func TestCLIVerbs(t *testing.T) {
	dev := startDev(t, t.TempDir())
	ns := "--namesrv=" + dev.Namesrv
	const topic, group = "cli-orders", "cli-billing"

	runCLI(t, "", "topic", "create", ns, "--topic", topic, "--queues", "2")
	_, errOut, err := runStrata(t, nil, "topic", "create", ns, "--topic", topic, "--queues", "3")
	if err == nil || !strings.Contains(errOut, "already exists") || !strings.Contains(errOut, "topic update") {
		t.Fatalf("create on an existing topic: %v %s", err, errOut)
	}
	var desc struct {
		Topic  string `json:"topic"`
		Queues []struct {
			Queue int `json:"queue"`
		} `json:"queues"`
	}
	describe := func() {
		t.Helper()
		if err := json.Unmarshal([]byte(runCLI(t, "", "topic", "describe", ns, "--topic", topic, "--format", "json")), &desc); err != nil {
			t.Fatal(err)
		}
	}
	if describe(); len(desc.Queues) != 2 {
		t.Fatalf("the refused create changed the topic: %+v", desc)
	}
	runCLI(t, "", "topic", "create", ns, "--topic", topic, "--queues", "3", "--update")
	if describe(); len(desc.Queues) != 3 {
		t.Fatalf("create --update left %d queues, want 3", len(desc.Queues))
	}

	runCLI(t, "a:1\nb:2\nc:3\n", "produce", ns, "--topic", topic, "-K", ":", "-q")
	out := runCLI(t, "", "consume", ns, "--topic", topic, "--group", group)
	for _, want := range []string{"keys=a 1", "keys=b 2", "keys=c 3"} {
		if !strings.Contains(out, want) {
			t.Fatalf("first group consume lacks %q:\n%s", want, out)
		}
	}
	if out := runCLI(t, "", "consume", ns, "--topic", topic, "--group", group); strings.TrimSpace(out) != "" {
		t.Fatalf("a second group consume re-read committed messages:\n%s", out)
	}
	runCLI(t, "", "produce", ns, "--topic", topic, "-q", "d|x=1|4", "--line-format", "%k|%h|%v")
	out = runCLI(t, "", "consume", ns, "--topic", topic, "--group", group, "--format", "json")
	var m struct {
		Body       string            `json:"body"`
		Keys       []string          `json:"keys"`
		Properties map[string]string `json:"properties"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Body != "4" || m.Properties["x"] != "1" || len(m.Keys) != 1 || m.Keys[0] != "d" {
		t.Fatalf("group consume after one more send: %v\n%s", err, out)
	}
	if out := runCLI(t, "", "consume", ns, "--topic", topic, "--from", "newest"); strings.TrimSpace(out) != "" {
		t.Fatalf("--from newest printed old messages:\n%s", out)
	}
	// Four messages over three queues: -1 prints the last of each non-empty queue.
	last := strings.Count(runCLI(t, "", "consume", ns, "--topic", topic, "--from", "-1"), "\n")
	all := strings.Count(runCLI(t, "", "consume", ns, "--topic", topic, "--from", "oldest"), "\n")
	if all != 4 || last < 1 || last >= all {
		t.Fatalf("--from oldest printed %d lines, --from -1 printed %d", all, last)
	}

	if out := runCLI(t, "", "group", "list", ns); !strings.Contains(out, group) {
		t.Fatalf("group list lacks %s:\n%s", group, out)
	}
	runCLI(t, "", "group", "delete", ns, "--group", group)
	if out := runCLI(t, "", "group", "list", ns); strings.Contains(out, group) {
		t.Fatalf("group list still has %s after delete:\n%s", group, out)
	}
	if out := runCLI(t, "", "consume", ns, "--topic", topic, "--group", group); strings.Count(out, "\n") != 4 {
		t.Fatalf("after group delete, the group should read from the oldest again:\n%s", out)
	}

	runCLI(t, "", "topic", "delete", ns, "--topic", topic)
	var topics []string
	if err := json.Unmarshal([]byte(runCLI(t, "", "topic", "list", ns, "--format", "json")), &topics); err != nil {
		t.Fatal(err)
	}
	for _, tp := range topics {
		if tp == topic {
			t.Fatalf("topic list still has %s after delete: %v", topic, topics)
		}
	}
	if _, errOut, err := runStrata(t, nil, "topic", "delete", ns, "--topic", topic); err == nil || !strings.Contains(errOut, "does not exist") {
		t.Fatalf("deleting a missing topic: %v %s", err, errOut)
	}

	var groups []struct {
		Name    string `json:"name"`
		Master  string `json:"master"`
		Members []struct {
			Elected bool `json:"elected"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(runCLI(t, "", "cluster", "status", ns, "--format", "json")), &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Master != dev.Broker || len(groups[0].Members) != 1 || !groups[0].Members[0].Elected {
		t.Fatalf("cluster status: %+v (broker %s)", groups, dev.Broker)
	}
	if out := runCLI(t, "", "broker", "status", ns, "--broker", dev.Broker); !strings.Contains(out, "commitLogMaxOffset") {
		t.Fatalf("broker status:\n%s", out)
	}
}

// TestCLIClusterStatusFromEtcd: `cluster status --etcd` lists both broker groups of a
// two-group cluster with their elected members and addresses from etcd, and once one broker
// is killed by pid, the name-server view drops its group.
func TestCLIClusterStatusFromEtcd(t *testing.T) {
	etcd := startEtcdProcess(t)
	a := startClusterBroker(t, etcd, "broker-a")
	b := startClusterBroker(t, etcd, "broker-b")
	waitGroupsLive(t, a, 2)
	type group struct {
		Name    string `json:"name"`
		Master  string `json:"master"`
		Members []struct {
			Name       string `json:"name"`
			Role       string `json:"role"`
			Elected    bool   `json:"elected"`
			BrokerAddr string `json:"brokerAddr"`
			HTTPAddr   string `json:"httpAddr"`
		} `json:"members"`
	}
	status := func(args ...string) []group {
		t.Helper()
		var gs []group
		out := runCLI(t, "", append([]string{"cluster", "status", "--namesrv", a.Namesrv, "--format", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &gs); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return gs
	}
	gs := status("--etcd", strings.Join(etcd.Endpoints(), ","), "--cluster", "it")
	want := map[string]*strataProc{"broker-a": a, "broker-b": b}
	if len(gs) != 2 {
		t.Fatalf("cluster status --etcd: %+v", gs)
	}
	for _, g := range gs {
		p := want[g.Name]
		if p == nil || g.Master != p.Broker || len(g.Members) != 1 {
			t.Fatalf("group %+v, want master %v", g, p)
		}
		m := g.Members[0]
		if !m.Elected || m.Role != "MASTER" || m.BrokerAddr != p.Broker || m.HTTPAddr != p.HTTP || m.Name == "-" {
			t.Fatalf("member of %s from etcd: %+v (want broker %s, http %s)", g.Name, m, p.Broker, p.HTTP)
		}
	}
	if out := runCLI(t, "", "cluster", "status", "--namesrv", a.Namesrv); !strings.Contains(out, "broker-a") || !strings.Contains(out, "broker-b") {
		t.Fatalf("cluster status as text:\n%s", out)
	}
	b.Kill()
	waitUntil(t, 60*time.Second, "the killed group to leave the cluster status", func() bool {
		gs := status()
		return len(gs) == 1 && gs[0].Name == "broker-a"
	})
}
