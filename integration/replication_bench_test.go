package integration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
)

// BenchmarkFailover kills the master of a three-member sync group (election_ttl 3s) with
// SIGKILL once per iteration, under a running official-client producer and push consumer,
// and reports over the rounds, p50 and max:
//   - fresh: kill → the first send a new client gets acknowledged (the broker side: the
//     lease expires, an in-sync slave wins and is promoted);
//   - send: kill → the running producer's first acknowledgement from the new master;
//   - consume: kill → the running consumer's first message stored by the new master.
//
// The last two include the client's route poll (30s, fixed in rocketmq-client-go). After
// each round the killed member restarts and the next round waits until all three are in
// sync again. `make bench-failover` runs 10 rounds.
func BenchmarkFailover(b *testing.B) {
	etcd := startEtcdProcess(b)
	mc := metaClient(b, etcd)
	const group, topic = "broker-f", "failover"
	var members []*replicaMember
	var namesrvs primitive.NamesrvAddr
	for id := 0; id < 3; id++ {
		m := startReplicaMember(b, etcd, group, id, "sync")
		members = append(members, m)
		namesrvs = append(namesrvs, m.Namesrv)
	}
	allInSync := func() bool { return len(inSync(b, mc, group)) == 3 }
	waitUntil(b, 60*time.Second, "all three members in sync", allInSync)
	createTopic(b, members[0].Namesrv, topic, 4)

	p, err := producer.NewDefaultProducer(producer.WithNameServer(namesrvs), producer.WithGroupName("pg-failover"),
		producer.WithInstanceName(fmt.Sprintf("pf-%d", time.Now().UnixNano())), producer.WithRetry(2),
		producer.WithSendMsgTimeout(3*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	acks, stopLoad := startLoad(b, p, topic, "f")
	consumed := &storeLog{}
	c, err := consumer.NewPushConsumer(consumer.WithNameServer(namesrvs), consumer.WithGroupName("cg-failover"),
		consumer.WithInstance(fmt.Sprintf("cf-%d", time.Now().UnixNano())), consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset))
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: "*"}, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		consumed.add(msgs)
		return consumer.ConsumeSuccess, nil
	}); err != nil {
		b.Fatal(err)
	}
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	// Brokers go first: the client's Shutdown closes channels an in-flight pull may still
	// send on (see TestTimersAndTransactionsMoveWithTheMaster).
	b.Cleanup(func() {
		stopLoad()
		for _, m := range members {
			m.Kill()
		}
		_ = c.Shutdown()
		_ = p.Shutdown()
	})
	waitUntil(b, 60*time.Second, "the consumer receiving", func() bool { return consumed.count() >= 100 })

	var fresh, send, consume []time.Duration
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		waitUntil(b, 60*time.Second, "all three members in sync before the round", allInSync)
		master := masterOf(b, mc, group)
		var victim *replicaMember
		for _, m := range members {
			if m.name == master {
				victim = m
			}
		}
		if victim == nil {
			b.Fatalf("round %d: master %q is none of the members", round, master)
		}
		oldHost := msgIDHost(b, victim.Broker)
		killed := time.Now()
		victim.Kill()
		f := firstFreshAck(b, members, victim, topic, killed)
		waitUntil(b, 90*time.Second, "the running producer's first acknowledgement after the kill", func() bool {
			return !acks.firstAfter(killed, oldHost).IsZero()
		})
		waitUntil(b, 90*time.Second, "the running consumer's first message from the new master", func() bool {
			return !consumed.firstAfter(killed, oldHost).IsZero()
		})
		fresh = append(fresh, f.Sub(killed))
		send = append(send, acks.firstAfter(killed, oldHost).Sub(killed))
		consume = append(consume, consumed.firstAfter(killed, oldHost).Sub(killed))
		b.Logf("round %d: killed %s; fresh client %v, running producer %v, running consumer %v", round, master,
			fresh[round].Round(time.Millisecond), send[round].Round(time.Millisecond), consume[round].Round(time.Millisecond))
		victim.start()
	}
	b.StopTimer()
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"fresh", fresh}, {"send", send}, {"consume", consume}} {
		p50, worst := medianMax(r.d)
		b.ReportMetric(p50.Seconds(), r.name+"-p50-s")
		b.ReportMetric(worst.Seconds(), r.name+"-max-s")
	}
	b.ReportMetric(0, "ns/op") // a round's wall time is the metrics above, not this
	b.Logf("%d rounds; acknowledged %d, failed sends %d, not SEND_OK %v; consumed %d", b.N, acks.count(), acks.failed, acks.notOK, consumed.count())
}

// storeLog records when each consumed message arrived and which broker stored it.
type storeLog struct {
	mu      sync.Mutex
	at      []time.Time
	hosts   []string
	storeMs []int64
}

func (s *storeLog) add(msgs []*primitive.MessageExt) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.at = append(s.at, now)
		s.hosts = append(s.hosts, m.OffsetMsgId[:min(16, len(m.OffsetMsgId))])
		s.storeMs = append(s.storeMs, m.StoreTimestamp)
	}
}

func (s *storeLog) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.at)
}

// firstAfter is when the first message stored after t by another broker than notHost
// arrived (zero if none yet).
func (s *storeLog) firstAfter(t time.Time, notHost string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, at := range s.at {
		if s.storeMs[i] >= t.UnixMilli() && s.hosts[i] != notHost {
			return at
		}
	}
	return time.Time{}
}

func medianMax(d []time.Duration) (p50, worst time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)-1]
}
