package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

// TestColdPullsWithRecycledBlocks: consumers on several connections replay a cold queue at
// once through a block cache of a few blocks, so blocks are evicted and their buffers
// decoded into again while other connections' pull responses still send records from
// them. Every message arrives intact: a buffer is reused only once the responses sending
// from it have been written.
func TestColdPullsWithRecycledBlocks(t *testing.T) {
	e := newTierEnv(t)
	env := e.start(t, t.TempDir(), func(c *Config) { c.Tier.CacheBytes = 32 << 10 })
	createTopic(t, env, "Cold", 1)
	const n = 400
	produce(t, env, "Cold", 0, n)
	st := env.b.Store()
	waitFor(t, "every segment offloaded and deleted locally", func() bool {
		return st.MinOffset("Cold", 0) == n && env.b.Tier().OffloadWatermark() >= st.MinCommitLogOffset()
	})
	pullConcurrently(t, env, "Cold", n)
}

// TestHotPullsWithRecycledBuffers: the same for a queue on local disk, whose reads come in
// buffers recycled once the pull answering with them has been written.
func TestHotPullsWithRecycledBuffers(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "Hot", 1)
	const n = 400
	produce(t, env, "Hot", 0, n)
	pullConcurrently(t, env, "Hot", n)
}

// pullConcurrently reads queue 0 of topic from offset 0 to n three times over on each of 4
// connections at once, and checks every message's offset and body.
func pullConcurrently(t *testing.T, env *testEnv, topic string, n int64) {
	t.Helper()
	var wg sync.WaitGroup
	for c := range 4 {
		bk := dial(t, env.b.BrokerAddr(), nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 3 {
				for off := int64(0); off < n; {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					resp, err := bk.Invoke(ctx, remoting.NewRequest(remoting.CodePullMessage, pullExt(topic, 0, off, "*", 0), nil))
					cancel()
					if err != nil || resp.Code != remoting.RespSuccess {
						t.Errorf("consumer %d round %d: pull at %d: %v %+v", c, round, off, err, resp)
						return
					}
					msgs, err := message.DecodeAll(resp.Body)
					if err != nil || len(msgs) == 0 {
						t.Errorf("consumer %d round %d: pull at %d: %d messages, %v", c, round, off, len(msgs), err)
						return
					}
					for _, m := range msgs {
						if m.QueueOffset != off || !strings.HasPrefix(string(m.Body), fmt.Sprintf("m%04d-", off)) {
							t.Errorf("consumer %d round %d: message at %d has offset %d, body %.6q", c, round, off, m.QueueOffset, m.Body)
							return
						}
						off++
					}
				}
			}
		}()
	}
	wg.Wait()
}
