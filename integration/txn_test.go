package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"

	"github.com/stratamq/strata/broker/remoting"
)

// Transactional messages with the official Go client's transaction producer (PROTOCOL.md
// §5.7). The brokers run with short transaction timeouts so check-backs come in about a
// second.

var txnFlags = []string{"--txn-timeout", "1s", "--txn-check-interval", "500ms"}

type txnProducer interface {
	SendMessageInTransaction(context.Context, *primitive.Message) (*primitive.TransactionSendResult, error)
	Shutdown() error
}

// txnApp is a producer application: exec decides each local transaction, check answers the
// broker's check-backs; it records what it did per message body.
type txnApp struct {
	exec  func(body string) primitive.LocalTransactionState
	check func(body string) primitive.LocalTransactionState

	mu       sync.Mutex
	executed map[string]primitive.LocalTransactionState
	checked  map[string]int
	answers  map[string]primitive.LocalTransactionState // last check-back answer
}

func newTxnApp(exec, check func(string) primitive.LocalTransactionState) *txnApp {
	return &txnApp{exec: exec, check: check, executed: map[string]primitive.LocalTransactionState{},
		checked: map[string]int{}, answers: map[string]primitive.LocalTransactionState{}}
}

func (a *txnApp) ExecuteLocalTransaction(m *primitive.Message) primitive.LocalTransactionState {
	s := a.exec(string(m.Body))
	a.mu.Lock()
	a.executed[string(m.Body)] = s
	a.mu.Unlock()
	return s
}

func (a *txnApp) CheckLocalTransaction(m *primitive.MessageExt) primitive.LocalTransactionState {
	s := a.check(string(m.Body))
	a.mu.Lock()
	a.checked[string(m.Body)]++
	a.answers[string(m.Body)] = s
	a.mu.Unlock()
	return s
}

// ran reports whether the local transaction of body ran, and what it returned.
func (a *txnApp) ran(body string) (primitive.LocalTransactionState, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.executed[body]
	return s, ok
}

func (a *txnApp) checks(body string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.checked[body]
}

// committed lists the bodies this application committed: in its local transaction or in
// its last answer to a check-back.
func (a *txnApp) committed() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for b, s := range a.executed {
		if s == primitive.CommitMessageState || s == primitive.UnkonwnState && a.answers[b] == primitive.CommitMessageState {
			out = append(out, b)
		}
	}
	sort.Strings(out)
	return out
}

func newTxnProducer(t testing.TB, namesrv, group string, app *txnApp, opts ...producer.Option) txnProducer {
	t.Helper()
	opts = append([]producer.Option{
		producer.WithNameServer(primitive.NamesrvAddr{namesrv}),
		producer.WithGroupName(group),
		producer.WithInstanceName(fmt.Sprintf("tp-%d", time.Now().UnixNano())),
		producer.WithRetry(0), // a retried half send would be a second transaction
	}, opts...)
	p, err := producer.NewTransactionProducer(app, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("start transaction producer: %v", err)
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p
}

// txnPending asks the broker how many half messages of group have no decision.
func txnPending(t testing.TB, httpAddr, group string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/txn/pending?limit=0&group=" + group)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Pending int `json:"pending"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /txn/pending: HTTP %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l.Pending
}

func waitNoPending(t testing.TB, dev *strataProc, group string, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, "every half message of "+group+" decided", func() bool { return txnPending(t, dev.HTTP, group) == 0 })
}

// metricValue is the sum of a Prometheus counter's series on the broker.
func metricValue(t testing.TB, httpAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{' {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// storedCount is the number of messages the topic's queues hold on the broker.
func storedCount(t testing.TB, brokerAddr, topic string, queues int) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := remoting.Dial(ctx, brokerAddr, remoting.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var n int64
	for q := 0; q < queues; q++ {
		resp, err := cl.Invoke(ctx, remoting.NewRequest(remoting.CodeGetMaxOffset, remoting.ExtFields{"topic": topic, "queueId": strconv.Itoa(q)}, nil))
		if err != nil || resp.Code != remoting.RespSuccess {
			t.Fatalf("max offset of %s/%d: %v %+v", topic, q, err, resp)
		}
		off, err := resp.ExtFields.Int64("offset")
		if err != nil {
			t.Fatal(err)
		}
		n += off
	}
	return n
}

// consumeExactly consumes topic from the start and checks it delivers want, each once, and
// that the topic holds nothing else.
func consumeExactly(t testing.TB, dev *strataProc, topic string, queues int, want []string) *received {
	t.Helper()
	if got := storedCount(t, dev.Broker, topic, queues); got != int64(len(want)) {
		t.Fatalf("topic %s holds %d messages, want the %d committed ones", topic, got, len(want))
	}
	r := newReceived()
	startPushConsumer(t, dev.Namesrv, "cg-"+topic, topic, "*", "c-"+topic, r)
	r.waitFor(t, want, 60*time.Second)
	if d := r.duplicates(); len(d) > 0 {
		t.Fatalf("delivered more than once: %v", d[:min(5, len(d))])
	}
	if n := r.total(); n != len(want) {
		t.Fatalf("consumed %d distinct messages, want %d", n, len(want))
	}
	return r
}

func TestTransactionsCommitRollbackAndCheckBack(t *testing.T) {
	dev := startDev(t, t.TempDir(), txnFlags...)
	const topic, group, n = "txn-orders", "pg-txn-orders", 30
	createTopic(t, dev.Namesrv, topic, 4)
	release := make(chan struct{})
	app := newTxnApp(func(body string) primitive.LocalTransactionState {
		i, _ := strconv.Atoi(strings.TrimPrefix(body, "o-"))
		return [...]primitive.LocalTransactionState{primitive.CommitMessageState, primitive.RollbackMessageState, primitive.UnkonwnState}[i%3]
	}, func(body string) primitive.LocalTransactionState {
		<-release // the test looks at the pending ones first
		if i, _ := strconv.Atoi(strings.TrimPrefix(body, "o-")); i%2 == 0 {
			return primitive.CommitMessageState
		}
		return primitive.RollbackMessageState
	})
	p := newTxnProducer(t, dev.Namesrv, group, app)
	ids := map[string]string{}
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("o-%d", i)
		msg := primitive.NewMessage(topic, []byte(body)).WithKeys([]string{"key-" + body}).WithTag("tag-" + strconv.Itoa(i%2))
		res, err := p.SendMessageInTransaction(context.Background(), msg)
		if err != nil {
			t.Fatalf("send %s in a transaction: %v", body, err)
		}
		if res.Status != primitive.SendOK || len(res.OffsetMsgID) != 32 || res.MsgID == "" || res.State != app.exec(body) {
			t.Fatalf("transaction %s: %+v", body, res)
		}
		ids[body] = res.MsgID
	}
	waitUntil(t, 30*time.Second, "the 10 unknown transactions left pending", func() bool { return txnPending(t, dev.HTTP, group) == n/3 })
	out := runCLI(t, "", "txn", "list", "--http", dev.HTTP, "--group", group)
	if !strings.Contains(out, fmt.Sprintf("%d pending", n/3)) || !strings.Contains(out, topic) || !strings.Contains(out, ids["o-2"]) {
		t.Fatalf("strata txn list:\n%s", out)
	}
	close(release)
	waitNoPending(t, dev, group, 30*time.Second)

	var want []string
	for i := 0; i < n; i++ {
		if i%3 == 0 || i%3 == 2 && i%2 == 0 {
			want = append(want, fmt.Sprintf("o-%d", i))
		}
	}
	if got := app.committed(); !equalStrings(got, sorted(want)) {
		t.Fatalf("the application committed %v, the test expects %v", got, want)
	}
	r := consumeExactly(t, dev, topic, 4, want)
	for _, b := range want {
		if r.tags[b] != "tag-"+strconv.Itoa(must(strconv.Atoi(strings.TrimPrefix(b, "o-")))%2) {
			t.Errorf("%s delivered with tag %q", b, r.tags[b])
		}
	}
	if app.checks("o-0") != 0 || app.checks("o-1") != 0 || app.checks("o-2") == 0 {
		t.Fatalf("check-backs: committed %d, rolled back %d, unknown %d; want only the unknown one checked",
			app.checks("o-0"), app.checks("o-1"), app.checks("o-2"))
	}
	if c, rb := metricValue(t, dev.HTTP, "strata_txn_commits_total"), metricValue(t, dev.HTTP, "strata_txn_rollbacks_total"); c != float64(len(want)) || rb != float64(n-len(want)) {
		t.Fatalf("metrics: %v commits, %v rollbacks; want %d and %d", c, rb, len(want), n-len(want))
	}
}

// TestTransactionsKeepTheirPropertiesWhenConsumed checks what a consumer sees of a committed
// transactional message: its id, keys, tag and user properties, and no half-message ones.
func TestTransactionsKeepTheirPropertiesWhenConsumed(t *testing.T) {
	dev := startDev(t, t.TempDir(), txnFlags...)
	const topic, group = "txn-props", "pg-txn-props"
	createTopic(t, dev.Namesrv, topic, 1)
	commit := func(string) primitive.LocalTransactionState { return primitive.CommitMessageState }
	p := newTxnProducer(t, dev.Namesrv, group, newTxnApp(commit, commit))
	msg := primitive.NewMessage(topic, []byte("p-1")).WithKeys([]string{"order-7"}).WithTag("paid")
	msg.WithProperty("shop", "north")
	res, err := p.SendMessageInTransaction(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *primitive.MessageExt, 4)
	c, err := consumer.NewPushConsumer(consumer.WithNameServer(primitive.NamesrvAddr{dev.Namesrv}), consumer.WithGroupName("cg-"+topic),
		consumer.WithInstance("c-props"), consumer.WithConsumeFromWhere(consumer.ConsumeFromFirstOffset))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(topic, consumer.MessageSelector{Type: consumer.TAG, Expression: "paid"}, func(_ context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
		for _, m := range msgs {
			got <- m
		}
		return consumer.ConsumeSuccess, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	var m *primitive.MessageExt
	select {
	case m = <-got:
	case <-time.After(60 * time.Second):
		t.Fatal("the committed message was not consumed")
	}
	if string(m.Body) != "p-1" || m.MsgId != res.MsgID || m.GetKeys() != "order-7" || m.GetTags() != "paid" || m.GetProperty("shop") != "north" ||
		m.GetProperty(primitive.PropertyProducerGroup) != group || m.Topic != topic {
		t.Fatalf("consumed %s: id %s (sent %s), keys %q, tag %q, properties %v", m.Body, m.MsgId, res.MsgID, m.GetKeys(), m.GetTags(), m.GetProperties())
	}
	for _, gone := range []string{"REAL_TOPIC", "REAL_QID", primitive.PropertyTransactionPrepared} {
		if v := m.GetProperty(gone); v != "" {
			t.Errorf("consumed message keeps %s=%q", gone, v)
		}
	}
}

func TestTransactionResolvedByCheckBackAfterKill(t *testing.T) {
	dev := startDev(t, t.TempDir(), append([]string{"--flush", "sync"}, txnFlags...)...)
	const topic, group = "txn-crash", "pg-txn-crash"
	createTopic(t, dev.Namesrv, topic, 2)
	entered, release := make(chan struct{}), make(chan struct{})
	app := newTxnApp(func(body string) primitive.LocalTransactionState {
		switch body {
		case "before-commit":
			return primitive.CommitMessageState
		case "before-rollback":
			return primitive.RollbackMessageState
		}
		close(entered)
		<-release // the broker is killed and restarted meanwhile
		return primitive.UnkonwnState
	}, func(body string) primitive.LocalTransactionState {
		if body == "before-rollback" {
			return primitive.RollbackMessageState
		}
		return primitive.CommitMessageState
	})
	p := newTxnProducer(t, dev.Namesrv, group, app)
	for _, b := range []string{"before-commit", "before-rollback"} {
		if _, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatal(err)
		}
	}
	waitNoPending(t, dev, group, 30*time.Second)
	done := make(chan error, 1)
	go func() {
		_, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("in-doubt")))
		done <- err
	}()
	<-entered // the half message is stored (acknowledged after its fsync)
	dev.Kill()
	dev.start()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the transaction whose broker was killed: %v", err)
	}
	waitNoPending(t, dev, group, 30*time.Second)
	if app.checks("in-doubt") == 0 {
		t.Fatal("the half message left by the crash was decided without a check-back")
	}
	consumeExactly(t, dev, topic, 2, []string{"before-commit", "in-doubt"})
}

func TestCheckBackReachesAnotherProducerOfTheGroup(t *testing.T) {
	dev := startDev(t, t.TempDir(), txnFlags...)
	const topic, group = "txn-handover", "pg-txn-handover"
	createTopic(t, dev.Namesrv, topic, 1)
	unknown := func(string) primitive.LocalTransactionState { return primitive.UnkonwnState }
	commit := func(string) primitive.LocalTransactionState { return primitive.CommitMessageState }
	a := newTxnApp(unknown, unknown) // its process dies before it decides
	b := newTxnApp(commit, commit)
	pa := newTxnProducer(t, dev.Namesrv, group, a)
	pb := newTxnProducer(t, dev.Namesrv, group, b)
	if _, err := pb.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("from-b"))); err != nil {
		t.Fatal(err)
	}
	if _, err := pa.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte("from-a"))); err != nil {
		t.Fatal(err)
	}
	if err := pa.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitNoPending(t, dev, group, 30*time.Second)
	if b.checks("from-a") == 0 {
		t.Fatal("the other producer of the group was never asked about the dead producer's transaction")
	}
	consumeExactly(t, dev, topic, 1, []string{"from-a", "from-b"})
}

// TestThousandsOfConcurrentTransactions runs 2000 transactions from 16 goroutines with every
// outcome: committed, rolled back, and unknown then committed or rolled back by check-back.
func TestThousandsOfConcurrentTransactions(t *testing.T) {
	dev := startDev(t, t.TempDir(), txnFlags...)
	const topic, group, n, workers = "txn-many", "pg-txn-many", 2000, 16
	createTopic(t, dev.Namesrv, topic, 8)
	outcome := func(body string) int {
		i, _ := strconv.Atoi(strings.TrimPrefix(body, "m-"))
		return i % 4
	}
	app := newTxnApp(func(body string) primitive.LocalTransactionState {
		return [...]primitive.LocalTransactionState{primitive.CommitMessageState, primitive.RollbackMessageState,
			primitive.UnkonwnState, primitive.UnkonwnState}[outcome(body)]
	}, func(body string) primitive.LocalTransactionState {
		if outcome(body) == 2 {
			return primitive.CommitMessageState
		}
		return primitive.RollbackMessageState
	})
	p := newTxnProducer(t, dev.Namesrv, group, app)
	runTransactions(t, p, topic, "m-", n, workers, nil)
	waitNoPending(t, dev, group, 60*time.Second)
	var want []string
	for i := 0; i < n; i++ {
		if i%4 == 0 || i%4 == 2 {
			want = append(want, fmt.Sprintf("m-%d", i))
		}
	}
	consumeExactly(t, dev, topic, 8, want)
	if c := metricValue(t, dev.HTTP, "strata_txn_commits_total"); c != float64(len(want)) {
		t.Fatalf("strata_txn_commits_total %v, want %d", c, len(want))
	}
	if h := metricValue(t, dev.HTTP, "strata_txn_half_messages_total"); h != n {
		t.Fatalf("strata_txn_half_messages_total %v, want %d", h, n)
	}
}

// TestTransactionsSurviveKillUnderLoad kills the broker (sync flush) while transactions of
// every outcome are in flight: after the restart the check-backs settle the rest, and the
// topic holds exactly what the application committed, once each.
func TestTransactionsSurviveKillUnderLoad(t *testing.T) {
	dev := startDev(t, t.TempDir(), append([]string{"--flush", "sync"}, txnFlags...)...)
	const topic, group, n, workers = "txn-kill", "pg-txn-kill", 600, 8
	createTopic(t, dev.Namesrv, topic, 4)
	outcome := func(body string) int {
		i, _ := strconv.Atoi(strings.TrimPrefix(body, "k-"))
		return i % 3
	}
	var app *txnApp
	app = newTxnApp(func(body string) primitive.LocalTransactionState {
		return [...]primitive.LocalTransactionState{primitive.CommitMessageState, primitive.RollbackMessageState, primitive.UnkonwnState}[outcome(body)]
	}, func(body string) primitive.LocalTransactionState {
		// A check-back about a transaction the application never ran (its half send failed
		// as the broker died) is rolled back, as an application would.
		if s, ran := app.ran(body); !ran || s == primitive.RollbackMessageState {
			return primitive.RollbackMessageState
		}
		return primitive.CommitMessageState
	})
	p := newTxnProducer(t, dev.Namesrv, group, app)
	kill := make(chan struct{})
	restarted := make(chan struct{})
	go func() {
		<-kill
		dev.Kill()
		dev.start()
		close(restarted)
	}()
	failed := runTransactions(t, p, topic, "k-", n, workers, &killAt{at: n / 2, kill: kill, restarted: restarted})
	<-restarted
	waitNoPending(t, dev, group, 60*time.Second)
	// What the application committed: in its local transaction, or by its answer to a
	// check-back of a transaction it ran (a half message whose send failed is not its).
	var want []string
	for _, b := range app.committed() {
		if !failed[b] {
			want = append(want, b)
		}
	}
	t.Logf("%d transactions, %d half sends failed around the kill, %d committed", n, len(failed), len(want))
	if len(want) < n/4 {
		t.Fatalf("only %d committed of %d", len(want), n)
	}
	consumeExactly(t, dev, topic, 4, want)
}

// killAt asks for the broker to be killed once at transactions have completed, and makes a
// goroutine whose send fails wait for the restart.
type killAt struct {
	at        int
	kill      chan struct{}
	restarted chan struct{}
	once      sync.Once
}

// runTransactions sends n transactions named prefix+i from workers goroutines and returns
// the bodies whose half send failed.
func runTransactions(t *testing.T, p txnProducer, topic, prefix string, n, workers int, k *killAt) map[string]bool {
	t.Helper()
	var mu sync.Mutex
	failed := map[string]bool{}
	next, completed := 0, 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				body := prefix + strconv.Itoa(i)
				_, err := p.SendMessageInTransaction(context.Background(), primitive.NewMessage(topic, []byte(body)))
				mu.Lock()
				completed++
				if err != nil {
					failed[body] = true
				}
				c := completed
				mu.Unlock()
				if k == nil {
					if err != nil {
						t.Errorf("transaction %s: %v", body, err)
					}
					continue
				}
				if c == k.at {
					k.once.Do(func() { close(k.kill) })
				}
				if err != nil {
					<-k.restarted
				}
			}
		}()
	}
	wg.Wait()
	return failed
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
