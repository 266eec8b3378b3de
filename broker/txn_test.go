package broker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/timer"
	"github.com/stratamq/strata/broker/txn"
)

// producerClient is a raw remoting connection acting as a transactional producer: it
// records the check-backs the broker sends it.
type producerClient struct {
	*remoting.Client
	mu     sync.Mutex
	checks []*remoting.Command
	got    chan struct{}
}

func dialProducer(t *testing.T, env *testEnv) *producerClient {
	t.Helper()
	p := &producerClient{got: make(chan struct{}, 64)}
	p.Client = dial(t, env.b.BrokerAddr(), remoting.HandlerFunc(func(_ context.Context, _ *remoting.Conn, req *remoting.Command) *remoting.Command {
		if req.Code == remoting.CodeCheckTransactionState {
			p.mu.Lock()
			p.checks = append(p.checks, req)
			p.mu.Unlock()
			p.got <- struct{}{}
		}
		return nil
	}))
	return p
}

// waitCheck waits for the next check-back.
func (p *producerClient) waitCheck(t *testing.T, timeout time.Duration) *remoting.Command {
	t.Helper()
	select {
	case <-p.got:
	case <-time.After(timeout):
		t.Fatalf("no check-back within %v", timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.checks[0]
	p.checks = p.checks[1:]
	return c
}

func sendHalf(t *testing.T, c *remoting.Client, group, topic string, queue int, body string, props map[string]string) *remoting.Command {
	t.Helper()
	p := map[string]string{message.PropertyTransactionPrep: "true", message.PropertyProducerGroup: group, message.PropertyUniqKey: "U-" + body}
	for k, v := range props {
		p[k] = v
	}
	return invoke(t, c, remoting.CodeSendMessage, remoting.ExtFields{
		"producerGroup": group, "topic": topic, "queueId": strconv.Itoa(queue), "sysFlag": strconv.Itoa(int(message.FlagTransactionPrepared)),
		"bornTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "flag": "0",
		"properties": message.EncodeProperties(p), "reconsumeTimes": "0", "unitMode": "false",
		"maxReconsumeTimes": "0", "batch": "false", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
	}, []byte(body))
}

// endTransaction sends END_TRANSACTION oneway, as the Go client does, for a half-send response.
func endTransaction(t *testing.T, c *remoting.Client, group string, sendResp *remoting.Command, decision txn.Decision, fromCheck bool) {
	t.Helper()
	_, pos, err := message.ParseOffsetMsgID(sendResp.ExtFields["msgId"])
	if err != nil {
		t.Fatal(err)
	}
	endAt(t, c, group, sendResp.ExtFields["queueOffset"], strconv.FormatInt(pos, 10), decision, fromCheck)
}

func endAt(t *testing.T, c *remoting.Client, group, tranStateTableOffset, commitLogOffset string, decision txn.Decision, fromCheck bool) {
	t.Helper()
	req := remoting.NewRequest(remoting.CodeEndTransaction, remoting.ExtFields{
		"producerGroup": group, "tranStateTableOffset": tranStateTableOffset, "commitLogOffset": commitLogOffset,
		"commitOrRollback": strconv.Itoa(int(decision)), "fromTransactionCheck": strconv.FormatBool(fromCheck),
		"msgId": "", "transactionId": "",
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.InvokeOneway(ctx, req); err != nil {
		t.Fatal(err)
	}
}

// pullAll pulls (topic, queue) from offset 0 without waiting.
func pullQueue(t *testing.T, env *testEnv, topic string, queue int) []*message.Message {
	t.Helper()
	resp := invoke(t, env.bk, remoting.CodePullMessage, pullExt(topic, queue, 0, "*", 0), nil)
	if resp.Code == remoting.RespPullNotFound {
		return nil
	}
	wantCode(t, resp, remoting.RespSuccess)
	msgs, err := message.DecodeAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// waitPulled polls until (topic, queue) holds n messages (END_TRANSACTION is oneway).
func waitPulled(t *testing.T, env *testEnv, topic string, queue, n int) []*message.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := pullQueue(t, env, topic, queue)
		if len(msgs) >= n || time.Now().After(deadline) {
			if len(msgs) != n {
				t.Fatalf("%s/%d holds %d messages, want %d", topic, queue, len(msgs), n)
			}
			return msgs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fastTxn(c *Config) {
	c.Transaction.Timeout = 200 * time.Millisecond
	c.Transaction.CheckInterval = 200 * time.Millisecond
	c.Transaction.CheckResolution = 10 * time.Millisecond
}

func TestTransactionalSendCommitAndRollbackOverTheWire(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "orders", 2)
	p := dialProducer(t, env)
	resp := sendHalf(t, p.Client, "pg", "orders", 1, "commit-me", map[string]string{message.PropertyTags: "paid"})
	wantCode(t, resp, remoting.RespSuccess)
	if resp.ExtFields["queueId"] != "1" || resp.ExtFields["transactionId"] != "U-commit-me" || len(resp.ExtFields["msgId"]) != 32 || resp.ExtFields["queueOffset"] != "0" {
		t.Fatalf("half send response %v", resp.ExtFields)
	}
	if got := pullQueue(t, env, "orders", 1); len(got) != 0 {
		t.Fatalf("a half message is visible before its commit")
	}
	wantCode(t, invoke(t, env.bk, remoting.CodePullMessage, pullExt(txn.HalfTopic, 0, 0, "*", 0), nil), remoting.RespTopicNotExist)
	rb := sendHalf(t, p.Client, "pg", "orders", 1, "roll-me-back", nil)
	wantCode(t, rb, remoting.RespSuccess)
	endTransaction(t, p.Client, "pg", rb, txn.DecisionRollback, false)
	endTransaction(t, p.Client, "pg", resp, txn.DecisionCommit, false)
	endTransaction(t, p.Client, "pg", resp, txn.DecisionCommit, false) // repeated
	msgs := waitPulled(t, env, "orders", 1, 1)
	m := msgs[0]
	if string(m.Body) != "commit-me" || m.UniqKey() != "U-commit-me" || m.Tags() != "paid" || m.SysFlag&message.FlagTransactionMask != message.FlagTransactionCommit {
		t.Fatalf("committed message %+v", m)
	}
	if _, pos, _ := message.ParseOffsetMsgID(resp.ExtFields["msgId"]); m.PreparedTransactionOffset != pos {
		t.Fatalf("committed copy names half %d, the half is at %d", m.PreparedTransactionOffset, pos)
	}
	waitUntilTrue(t, "no pending half message", func() bool { return env.b.txnService().PendingCount() == 0 })
	if got := pullQueue(t, env, "orders", 1); len(got) != 1 {
		t.Fatalf("%d messages after the repeated commit, want 1", len(got))
	}
}

func TestCheckBackReachesAnotherProducerOfTheGroup(t *testing.T) {
	env := startBroker(t, fastTxn)
	createTopic(t, env, "orders", 1)
	a, b := dialProducer(t, env), dialProducer(t, env)
	// b is known by heartbeat, as a Go producer is after its first 30 s tick.
	hb, _ := json.Marshal(map[string]any{"clientID": "b", "producerDataSet": []map[string]string{{"groupName": "pg"}}})
	wantCode(t, invoke(t, b.Client, remoting.CodeHeartBeat, nil, hb), remoting.RespSuccess)
	resp := sendHalf(t, a.Client, "pg", "orders", 0, "orphan", nil)
	wantCode(t, resp, remoting.RespSuccess)
	a.Close() // the producer that sent it dies before ending it
	check := b.waitCheck(t, 10*time.Second)
	ext := check.ExtFields
	_, pos, _ := message.ParseOffsetMsgID(resp.ExtFields["msgId"])
	if ext["tranStateTableOffset"] != resp.ExtFields["queueOffset"] || ext["commitLogOffset"] != strconv.FormatInt(pos, 10) ||
		ext["msgId"] != "U-orphan" || ext["transactionId"] != "U-orphan" || ext["offsetMsgId"] != resp.ExtFields["msgId"] {
		t.Fatalf("check-back header %v for send %v", ext, resp.ExtFields)
	}
	body, _, err := message.Decode(check.Body)
	if err != nil || body.Topic != "orders" || body.Properties[message.PropertyProducerGroup] != "pg" || string(body.Body) != "orphan" {
		t.Fatalf("check-back body %+v, %v", body, err)
	}
	endAt(t, b.Client, "pg", ext["tranStateTableOffset"], ext["commitLogOffset"], txn.DecisionCommit, true)
	waitPulled(t, env, "orders", 0, 1)
}

func TestSystemTopicsRefuseSendsAndCreation(t *testing.T) {
	env := startBroker(t, func(c *Config) { c.AutoCreateTopics = true })
	for _, topic := range []string{txn.HalfTopic, txn.OpTopic, txn.CheckMaxTopic, txn.CheckpointTopic} {
		wantCode(t, send(t, env, topic, 0, "", "x"), remoting.RespNoPermission)
		wantCode(t, invoke(t, env.ns, remoting.CodeUpdateAndCreateTopic, remoting.ExtFields{"topic": topic, "readQueueNums": "1", "writeQueueNums": "1"}, nil),
			remoting.RespInvalidParameter)
		wantCode(t, invoke(t, env.bk, remoting.CodeDeleteTopicInBroker, remoting.ExtFields{"topic": topic}, nil), remoting.RespInvalidParameter)
	}
}

// TestCommittedMessageIsRoutedAsASend holds for any routeVisible: a committed message lands
// where routeVisible sends an identical message (with scheduled delivery, a delayed one is
// parked at its commit).
func TestCommittedMessageIsRoutedAsASend(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "orders", 1)
	p := dialProducer(t, env)
	props := map[string]string{message.PropertyDelayLevel: "2", message.PropertyTags: "later"}
	resp := sendHalf(t, p.Client, "pg", "orders", 0, "delayed", props)
	wantCode(t, resp, remoting.RespSuccess)
	want := &message.Message{Topic: "orders", Properties: map[string]string{message.PropertyDelayLevel: "2", message.PropertyTags: "later"}}
	wp := sendProps{m: want.Properties}
	if _, err := env.b.routeVisible(want, &wp); err != nil {
		t.Fatal(err)
	}
	endTransaction(t, p.Client, "pg", resp, txn.DecisionCommit, false)
	waitUntilTrue(t, "the commit", func() bool { return env.b.txnService().PendingCount() == 0 })
	res, _, err := txn.StoreLog{Store: env.b.store}.ReadQueue(context.Background(), want.Topic, want.QueueID, 0, 10)
	if err != nil || len(res) != 1 {
		t.Fatalf("%s/%d holds %d records (%v), want the committed message", want.Topic, want.QueueID, len(res), err)
	}
	m, _, err := message.Decode(res[0])
	if err != nil || m.UniqKey() != "U-delayed" {
		t.Fatalf("routed record %+v, %v", m, err)
	}
	for k, v := range wp.m {
		if k == timer.PropertyTimerOutMs {
			// The due time counts from the routing: the commit comes after the reference.
			got, err1 := strconv.ParseInt(m.Properties[k], 10, 64)
			ref, err2 := strconv.ParseInt(v, 10, 64)
			if err1 != nil || err2 != nil || got < ref {
				t.Errorf("committed message due at %q, before the reference routed earlier at %q", m.Properties[k], v)
			}
			continue
		}
		if m.Properties[k] != v {
			t.Errorf("routed property %s = %q, routeVisible gives %q", k, m.Properties[k], v)
		}
	}
}

func TestTxnPendingHTTP(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "orders", 1)
	p := dialProducer(t, env)
	wantCode(t, sendHalf(t, p.Client, "pg-a", "orders", 0, "a1", nil), remoting.RespSuccess)
	wantCode(t, sendHalf(t, p.Client, "pg-a", "orders", 0, "a2", nil), remoting.RespSuccess)
	wantCode(t, sendHalf(t, p.Client, "pg-b", "orders", 0, "b1", nil), remoting.RespSuccess)
	get := func(q string) (int, txn.PendingList) {
		resp, err := http.Get("http://" + env.b.HTTPAddr() + "/txn/pending" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l txn.PendingList
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
				t.Fatal(err)
			}
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		return resp.StatusCode, l
	}
	code, l := get("?group=pg-a&limit=1")
	if code != http.StatusOK || l.Pending != 2 || len(l.Halves) != 1 || l.Halves[0].TransactionID != "U-a1" || l.Halves[0].Topic != "orders" {
		t.Fatalf("pg-a: HTTP %d, %+v", code, l)
	}
	if _, l := get(""); l.Pending != 3 || len(l.Halves) != 3 {
		t.Fatalf("all: %+v", l)
	}
	if code, _ := get("?limit=x"); code != http.StatusBadRequest {
		t.Fatalf("bad limit: HTTP %d", code)
	}
}

func waitUntilTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckBackTriesTheNextConnectionWhenAWriteFails(t *testing.T) {
	env := startBroker(t, nil)
	dead, live := dialProducer(t, env), dialProducer(t, env)
	hb, _ := json.Marshal(map[string]any{"clientID": "p", "producerDataSet": []map[string]string{{"groupName": "pg"}}})
	wantCode(t, invoke(t, dead.Client, remoting.CodeHeartBeat, nil, hb), remoting.RespSuccess)
	conns := env.b.clients.producerConns("pg")
	if len(conns) != 1 {
		t.Fatalf("%d connections registered", len(conns))
	}
	broken := conns[0]
	broken.Close() // its registration goes with it; put it back, as a close not yet noticed
	waitUntilTrue(t, "the closed connection to leave the registry", func() bool { return len(env.b.clients.producerConns("pg")) == 0 })
	env.b.clients.mu.Lock()
	env.b.clients.producers["pg"] = map[uint64]*producerChannel{broken.ID(): {conn: broken, lastHeartbeat: time.Now()}}
	env.b.clients.mu.Unlock()
	ctx := context.Background()
	req := txn.CheckRequest{Group: "pg", MsgID: "m", Body: []byte("not decoded by this client")}
	if err := (txnChecker{env.b}).CheckBack(ctx, req); err == nil || errors.Is(err, txn.ErrNoProducer) {
		t.Fatalf("check-back over a broken connection only: %v, want the write error", err)
	}
	wantCode(t, invoke(t, live.Client, remoting.CodeHeartBeat, nil, hb), remoting.RespSuccess)
	for i := 0; i < 20; i++ { // the registry lists connections in random order
		if err := (txnChecker{env.b}).CheckBack(ctx, req); err != nil {
			t.Fatalf("check-back with a live connection left: %v", err)
		}
		live.waitCheck(t, 10*time.Second)
	}
}
