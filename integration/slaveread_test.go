package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
)

// TestConsumerReadsFromSlavesWhenBehind runs a sync group of three `strata broker` members
// with replication.slave_read_enable and a 64 KiB bound, fills two queues with about 1 MiB
// each, and lets the official push consumer read from the first offset: the master sends it
// to a slave (suggestWhichBrokerId), the slaves serve part of the backlog, every message
// arrives, and once caught up the consumer is back on the master, which serves what is sent
// next while the slaves serve nothing more.
func TestConsumerReadsFromSlavesWhenBehind(t *testing.T) {
	etcd := startEtcdProcess(t)
	mc := metaClient(t, etcd)
	const group, topic, queues = "broker-a", "slave-read", 2
	var members []*replicaMember
	for id := 0; id < 3; id++ {
		members = append(members, startReplicaMemberWith(t, etcd.Endpoints(), group, id, "sync",
			"  slave_read_enable: true\n  slave_read_lag_bytes: 64KiB\n"))
	}
	waitUntil(t, 60*time.Second, "all three members in sync", func() bool { return len(inSync(t, mc, group)) == 3 })
	createTopic(t, members[0].Namesrv, topic, queues)
	master := masterOf(t, mc, group)
	var leader *replicaMember
	var slaves []*replicaMember
	for _, m := range members {
		if m.name == master {
			leader = m
		} else {
			slaves = append(slaves, m)
		}
	}
	if leader == nil || len(slaves) != 2 {
		t.Fatalf("master %q among %d members", master, len(members))
	}
	slaveServed := func() float64 {
		var sum float64
		for _, s := range slaves {
			sum += metricValue(t, s.HTTP, "strata_broker_slave_read_messages_total")
		}
		return sum
	}

	// ~2 MiB in batches of 20: far more than the bound on each queue.
	const n, batch = 2000, 20
	pad := strings.Repeat("x", 1000)
	p := newProducer(t, leader.Namesrv, producer.WithSendMsgTimeout(10*time.Second))
	var want []string
	for i := 0; i < n; i += batch {
		var msgs []*primitive.Message
		for j := i; j < i+batch; j++ {
			b := fmt.Sprintf("sr-%05d-%s", j, pad)
			want = append(want, b)
			msgs = append(msgs, primitive.NewMessage(topic, []byte(b)))
		}
		res, err := p.SendSync(context.Background(), msgs...)
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send batch %d: %v %v", i/batch, res, err)
		}
	}

	got := newReceived()
	start := time.Now()
	startPushConsumer(t, leader.Namesrv, "cg-slave-read", topic, "*", "c1", got)
	got.waitFor(t, want, 120*time.Second)
	elapsed := time.Since(start)
	served := slaveServed()
	suggested := metricValue(t, leader.HTTP, "strata_broker_pull_slave_suggestions_total")
	fromMaster := metricValue(t, leader.HTTP, "strata_broker_messages_out_total")
	t.Logf("%d messages (%d duplicates) in %v: slaves served %.0f, the master %.0f, after %.0f suggestions by the master",
		n, len(got.duplicates()), elapsed.Round(time.Millisecond), served, fromMaster, suggested)
	if served == 0 || suggested == 0 {
		t.Fatalf("the slaves served %.0f messages after %.0f master suggestions; want both non-zero", served, suggested)
	}
	if served+fromMaster < n {
		t.Fatalf("slaves %.0f + master %.0f messages delivered, below the %d received", served, fromMaster, n)
	}

	// Caught up: the consumer pulls from the master again, which serves what comes next.
	const m = 50
	more := bodies("sr-after", m)
	for _, b := range more {
		res, err := p.SendSync(context.Background(), primitive.NewMessage(topic, []byte(b)))
		if err != nil || res.Status != primitive.SendOK {
			t.Fatalf("send %s: %v %v", b, res, err)
		}
	}
	got.waitFor(t, more, 60*time.Second)
	if after := slaveServed(); after != served {
		t.Errorf("the slaves served %.0f messages after the consumer caught up, want none", after-served)
	}
	if out := metricValue(t, leader.HTTP, "strata_broker_messages_out_total"); out-fromMaster < m {
		t.Errorf("the master served %.0f of the %d messages sent after catching up", out-fromMaster, m)
	}
}
