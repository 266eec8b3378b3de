package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
)

type testEnv struct {
	b  *Broker
	ns *remoting.Client
	bk *remoting.Client
}

// startMeta starts an embedded etcd and a metadata client for cluster "test"; both stop
// with the test.
func startMeta(t testing.TB) *meta.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	etcd, err := etcdembed.Start(ctx, t.TempDir(), etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	mc, err := meta.New(ctx, meta.Config{Endpoints: etcd.Endpoints(), Cluster: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	return mc
}

// startBroker runs a real broker on free ports over an embedded etcd and a temp dir.
func startBroker(t *testing.T, mutate func(*Config)) *testEnv {
	t.Helper()
	mc := startMeta(t)
	cfg := Config{
		DataDir:          t.TempDir(),
		NameServerListen: "127.0.0.1:0",
		BrokerListen:     "127.0.0.1:0",
		HTTPListen:       "127.0.0.1:0",
		Store:            store.Config{SegmentBytes: 16 << 20},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := New(cfg, mc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Close(cctx); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	env := &testEnv{b: b, ns: dial(t, b.NameServerAddr(), nil), bk: dial(t, b.BrokerAddr(), nil)}
	return env
}

func dial(t testing.TB, addr string, h remoting.Handler) *remoting.Client {
	t.Helper()
	c, err := remoting.Dial(context.Background(), addr, remoting.ClientConfig{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func invoke(t testing.TB, c *remoting.Client, code int16, ext remoting.ExtFields, body []byte) *remoting.Command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Invoke(ctx, remoting.NewRequest(code, ext, body))
	if err != nil {
		t.Fatalf("invoke %d: %v", code, err)
	}
	return resp
}

func wantCode(t testing.TB, resp *remoting.Command, code int16) {
	t.Helper()
	if resp.Code != code {
		t.Fatalf("response code %d (remark %q), want %d", resp.Code, resp.Remark, code)
	}
}

func createTopic(t testing.TB, env *testEnv, topic string, queues int) {
	t.Helper()
	q := strconv.Itoa(queues)
	wantCode(t, invoke(t, env.ns, remoting.CodeUpdateAndCreateTopic, remoting.ExtFields{
		"topic": topic, "readQueueNums": q, "writeQueueNums": q, "perm": "6"}, nil), remoting.RespSuccess)
}

func send(t testing.TB, env *testEnv, topic string, queue int, tag string, body string) *remoting.Command {
	t.Helper()
	req := sendRequest(topic, queue, tag, body)
	return invoke(t, env.bk, req.Code, req.ExtFields, req.Body)
}

// sendRequest is the SEND_MESSAGE request send makes.
func sendRequest(topic string, queue int, tag string, body string) *remoting.Command {
	props := map[string]string{}
	if tag != "" {
		props[message.PropertyTags] = tag
	}
	return remoting.NewRequest(remoting.CodeSendMessage, remoting.ExtFields{
		"producerGroup": "pg", "topic": topic, "queueId": strconv.Itoa(queue), "sysFlag": "0",
		"bornTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "flag": "0",
		"properties": message.EncodeProperties(props), "reconsumeTimes": "0", "unitMode": "false",
		"maxReconsumeTimes": "0", "batch": "false", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
	}, []byte(body))
}

func pullExt(topic string, queue int, offset int64, sub string, suspend time.Duration) remoting.ExtFields {
	sysFlag := pullSubscription
	if suspend > 0 {
		sysFlag |= pullSuspend
	}
	return remoting.ExtFields{
		"consumerGroup": "cg", "topic": topic, "queueId": strconv.Itoa(queue),
		"queueOffset": strconv.FormatInt(offset, 10), "maxMsgNums": "32", "sysFlag": strconv.Itoa(sysFlag),
		"commitOffset": "0", "suspendTimeoutMillis": strconv.FormatInt(suspend.Milliseconds(), 10),
		"subscription": sub, "subVersion": "0", "expressionType": "TAG",
	}
}

func TestRouteJSON(t *testing.T) {
	env := startBroker(t, func(c *Config) { c.AutoCreateTopics = true })
	createTopic(t, env, "Orders", 4)

	resp := invoke(t, env.ns, remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "Orders"}, nil)
	wantCode(t, resp, remoting.RespSuccess)
	body := string(resp.Body)
	if strings.ContainsAny(body, " \n") {
		t.Errorf("route JSON is not compact: %s", body)
	}
	want := fmt.Sprintf(`"brokerAddrs":{"0":"%s"}`, env.b.BrokerAddr())
	if !strings.Contains(body, want) {
		t.Errorf("route %s lacks %s", body, want)
	}
	var rd struct {
		QueueDatas []struct {
			BrokerName                    string
			ReadQueueNums, WriteQueueNums int
			Perm                          int
		}
		BrokerDatas []struct {
			Cluster, BrokerName string
			BrokerAddrs         map[string]string
		}
	}
	if err := json.Unmarshal(resp.Body, &rd); err != nil {
		t.Fatal(err)
	}
	if len(rd.QueueDatas) != 1 || rd.QueueDatas[0].WriteQueueNums != 4 || rd.QueueDatas[0].Perm != 6 || rd.QueueDatas[0].BrokerName != DefaultBrokerName {
		t.Errorf("queueDatas = %+v", rd.QueueDatas)
	}
	if len(rd.BrokerDatas) != 1 || rd.BrokerDatas[0].BrokerAddrs["0"] != env.b.BrokerAddr() || rd.BrokerDatas[0].Cluster != DefaultClusterName {
		t.Errorf("brokerDatas = %+v", rd.BrokerDatas)
	}

	resp = invoke(t, env.ns, remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "Nope"}, nil)
	wantCode(t, resp, remoting.RespTopicNotExist)

	resp = invoke(t, env.ns, remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "TBW102"}, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if !strings.Contains(string(resp.Body), `"perm":7`) {
		t.Errorf("TBW102 route %s should carry perm 7", resp.Body)
	}

	resp = invoke(t, env.ns, remoting.CodeGetAllTopicListFromNameServer, nil, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if !strings.Contains(string(resp.Body), `"Orders"`) {
		t.Errorf("topic list %s lacks Orders", resp.Body)
	}
	resp = invoke(t, env.ns, remoting.CodeGetBrokerClusterInfo, nil, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if !strings.Contains(string(resp.Body), env.b.BrokerAddr()) {
		t.Errorf("cluster info %s lacks the broker", resp.Body)
	}

	// Auto-create on first send, then the topic has its own route.
	wantCode(t, send(t, env, "AutoMade", 1, "", "x"), remoting.RespSuccess)
	wantCode(t, invoke(t, env.ns, remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "AutoMade"}, nil), remoting.RespSuccess)

	// Delete through the name server.
	wantCode(t, invoke(t, env.ns, remoting.CodeDeleteTopicInNameSrv, remoting.ExtFields{"topic": "Orders"}, nil), remoting.RespSuccess)
	wantCode(t, invoke(t, env.ns, remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "Orders"}, nil), remoting.RespTopicNotExist)
}

func TestSendPullRoundTrip(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "T", 2)
	var ids []string
	for i := range 3 {
		resp := send(t, env, "T", 1, "TagA", fmt.Sprintf("body-%d", i))
		wantCode(t, resp, remoting.RespSuccess)
		if got := resp.ExtFields["queueOffset"]; got != strconv.Itoa(i) {
			t.Errorf("send %d: queueOffset %s", i, got)
		}
		if resp.ExtFields["queueId"] != "1" || len(resp.ExtFields["msgId"]) != 32 || len(resp.ExtFields["transactionId"]) != 32 {
			t.Errorf("send %d: response ext %v", i, resp.ExtFields)
		}
		ids = append(ids, resp.ExtFields["msgId"])
	}
	resp := invoke(t, env.bk, remoting.CodePullMessage, pullExt("T", 1, 0, "*", 0), nil)
	wantCode(t, resp, remoting.RespSuccess)
	if resp.ExtFields["nextBeginOffset"] != "3" || resp.ExtFields["minOffset"] != "0" || resp.ExtFields["maxOffset"] != "3" || resp.ExtFields["suggestWhichBrokerId"] != "0" {
		t.Errorf("pull ext %v", resp.ExtFields)
	}
	msgs, err := message.DecodeAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("pulled %d messages, want 3", len(msgs))
	}
	for i, m := range msgs {
		if string(m.Body) != fmt.Sprintf("body-%d", i) || m.QueueOffset != int64(i) || m.QueueID != 1 || m.Topic != "T" {
			t.Errorf("message %d: %+v", i, m)
		}
		if m.OffsetMsgID() != ids[i] {
			t.Errorf("message %d: offset msg id %s, send said %s", i, m.OffsetMsgID(), ids[i])
		}
		if m.StoreHost.String() != env.b.BrokerAddr() || !m.BornHost.Addr().IsLoopback() {
			t.Errorf("message %d: store host %s born host %s", i, m.StoreHost, m.BornHost)
		}
		if m.UniqKey() == "" {
			t.Errorf("message %d has no UNIQ_KEY", i)
		}
	}
	// Caught up, no suspension: PULL_NOT_FOUND at once with the offsets.
	resp = invoke(t, env.bk, remoting.CodePullMessage, pullExt("T", 1, 3, "*", 0), nil)
	wantCode(t, resp, remoting.RespPullNotFound)
	if resp.ExtFields["nextBeginOffset"] != "3" {
		t.Errorf("caught-up pull ext %v", resp.ExtFields)
	}
	// Beyond the end: offset moved, back to max.
	resp = invoke(t, env.bk, remoting.CodePullMessage, pullExt("T", 1, 10, "*", 0), nil)
	wantCode(t, resp, remoting.RespPullOffsetMoved)
	if resp.ExtFields["nextBeginOffset"] != "3" {
		t.Errorf("overflow pull ext %v", resp.ExtFields)
	}
	// Offsets queries.
	for code, want := range map[int16]string{remoting.CodeGetMaxOffset: "3", remoting.CodeGetMinOffset: "0"} {
		r := invoke(t, env.bk, code, remoting.ExtFields{"topic": "T", "queueId": "1"}, nil)
		wantCode(t, r, remoting.RespSuccess)
		if r.ExtFields["offset"] != want {
			t.Errorf("code %d: offset %s, want %s", code, r.ExtFields["offset"], want)
		}
	}
	r := invoke(t, env.bk, remoting.CodeSearchOffsetByTimestamp, remoting.ExtFields{"topic": "T", "queueId": "1", "timestamp": "0"}, nil)
	if r.ExtFields["offset"] != "0" {
		t.Errorf("search by timestamp 0: %v", r.ExtFields)
	}
	r = invoke(t, env.bk, remoting.CodeGetEarliestMsgStoreTime, remoting.ExtFields{"topic": "T", "queueId": "1"}, nil)
	if ts, _ := strconv.ParseInt(r.ExtFields["timestamp"], 10, 64); ts != msgs[0].StoreTimestamp {
		t.Errorf("earliest store time %v, want %d", r.ExtFields, msgs[0].StoreTimestamp)
	}
}

func TestBatchSend(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "B", 1)
	body, err := message.AppendBatch(nil, []message.BatchEntry{
		{Body: []byte("one"), Properties: map[string]string{"TAGS": "x"}},
		{Body: []byte("two")},
		{Body: []byte("three")},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp := invoke(t, env.bk, remoting.CodeSendBatchMessage, remoting.ExtFields{
		"a": "pg", "b": "B", "c": "TBW102", "d": "4", "e": "0", "f": "0", "g": "1", "h": "0", "i": "", "j": "0", "k": "false", "l": "0", "m": "true",
	}, body)
	wantCode(t, resp, remoting.RespSuccess)
	if ids := strings.Split(resp.ExtFields["msgId"], ","); len(ids) != 3 || resp.ExtFields["queueOffset"] != "0" {
		t.Fatalf("batch response %v", resp.ExtFields)
	}
	resp = invoke(t, env.bk, remoting.CodePullMessage, pullExt("B", 0, 0, "*", 0), nil)
	wantCode(t, resp, remoting.RespSuccess)
	msgs, err := message.DecodeAll(resp.Body)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("decode: %d messages, %v", len(msgs), err)
	}
	seen := map[string]bool{}
	for i, m := range msgs {
		if m.QueueOffset != int64(i) || m.UniqKey() == "" || seen[m.UniqKey()] {
			t.Errorf("batch message %d: offset %d uniq %q", i, m.QueueOffset, m.UniqKey())
		}
		seen[m.UniqKey()] = true
	}
	if string(msgs[2].Body) != "three" || msgs[0].Tags() != "x" {
		t.Errorf("batch bodies/tags wrong: %q %q", msgs[2].Body, msgs[0].Tags())
	}
}

func TestLongPollWokenBySend(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "LP", 1)
	type result struct {
		resp *remoting.Command
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		resp, err := env.bk.Invoke(ctx, remoting.NewRequest(remoting.CodePullMessage, pullExt("LP", 0, 0, "*", 20*time.Second), nil))
		done <- result{resp, err}
	}()
	// Wait until the pull is held, then send on the same connection (held pulls must not
	// block it).
	deadline := time.Now().Add(20 * time.Second)
	for env.b.held.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("pull never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	wantCode(t, send(t, env, "LP", 0, "", "wake"), remoting.RespSuccess)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantCode(t, r.resp, remoting.RespSuccess)
	msgs, err := message.DecodeAll(r.resp.Body)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != "wake" {
		t.Fatalf("woken pull: %v %v", msgs, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("woken pull took %s", d)
	}
}

func TestPullTimeout(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "PT", 1)
	suspend := 400 * time.Millisecond
	start := time.Now()
	resp := invoke(t, env.bk, remoting.CodePullMessage, pullExt("PT", 0, 0, "*", suspend), nil)
	wantCode(t, resp, remoting.RespPullNotFound)
	if d := time.Since(start); d < suspend {
		t.Errorf("pull answered after %s, before the suspend time %s", d, suspend)
	}
	if resp.ExtFields["nextBeginOffset"] != "0" {
		t.Errorf("ext %v", resp.ExtFields)
	}
}

func TestTagFilter(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "F", 1)
	for i, tag := range []string{"TagA", "TagB", "", "TagC", "TagA"} {
		wantCode(t, send(t, env, "F", 0, tag, strconv.Itoa(i)), remoting.RespSuccess)
	}
	resp := invoke(t, env.bk, remoting.CodePullMessage, pullExt("F", 0, 0, "TagA || TagC", 0), nil)
	wantCode(t, resp, remoting.RespSuccess)
	msgs, err := message.DecodeAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Tags()+"@"+strconv.FormatInt(m.QueueOffset, 10))
	}
	if strings.Join(got, ",") != "TagA@0,TagC@3,TagA@4" || resp.ExtFields["nextBeginOffset"] != "5" {
		t.Errorf("filtered pull got %v next %s", got, resp.ExtFields["nextBeginOffset"])
	}
	// Only non-matching messages: PULL_RETRY_IMMEDIATELY past them.
	resp = invoke(t, env.bk, remoting.CodePullMessage, pullExt("F", 0, 1, "TagZ", 0), nil)
	wantCode(t, resp, remoting.RespPullRetryImmediately)
	if resp.ExtFields["nextBeginOffset"] != "5" {
		t.Errorf("no-match pull ext %v", resp.ExtFields)
	}
}

func TestConsumerOffsets(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "O", 2)
	q := remoting.ExtFields{"consumerGroup": "cg", "topic": "O", "queueId": "1"}
	// No committed offset on a queue that never lost a message, empty or not: 0, as
	// RocketMQ's broker answers.
	if r := invoke(t, env.bk, remoting.CodeQueryConsumerOffset, q, nil); r.Code != remoting.RespSuccess || r.ExtFields["offset"] != "0" {
		t.Fatalf("fresh group on an empty queue: code %d ext %v, want offset 0", r.Code, r.ExtFields)
	}
	upd := remoting.ExtFields{"consumerGroup": "cg", "topic": "O", "queueId": "1", "commitOffset": "42"}
	wantCode(t, invoke(t, env.bk, remoting.CodeUpdateConsumerOffset, upd, nil), remoting.RespSuccess)
	resp := invoke(t, env.bk, remoting.CodeQueryConsumerOffset, q, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if resp.ExtFields["offset"] != "42" {
		t.Errorf("offset %v", resp.ExtFields)
	}
	// A lower commit (a pull consumer seeking back) sets the offset.
	upd["commitOffset"] = "7"
	wantCode(t, invoke(t, env.bk, remoting.CodeUpdateConsumerOffset, upd, nil), remoting.RespSuccess)
	if r := invoke(t, env.bk, remoting.CodeQueryConsumerOffset, q, nil); r.ExtFields["offset"] != "7" {
		t.Errorf("offset after a lower commit %v, want 7", r.ExtFields)
	}
	// Commit in pull.
	ext := pullExt("O", 1, 0, "*", 0)
	ext["sysFlag"] = strconv.Itoa(pullSubscription | pullCommitOffset)
	ext["commitOffset"] = "50"
	invoke(t, env.bk, remoting.CodePullMessage, ext, nil)
	if r := invoke(t, env.bk, remoting.CodeQueryConsumerOffset, q, nil); r.ExtFields["offset"] != "50" {
		t.Errorf("offset after commit-in-pull %v", r.ExtFields)
	}
	// A fresh group on a young, non-empty queue starts at 0 (Java's rule).
	wantCode(t, send(t, env, "O", 0, "", "m"), remoting.RespSuccess)
	r := invoke(t, env.bk, remoting.CodeQueryConsumerOffset, remoting.ExtFields{"consumerGroup": "new", "topic": "O", "queueId": "0"}, nil)
	wantCode(t, r, remoting.RespSuccess)
	if r.ExtFields["offset"] != "0" {
		t.Errorf("fresh group offset %v", r.ExtFields)
	}
}

// TestUnregisterClientDropsOnlyNamedGroups: one connection carries two consumer groups and a
// producer group; UNREGISTER_CLIENT of one consumer group leaves the others registered.
func TestUnregisterClientDropsOnlyNamedGroups(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "U", 1)
	c := dial(t, env.b.BrokerAddr(), nil)
	for _, g := range []string{"cg1", "cg2"} {
		wantCode(t, invoke(t, c, remoting.CodeHeartBeat, nil, heartbeat("10.0.0.9@9", g, "U", "*")), remoting.RespSuccess)
	}
	wantCode(t, invoke(t, c, remoting.CodeUnregisterClient, remoting.ExtFields{"clientID": "10.0.0.9@9", "consumerGroup": "cg1"}, nil), remoting.RespSuccess)
	if r := invoke(t, c, remoting.CodeGetConsumerListByGroup, remoting.ExtFields{"consumerGroup": "cg1"}, nil); r.Code == remoting.RespSuccess {
		t.Fatalf("cg1 still listed after unregistering it: %s", r.Body)
	}
	r := invoke(t, c, remoting.CodeGetConsumerListByGroup, remoting.ExtFields{"consumerGroup": "cg2"}, nil)
	wantCode(t, r, remoting.RespSuccess)
	if string(r.Body) != `{"consumerIdList":["10.0.0.9@9"]}` {
		t.Fatalf("cg2 after unregistering cg1: %s", r.Body)
	}
	if got := env.b.clients.producerConns("pg"); len(got) != 1 {
		t.Fatalf("producer group pg has %d connections after unregistering a consumer group, want 1", len(got))
	}
	wantCode(t, invoke(t, c, remoting.CodeUnregisterClient, remoting.ExtFields{"clientID": "10.0.0.9@9", "producerGroup": "pg"}, nil), remoting.RespSuccess)
	if got := env.b.clients.producerConns("pg"); len(got) != 0 {
		t.Fatalf("producer group pg has %d connections after unregistering it", len(got))
	}
}

// notifyRecorder is a client-side handler that records NOTIFY_CONSUMER_IDS_CHANGED.
type notifyRecorder struct {
	ch chan string
}

func (n *notifyRecorder) ServeRemoting(_ context.Context, _ *remoting.Conn, req *remoting.Command) *remoting.Command {
	if req.Code == remoting.CodeNotifyConsumerIdsChanged {
		n.ch <- req.ExtFields["consumerGroup"]
	}
	return nil
}

func heartbeat(clientID, group, topic, sub string) []byte {
	hb := fmt.Sprintf(`{"clientID":%q,"producerDataSet":[{"groupName":"pg"}],"consumerDataSet":[{"groupName":%q,"consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","subscriptionDataSet":[{"classFilterMode":false,"topic":%q,"subString":%q,"tagsSet":[],"codeSet":["2598919"],"subVersion":1700000000000000000,"expressionType":"TAG"}],"unitMode":false}]}`,
		clientID, group, topic, sub)
	return []byte(hb)
}

func TestHeartbeatMembershipAndNotify(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "H", 1)
	rec := &notifyRecorder{ch: make(chan string, 16)}
	c1 := dial(t, env.b.BrokerAddr(), rec)
	c2 := dial(t, env.b.BrokerAddr(), nil)

	wantCode(t, invoke(t, c1, remoting.CodeHeartBeat, nil, heartbeat("10.0.0.1@1", "cg", "H", "TagA")), remoting.RespSuccess)
	waitNotify(t, rec.ch, "cg") // c1 joined
	wantCode(t, invoke(t, c2, remoting.CodeHeartBeat, nil, heartbeat("10.0.0.2@2", "cg", "H", "TagA")), remoting.RespSuccess)
	waitNotify(t, rec.ch, "cg") // c2 joined

	resp := invoke(t, c1, remoting.CodeGetConsumerListByGroup, remoting.ExtFields{"consumerGroup": "cg"}, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if string(resp.Body) != `{"consumerIdList":["10.0.0.1@1","10.0.0.2@2"]}` {
		t.Errorf("consumer list %s", resp.Body)
	}
	// The retry topic exists and has a route.
	wantCode(t, invoke(t, env.ns, remoting.CodeGetRouteInfoByTopic, remoting.ExtFields{"topic": "%RETRY%cg"}, nil), remoting.RespSuccess)
	// A pull without a subscription uses the heartbeat's.
	wantCode(t, send(t, env, "H", 0, "TagB", "b"), remoting.RespSuccess)
	wantCode(t, send(t, env, "H", 0, "TagA", "a"), remoting.RespSuccess)
	ext := pullExt("H", 0, 0, "", 0)
	ext["sysFlag"] = "0"
	resp = invoke(t, c1, remoting.CodePullMessage, ext, nil)
	wantCode(t, resp, remoting.RespSuccess)
	if msgs, _ := message.DecodeAll(resp.Body); len(msgs) != 1 || msgs[0].Tags() != "TagA" {
		t.Errorf("heartbeat subscription not applied: %v", msgs)
	}
	// Unknown group subscription → SUBSCRIPTION_NOT_EXIST.
	ext["consumerGroup"] = "other"
	wantCode(t, invoke(t, c1, remoting.CodePullMessage, ext, nil), remoting.RespSubscriptionNotExist)

	// Connection close removes c2 and notifies c1.
	c2.Close()
	waitNotify(t, rec.ch, "cg")
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp = invoke(t, c1, remoting.CodeGetConsumerListByGroup, remoting.ExtFields{"consumerGroup": "cg"}, nil)
		if string(resp.Body) == `{"consumerIdList":["10.0.0.1@1"]}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer list after close: %s", resp.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Subscription groups are listed for admin tools.
	resp = invoke(t, c1, remoting.CodeGetAllSubscriptionGroupConfig, nil, nil)
	if !strings.Contains(string(resp.Body), `"groupName":"cg"`) {
		t.Errorf("subscription groups %s", resp.Body)
	}
}

func waitNotify(t *testing.T, ch <-chan string, group string) {
	t.Helper()
	select {
	case g := <-ch:
		if g != group {
			t.Fatalf("notify for %q, want %q", g, group)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no NOTIFY_CONSUMER_IDS_CHANGED")
	}
}

func TestErrors(t *testing.T) {
	env := startBroker(t, func(c *Config) { c.MaxMessageBytes = 64 << 10 })
	createTopic(t, env, "E", 1)
	resp := send(t, env, "E", 0, "", strings.Repeat("x", 65<<10))
	wantCode(t, resp, remoting.RespMessageIllegal)
	if !strings.Contains(resp.Remark, "limit") {
		t.Errorf("oversize remark %q", resp.Remark)
	}
	resp = send(t, env, "Missing", 0, "", "x")
	wantCode(t, resp, remoting.RespTopicNotExist)
	if resp.Remark != "topic Missing does not exist; create it with `strata topic create`" {
		t.Errorf("unknown topic remark %q", resp.Remark)
	}
	resp = invoke(t, env.bk, 9999, nil, nil)
	wantCode(t, resp, remoting.RespRequestCodeNotSupported)
	// The connection survives.
	wantCode(t, send(t, env, "E", 0, "", "ok"), remoting.RespSuccess)
	// A half message is stored, not as a visible message (txn_test.go has the rest).
	ext := remoting.ExtFields{"producerGroup": "pg", "topic": "E", "queueId": "0", "sysFlag": "4",
		"properties": message.EncodeProperties(map[string]string{"TRAN_MSG": "true"})}
	wantCode(t, invoke(t, env.bk, remoting.CodeSendMessage, ext, []byte("x")), remoting.RespSuccess)
	if got := pullQueue(t, env, "E", 0); len(got) != 1 || string(got[0].Body) != "ok" {
		t.Fatalf("queue E holds %d messages after a half message, want only the plain one", len(got))
	}
}

func TestSendBackToRetryAndDLQ(t *testing.T) {
	// Every retry level waits 50ms, so the test sees the back-off without waiting 10s.
	env := startBroker(t, func(c *Config) { c.MessageDelayLevel = "50ms" })
	createTopic(t, env, "R", 1)
	wantCode(t, send(t, env, "R", 0, "", "payload"), remoting.RespSuccess)
	resp := invoke(t, env.bk, remoting.CodePullMessage, pullExt("R", 0, 0, "*", 0), nil)
	msgs, err := message.DecodeAll(resp.Body)
	if err != nil || len(msgs) != 1 {
		t.Fatal(err)
	}
	back := remoting.ExtFields{"group": "cg", "offset": strconv.FormatInt(msgs[0].CommitLogOffset, 10), "delayLevel": "0",
		"originMsgId": msgs[0].UniqKey(), "originTopic": "R", "unitMode": "false", "maxReconsumeTimes": "1"}
	sentBack := time.Now()
	wantCode(t, invoke(t, env.bk, remoting.CodeConsumerSendMsgBack, back, nil), remoting.RespSuccess)
	// The retry is parked, not on the retry topic yet; a held pull sees it arrive.
	resp = invoke(t, env.bk, remoting.CodePullMessage, pullExt("%RETRY%cg", 0, 0, "*", 10*time.Second), nil)
	wantCode(t, resp, remoting.RespSuccess)
	retried, _ := message.DecodeAll(resp.Body)
	if len(retried) != 1 || retried[0].ReconsumeTimes != 1 || retried[0].Properties[message.PropertyRetryTopic] != "R" || string(retried[0].Body) != "payload" {
		t.Fatalf("retry message %+v", retried)
	}
	if waited := retried[0].StoreTimestamp - sentBack.UnixMilli(); waited < 50 {
		t.Fatalf("retry stored %dms after the send-back, before its 50ms back-off", waited)
	}
	if p := retried[0].Properties; p[message.PropertyDelayLevel] != "" || p[message.PropertyRealTopic] != "%RETRY%cg" {
		t.Fatalf("retry properties %v", p)
	}
	// Past maxReconsumeTimes it goes to the DLQ.
	back["offset"] = strconv.FormatInt(retried[0].CommitLogOffset, 10)
	wantCode(t, invoke(t, env.bk, remoting.CodeConsumerSendMsgBack, back, nil), remoting.RespSuccess)
	resp = invoke(t, env.bk, remoting.CodePullMessage, pullExt("%DLQ%cg", 0, 0, "*", 0), nil)
	wantCode(t, resp, remoting.RespSuccess)
	// A bad offset is an error, never a silent success.
	back["offset"] = "999999999"
	if r := invoke(t, env.bk, remoting.CodeConsumerSendMsgBack, back, nil); r.Code == remoting.RespSuccess {
		t.Error("send-back of a missing message answered SUCCESS")
	}
}

func TestLocks(t *testing.T) {
	env := startBroker(t, nil)
	body := func(client string) []byte {
		return []byte(fmt.Sprintf(`{"consumerGroup":"og","clientId":%q,"mqSet":[{"topic":"T","brokerName":"broker-a","queueId":0}]}`, client))
	}
	resp := invoke(t, env.bk, remoting.CodeLockBatchMQ, nil, body("c1"))
	if !strings.Contains(string(resp.Body), `"queueId":0`) {
		t.Fatalf("c1 lock: %s", resp.Body)
	}
	resp = invoke(t, env.bk, remoting.CodeLockBatchMQ, nil, body("c2"))
	if string(resp.Body) != `{"lockOKMQSet":[]}` {
		t.Errorf("c2 got a held lock: %s", resp.Body)
	}
	wantCode(t, invoke(t, env.bk, remoting.CodeUnlockBatchMQ, nil, body("c1")), remoting.RespSuccess)
	resp = invoke(t, env.bk, remoting.CodeLockBatchMQ, nil, body("c2"))
	if !strings.Contains(string(resp.Body), `"queueId":0`) {
		t.Errorf("c2 lock after unlock: %s", resp.Body)
	}
}

func TestHTTP(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "M", 1)
	wantCode(t, send(t, env, "M", 0, "", "x"), remoting.RespSuccess)
	h := env.b.HTTPHandler()
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ready",
		"/metrics": `strata_broker_messages_in_total{topic="M"} 1`,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %.300s", path, rec.Code, body)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{},
		{DataDir: "x", AdvertisedAddr: "[::1]:10911"},
		{DataDir: "x", AdvertisedAddr: "localhost:10911"},
		{DataDir: "x", MaxSuspend: 31 * time.Second},
		{DataDir: "x", BrokerID: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	c := Config{DataDir: "x"}
	if err := c.Validate(); err != nil || c.DefaultQueueNums != 4 || c.MaxMessageBytes != 4<<20 || c.BrokerListen != ":10911" {
		t.Errorf("defaults: %v %+v", err, c)
	}
}
