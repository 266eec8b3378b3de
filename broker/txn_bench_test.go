package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/broker/txn"
)

func startTxnBenchBroker(b *testing.B, mutate func(*Config)) *Broker {
	b.Helper()
	mc := startMeta(b)
	cfg := Config{DataDir: b.TempDir(), NameServerListen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", HTTPListen: "-",
		Store: store.Config{SegmentBytes: 256 << 20}}
	if mutate != nil {
		mutate(&cfg)
	}
	br, err := New(cfg, mc)
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close(context.Background()) })
	resp := invokeB(b, dialB(b, br.NameServerAddr(), nil), remoting.CodeUpdateAndCreateTopic,
		remoting.ExtFields{"topic": "bench", "readQueueNums": "4", "writeQueueNums": "4", "perm": "6"}, nil)
	if resp.Code != remoting.RespSuccess {
		b.Fatalf("create topic: %d %s", resp.Code, resp.Remark)
	}
	return br
}

func dialB(b *testing.B, addr string, h remoting.Handler) *remoting.Client {
	b.Helper()
	c, err := remoting.Dial(context.Background(), addr, remoting.ClientConfig{Handler: h})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func invokeB(b *testing.B, c *remoting.Client, code int16, ext remoting.ExtFields, body []byte) *remoting.Command {
	resp, err := c.Invoke(context.Background(), remoting.NewRequest(code, ext, body))
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

func benchSendExt(queue int, props map[string]string, sysFlag int32) remoting.ExtFields {
	return remoting.ExtFields{
		"producerGroup": "pg-bench", "topic": "bench", "queueId": strconv.Itoa(queue), "sysFlag": strconv.Itoa(int(sysFlag)),
		"bornTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "flag": "0",
		"properties": message.EncodeProperties(props), "reconsumeTimes": "0", "unitMode": "false",
		"maxReconsumeTimes": "0", "batch": "false", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
	}
}

// BenchmarkTransactionalVsPlainSend compares, on one broker in one run, plain sends with
// transactions (half send, then END_TRANSACTION commit, oneway, as the Go client does; the
// clock stops once every commit is stored), 16 producer connections, 1 KiB bodies.
// go test -run '^$' -bench TransactionalVsPlainSend -benchtime 20000x ./broker/
func BenchmarkTransactionalVsPlainSend(b *testing.B) {
	for _, flush := range []store.FlushMode{store.FlushAsync, store.FlushSync} {
		br := startTxnBenchBroker(b, func(c *Config) { c.Store.FlushMode = flush })
		const conns = 16
		clients := make([]*remoting.Client, conns)
		for i := range clients {
			clients[i] = dialB(b, br.BrokerAddr(), nil)
		}
		body := make([]byte, 1024)
		run := func(b *testing.B, one func(c *remoting.Client, i int)) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			next := 0
			for _, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						mu.Lock()
						i := next
						next++
						mu.Unlock()
						if i >= b.N {
							return
						}
						one(c, i)
					}
				}()
			}
			wg.Wait()
		}
		b.Run(fmt.Sprintf("flush=%s/plain", flush), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			run(b, func(c *remoting.Client, i int) {
				resp, err := c.Invoke(context.Background(), remoting.NewRequest(remoting.CodeSendMessage,
					benchSendExt(i%4, map[string]string{message.PropertyUniqKey: fmt.Sprintf("P%030d", i)}, 0), body))
				if err != nil || resp.Code != remoting.RespSuccess {
					b.Errorf("send: %v %v", err, resp)
				}
			})
		})
		b.Run(fmt.Sprintf("flush=%s/txn-commit", flush), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			before := br.txnService().PendingCount()
			run(b, func(c *remoting.Client, i int) {
				props := map[string]string{message.PropertyUniqKey: fmt.Sprintf("T%030d", i), message.PropertyTransactionPrep: "true",
					message.PropertyProducerGroup: "pg-bench"}
				resp, err := c.Invoke(context.Background(), remoting.NewRequest(remoting.CodeSendMessage,
					benchSendExt(i%4, props, message.FlagTransactionPrepared), body))
				if err != nil || resp.Code != remoting.RespSuccess {
					b.Errorf("half send: %v %v", err, resp)
					return
				}
				_, pos, _ := message.ParseOffsetMsgID(resp.ExtFields["msgId"])
				end := remoting.NewRequest(remoting.CodeEndTransaction, remoting.ExtFields{
					"producerGroup": "pg-bench", "tranStateTableOffset": resp.ExtFields["queueOffset"],
					"commitLogOffset": strconv.FormatInt(pos, 10), "commitOrRollback": strconv.Itoa(int(txn.DecisionCommit)),
					"fromTransactionCheck": "false"}, nil)
				if err := c.InvokeOneway(context.Background(), end); err != nil {
					b.Error(err)
				}
			})
			for br.txnService().PendingCount() > before {
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// BenchmarkCheckBackAfterTimeout measures how long after its timeout a half message with no
// decision is checked back (timeout 200ms, default check resolution 100ms), mean and worst,
// with half messages sent at random moments of the check loop's sleep.
// go test -run '^$' -bench CheckBackAfterTimeout -benchtime 20x ./broker/
func BenchmarkCheckBackAfterTimeout(b *testing.B) {
	const timeout = 200 * time.Millisecond
	br := startTxnBenchBroker(b, func(c *Config) {
		c.Transaction.Timeout = timeout
		c.Transaction.CheckInterval = time.Hour
	})
	checks := make(chan time.Time, 1)
	var stored sync.Map // uniq → store time of its half message
	p := dialB(b, br.BrokerAddr(), remoting.HandlerFunc(func(_ context.Context, _ *remoting.Conn, req *remoting.Command) *remoting.Command {
		if req.Code == remoting.CodeCheckTransactionState {
			if m, _, err := message.Decode(req.Body); err == nil {
				stored.Store(m.UniqKey(), m.StoreTimestamp)
			}
			checks <- time.Now()
		}
		return nil
	}))
	var total, worst time.Duration
	for i := 0; b.Loop(); i++ {
		time.Sleep(rand.N(250 * time.Millisecond)) // not in step with the check loop
		uniq := fmt.Sprintf("C%030d", i)
		props := map[string]string{message.PropertyUniqKey: uniq, message.PropertyTransactionPrep: "true", message.PropertyProducerGroup: "pg-bench"}
		resp := invokeB(b, p, remoting.CodeSendMessage, benchSendExt(0, props, message.FlagTransactionPrepared), []byte("x"))
		if resp.Code != remoting.RespSuccess {
			b.Fatalf("half send: %d %s", resp.Code, resp.Remark)
		}
		at := <-checks
		ts, ok := stored.Load(uniq)
		if !ok {
			b.Fatal("check-back for another message")
		}
		late := at.Sub(time.UnixMilli(ts.(int64)).Add(timeout))
		total += late
		worst = max(worst, late)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-after-timeout")
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms-after-timeout")
}
