package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/remoting"
)

const sqlExpr = "a BETWEEN 10 AND 20 AND color = 'red'"

// sqlMessage is message i of TestSQL92Filters: a = i%100+1 and color red, blue, green in
// turn; sqlMatches reports whether sqlExpr keeps it.
func sqlMessage(topic string, i int) *primitive.Message {
	m := primitive.NewMessage(topic, []byte(fmt.Sprintf("sql-%03d|%s", i, strings.Repeat("p", 900))))
	m.WithProperty("a", strconv.Itoa(i%100+1))
	m.WithProperty("color", []string{"red", "blue", "green"}[i%3])
	return m
}

func sqlMatches(i int) bool { a := i%100 + 1; return a >= 10 && a <= 20 && i%3 == 0 }

// The official Go client's push consumer, pull consumer (PullFrom and the lite-pull Poll) and
// the CLI's consume and export all receive exactly the messages an SQL92 expression keeps,
// from the cold tier (offloaded, gone from local disk) and the hot one alike; a bad
// expression is refused with its column.
func TestSQL92Filters(t *testing.T) {
	p := startDev(t, t.TempDir(), "--segment-size", "64KiB", "--local-retention", "0s")
	const topic, n = "sqlT", 220
	createTopic(t, p.Namesrv, topic, 1)
	prod := newProducer(t, p.Namesrv)
	var want []string
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := prod.SendSync(ctx, sqlMessage(topic, i))
		cancel()
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if sqlMatches(i) {
			want = append(want, fmt.Sprintf("sql-%03d", i))
		}
	}
	// Full 64 KiB segments (~59 messages each) are offloaded and deleted locally; the tail
	// stays on disk. Matches lie on both sides.
	c, err := client.Dial(context.Background(), p.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var hotMin int64
	waitUntil(t, 30*time.Second, "the first 100 messages to be in the bucket only", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.ConsumeStats(ctx, "probe", topic)
		if err != nil || len(st) != 1 {
			return false
		}
		hotMin = st[0].HotMinOffset
		return hotMin >= 100
	})
	if cold, _ := strconv.Atoi(strings.TrimPrefix(want[0], "sql-")); int64(cold) >= hotMin {
		t.Fatalf("no match in the cold tier (hot from %d)", hotMin)
	}
	if hot, _ := strconv.Atoi(strings.TrimPrefix(want[len(want)-1], "sql-")); int64(hot) < hotMin {
		t.Fatalf("no match in the hot tier (hot from %d): adjust the message sizes", hotMin)
	}

	// Push consumer (orderly, so a sentinel sent last arrives last): exactly the matches.
	got := sqlPushConsume(t, p.Namesrv, "sql-push", topic, func() {
		m := primitive.NewMessage(topic, []byte("sentinel"))
		m.WithProperty("a", "15")
		m.WithProperty("color", "red")
		if _, err := prod.SendSync(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}, want)
	want = append(want, "sentinel")
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("push consumer received\n%v\nwant\n%v", got, want)
	}

	// Pull consumer: PullFrom sends the SQL92 subscription with every pull.
	if got := sqlPullFrom(t, p.Namesrv, "sql-pull", topic, sqlExpr, n+1); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("PullFrom received\n%v\nwant\n%v", got, want)
	}
	// Lite pull (Poll) labels the SQL text TAG; the broker reads it as the SQL92 the
	// group's heartbeat registered.
	if got := sqlPoll(t, p.Namesrv, "sql-poll", topic, len(want)); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Poll received\n%v\nwant\n%v", got, want)
	}

	// A bad expression: PullFrom's error names the column of the bad token.
	pc := sqlPullConsumer(t, p.Namesrv, "sql-bad", topic, "a BETWEEN 10 AND AND")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = pc.PullFrom(ctx, &primitive.MessageQueue{Topic: topic, BrokerName: "broker-a", QueueId: 0}, 0, 32)
	if err == nil || !strings.Contains(err.Error(), `SQL92 filter: at column 18: unexpected "AND" (expected a value)`) {
		t.Fatalf("PullFrom with a bad expression: %v", err)
	}
	// ... and a push consumer's heartbeat is answered with the same (the Go client logs it).
	rc, err := remoting.Dial(ctx, p.Broker, remoting.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hb := fmt.Sprintf(`{"clientID":"10.9.9.9@1","producerDataSet":[],"consumerDataSet":[{"groupName":"sql-hb","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":[{"classFilterMode":false,"topic":%q,"subString":"color == 'red'","tagsSet":[],"codeSet":[],"subVersion":1,"expressionType":"SQL92"}],"unitMode":false}]}`, topic)
	resp, err := rc.Invoke(ctx, remoting.NewRequest(remoting.CodeHeartBeat, nil, []byte(hb)))
	if err != nil || resp.Code != remoting.RespSubscriptionParseFailed ||
		!strings.Contains(resp.Remark, "consumer group sql-hb: the subscription to topic sqlT is refused: SQL92 filter: at column 8: unexpected \"=\" (expected a value)") {
		t.Fatalf("heartbeat with a bad expression: %v %+v", err, resp)
	}

	// The CLI: consume --where and export --where keep the same messages.
	out := runCLI(t, "", "consume", "--namesrv", p.Namesrv, "--topic", topic, "--where", sqlExpr, "--json")
	var consumed []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m struct{ Body string }
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("consume --json line %q: %v", line, err)
		}
		body, _, _ := strings.Cut(m.Body, "|")
		consumed = append(consumed, body)
	}
	if strings.Join(consumed, ",") != strings.Join(want, ",") {
		t.Fatalf("strata consume --where printed\n%v\nwant\n%v", consumed, want)
	}
	file := filepath.Join(t.TempDir(), "sql.arrow")
	rows, fromBucket, throughBroker := parseSummary(t, runCLI(t, "", "export", "--namesrv", p.Namesrv, "--topic", topic, "--where", sqlExpr, "--out", file))
	var exported []string
	for _, m := range readExport(t, file) {
		body, _, _ := strings.Cut(string(m.Body), "|")
		exported = append(exported, body)
	}
	if strings.Join(exported, ",") != strings.Join(want, ",") || rows != len(want) || fromBucket == 0 || throughBroker == 0 {
		t.Fatalf("strata export --where: %d rows (%d from the bucket, %d through the broker)\n%v\nwant\n%v", rows, fromBucket, throughBroker, exported, want)
	}
	if msg := runCLIFails(t, "consume", "--namesrv", p.Namesrv, "--topic", topic, "--where", "a >"); !strings.Contains(msg, "--where: SQL92 filter: at column 4: unexpected end of expression (expected a value)") {
		t.Fatalf("consume with a bad --where: %s", msg)
	}
}

// sqlPushConsume runs an orderly push consumer with sqlExpr from the first offset until want
// arrived, then calls sendLast and waits for the sentinel it sends; it returns the bodies in
// arrival order.
func sqlPushConsume(t *testing.T, namesrv, group, topic string, sendLast func(), want []string) []string {
	t.Helper()
	c, err := consumer.NewPushConsumer(consumer.WithNameServer(primitive.NamesrvAddr{namesrv}), consumer.WithGroupName(group),
		consumer.WithInstance(group), consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset), consumer.WithConsumerOrder(true))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	snapshot := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
	err = c.Subscribe(topic, consumer.MessageSelector{Type: consumer.SQL92, Expression: sqlExpr},
		func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				body, _, _ := strings.Cut(string(m.Body), "|")
				got = append(got, body)
			}
			return consumer.ConsumeSuccess, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown()
	waitUntil(t, 60*time.Second, fmt.Sprintf("%d matching messages", len(want)), func() bool { return len(snapshot()) >= len(want) })
	sendLast()
	waitUntil(t, 30*time.Second, "the sentinel", func() bool {
		g := snapshot()
		return len(g) > 0 && g[len(g)-1] == "sentinel" || len(g) > len(want)+1
	})
	return snapshot()
}

func sqlPullConsumer(t *testing.T, namesrv, group, topic, expr string) interface {
	PullFrom(context.Context, *primitive.MessageQueue, int64, int) (*primitive.PullResult, error)
	Poll(context.Context, time.Duration) (*consumer.ConsumeRequest, error)
	ACK(context.Context, *consumer.ConsumeRequest, consumer.ConsumeResult)
} {
	t.Helper()
	pc, err := consumer.NewPullConsumer(consumer.WithNameServer(primitive.NamesrvAddr{namesrv}), consumer.WithGroupName(group),
		consumer.WithInstance(group), consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset))
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.Subscribe(topic, consumer.MessageSelector{Type: consumer.SQL92, Expression: expr}); err != nil {
		t.Fatal(err)
	}
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Shutdown() })
	return pc
}

// sqlPullFrom pulls queue 0 from offset 0 to end with PullFrom and returns the bodies.
func sqlPullFrom(t *testing.T, namesrv, group, topic, expr string, end int64) []string {
	t.Helper()
	pc := sqlPullConsumer(t, namesrv, group, topic, expr)
	mq := &primitive.MessageQueue{Topic: topic, BrokerName: "broker-a", QueueId: 0}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []string
	for off := int64(0); off < end; {
		res, err := pc.PullFrom(ctx, mq, off, 32)
		if err != nil {
			t.Fatalf("PullFrom %d: %v", off, err)
		}
		for _, m := range res.GetMessageExts() {
			body, _, _ := strings.Cut(string(m.Body), "|")
			got = append(got, body)
		}
		if res.NextBeginOffset <= off {
			t.Fatalf("PullFrom %d: status %v, next %d", off, res.Status, res.NextBeginOffset)
		}
		off = res.NextBeginOffset
	}
	return got
}

// sqlPoll consumes with the lite pull consumer's Poll until want messages arrived.
func sqlPoll(t *testing.T, namesrv, group, topic string, want int) []string {
	t.Helper()
	pc := sqlPullConsumer(t, namesrv, group, topic, sqlExpr)
	var got []string
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		cr, err := pc.Poll(context.Background(), 2*time.Second)
		if errors.Is(err, consumer.ErrNoNewMsg) {
			continue
		}
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		for _, m := range cr.GetMsgList() {
			body, _, _ := strings.Cut(string(m.Body), "|")
			got = append(got, body)
		}
		pc.ACK(context.Background(), cr, consumer.ConsumeSuccess)
	}
	return got
}

// runCLIFails runs a strata command that must fail and returns what it wrote to stderr.
func runCLIFails(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, strataBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("strata %v succeeded, want a failure", args)
	}
	return stderr.String()
}
