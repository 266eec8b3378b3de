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
// serve the same route, the topic's queues spread over both groups, and the official client
// produces to and consumes from both.
func TestTwoBrokerCluster(t *testing.T) {
	etcd := startEtcdProcess(t)
	a := startClusterBroker(t, etcd, "broker-a")
	b := startClusterBroker(t, etcd, "broker-b")
	const topic = "spread"
	createTopic(t, a.Namesrv, topic, 8)

	routeOf := func(namesrv string) map[string]int {
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
	want := map[string]int{a.Broker: 4, b.Broker: 4}
	waitUntil(t, 30*time.Second, "both name servers to route 4 queues to each broker", func() bool {
		ra, rb := routeOf(a.Namesrv), routeOf(b.Namesrv)
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
