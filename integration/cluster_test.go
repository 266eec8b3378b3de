package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker/client"
)

// startClusterBroker runs `strata broker --config` for one broker group against etcd.
func startClusterBroker(t *testing.T, etcd *etcdProcess, group string) *strataProc {
	t.Helper()
	namesrv, brokerAddr, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`cluster: it
broker_name: %s
data_dir: %s
etcd_endpoints: [%s]
namesrv_addr: %s
broker_addr: %s
advertised_addr: %s
http_addr: %s
auto_create_topics: false
`, group, filepath.Join(t.TempDir(), group), strings.Join(etcd.Endpoints(), ","), namesrv, brokerAddr, brokerAddr, httpAddr)
	path := filepath.Join(t.TempDir(), group+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProc(t, namesrv, brokerAddr, httpAddr, "broker", "--config", path)
}

// TestTwoBrokerCluster runs two broker groups on a separate etcd process: both name servers
// serve the same route, the topic's queues are placed on both groups (4 each), and the
// official client produces to and consumes from both.
func TestTwoBrokerCluster(t *testing.T) {
	etcd := startEtcdProcess(t)
	a := startClusterBroker(t, etcd, "broker-a")
	b := startClusterBroker(t, etcd, "broker-b")
	const topic = "spread"
	waitGroupsLive(t, a, 2)
	createTopic(t, a.Namesrv, topic, 4)

	want := map[string]int{a.Broker: 4, b.Broker: 4}
	waitUntil(t, 30*time.Second, "both name servers to route 4 queues to each broker", func() bool {
		ra, rb := routeByBroker(t, a.Namesrv, topic), routeByBroker(t, b.Namesrv, topic)
		return fmt.Sprint(ra) == fmt.Sprint(want) && fmt.Sprint(rb) == fmt.Sprint(want)
	})

	p := newProducer(t, b.Namesrv)
	sent := bodies("cluster", 80)
	for _, body := range sent {
		if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(body))); err != nil {
			t.Fatal(err)
		}
	}
	r := newReceived()
	hosts := map[string]int{}
	startPushConsumer(t, a.Namesrv, "cg-cluster", topic, "*", "cc", r)
	r.waitFor(t, sent, 60*time.Second)
	// Every broker holds a share: read each broker's queues directly.
	cl, err := client.Dial(context.Background(), a.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	route, err := cl.Route(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range route.Queues(topic) {
		max, err := cl.MaxOffset(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		hosts[q.Addr] += int(max)
	}
	if hosts[a.Broker] == 0 || hosts[b.Broker] == 0 || hosts[a.Broker]+hosts[b.Broker] != len(sent) {
		t.Fatalf("messages per broker %v, sent %d", hosts, len(sent))
	}
}

// routeByBroker counts the topic's queues per broker address in the route namesrv answers.
func routeByBroker(t *testing.T, namesrv, topic string) map[string]int {
	t.Helper()
	c, err := client.Dial(context.Background(), namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Route(context.Background(), topic)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, q := range r.Queues(topic) {
		out[q.Addr]++
	}
	return out
}

// waitGroupsLive waits until the cluster p belongs to lists n broker groups.
func waitGroupsLive(t *testing.T, p *strataProc, n int) {
	t.Helper()
	waitUntil(t, 30*time.Second, fmt.Sprintf("%d broker groups live", n), func() bool {
		c, err := client.Dial(context.Background(), p.Namesrv)
		if err != nil {
			return false
		}
		defer c.Close()
		groups, err := c.BrokerGroups(context.Background())
		return err == nil && len(groups) == n
	})
}

// TestRoutesStickWhenAGroupIsDown: with two groups, one is killed; producers keep sending to
// the other group's own queues (nothing moves onto them), the dead group returns with its
// queues and its messages, and a fresh consumer group reading from the first offset gets
// every acknowledged message exactly once.
func TestRoutesStickWhenAGroupIsDown(t *testing.T) {
	etcd := startEtcdProcess(t)
	a := startClusterBroker(t, etcd, "broker-a")
	b := startClusterBroker(t, etcd, "broker-b")
	const topic = "sticky"
	waitGroupsLive(t, a, 2)
	createTopic(t, a.Namesrv, topic, 4)
	waitUntil(t, 30*time.Second, "4 queues on each broker", func() bool {
		return fmt.Sprint(routeByBroker(t, a.Namesrv, topic)) == fmt.Sprint(map[string]int{a.Broker: 4, b.Broker: 4})
	})
	p := newProducer(t, a.Namesrv)
	var acked []string
	sendAll := func(prefix string, n int) {
		for _, body := range bodies(prefix, n) {
			if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(body))); err == nil {
				acked = append(acked, body)
			}
		}
	}
	sendAll("before", 60)
	if len(acked) != 60 {
		t.Fatalf("%d of 60 sends acknowledged with both groups up", len(acked))
	}

	b.Kill()
	// Within the 10 s lease TTL broker-b leaves the route: broker-a keeps exactly its own 4.
	waitUntil(t, 30*time.Second, "broker-b out of the route", func() bool {
		return fmt.Sprint(routeByBroker(t, a.Namesrv, topic)) == fmt.Sprint(map[string]int{a.Broker: 4})
	})
	sendAll("down", 60)
	if len(acked) < 60+50 {
		t.Fatalf("only %d of 60 sends acknowledged while broker-b was down", len(acked)-60)
	}

	b.start()
	waitUntil(t, 30*time.Second, "broker-b back with its 4 queues", func() bool {
		return fmt.Sprint(routeByBroker(t, a.Namesrv, topic)) == fmt.Sprint(map[string]int{a.Broker: 4, b.Broker: 4})
	})
	sendAll("after", 60)

	r := newReceived()
	startPushConsumer(t, a.Namesrv, "cg-sticky-fresh", topic, "*", "fresh", r)
	r.waitFor(t, acked, 90*time.Second)
	if d := r.duplicates(); len(d) > 0 {
		t.Fatalf("%d messages delivered more than once, e.g. %s", len(d), d[0])
	}
	if r.total() != len(acked) {
		t.Fatalf("received %d distinct messages, acknowledged %d", r.total(), len(acked))
	}
}
