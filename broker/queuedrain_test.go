package broker

import (
	"context"
	"testing"

	"github.com/stratamq/strata/broker/remoting"
)

// TestShrinkLowersWriteQueuesAtOnceAndReadQueuesOnceDrained: after a shrink from 4 to 2
// queues, sends to queue 3 are refused at once, pulls from it still work, and the read count
// drops to 2 only after the group that consumes the topic committed past queue 3's last
// message.
func TestShrinkLowersWriteQueuesAtOnceAndReadQueuesOnceDrained(t *testing.T) {
	env := startBroker(t, nil)
	ctx := context.Background()
	createTopic(t, env, "S", 4)
	for i := range 3 {
		wantCode(t, send(t, env, "S", 3, "", "m"+string(rune('0'+i))), remoting.RespSuccess)
	}
	wantCode(t, send(t, env, "S", 0, "", "q0"), remoting.RespSuccess)
	commit := func(q, off string) {
		wantCode(t, invoke(t, env.bk, remoting.CodeUpdateConsumerOffset, remoting.ExtFields{
			"consumerGroup": "cg", "topic": "S", "queueId": q, "commitOffset": off}, nil), remoting.RespSuccess)
	}
	commit("0", "1")
	// The shrink, as `strata topic update --queues 2` sends it.
	wantCode(t, invoke(t, env.ns, remoting.CodeUpdateAndCreateTopic, remoting.ExtFields{
		"topic": "S", "readQueueNums": "2", "writeQueueNums": "2", "perm": "6"}, nil), remoting.RespSuccess)
	share := func() groupQueues {
		ti, _ := env.b.meta.topic("S")
		s, _ := ti.share(env.b.cfg.BrokerName)
		return s
	}
	if s := share(); s.WriteQueueNums != 2 || s.ReadQueueNums != 4 {
		t.Fatalf("after the shrink: %+v, want write 2 read 4", s)
	}
	wantCode(t, send(t, env, "S", 3, "", "late"), remoting.RespInvalidParameter)
	wantCode(t, invoke(t, env.bk, remoting.CodePullMessage, pullExt("S", 3, 0, "*", 0), nil), remoting.RespSuccess)

	env.b.drainReadQueues(ctx)
	if s := share(); s.ReadQueueNums != 4 {
		t.Fatalf("read queues lowered to %d before queue 3 was drained", s.ReadQueueNums)
	}
	commit("3", "3")
	env.b.drainReadQueues(ctx)
	waitFor(t, "read queues lowered to 2 once drained", func() bool { return share().ReadQueueNums == 2 })
}
