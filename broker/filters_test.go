package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

// appendProps stores one message per property map in queue 0 of topic, straight into the
// store (a send per message would only slow the test down), with bodies "m<i>".
func appendProps(t testing.TB, b *Broker, topic string, props []map[string]string) {
	t.Helper()
	var recs [][]byte
	for i, p := range props {
		m := &message.Message{Topic: topic, BornTimestamp: time.Now().UnixMilli(), BornHost: b.storeHost, StoreHost: b.storeHost,
			Body: []byte(fmt.Sprintf("m%d", i)), Properties: p}
		rec, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	for len(recs) > 0 {
		n := min(len(recs), 32) // a batch must fit one segment of the tier tests
		if _, err := b.Store().Append(context.Background(), recs[:n]...); err != nil {
			t.Fatal(err)
		}
		recs = recs[n:]
	}
}

// numbered gives messages a = 1..n, color red for even a and blue for odd.
func numbered(n int) []map[string]string {
	out := make([]map[string]string, n)
	for i := range out {
		color := "blue"
		if (i+1)%2 == 0 {
			color = "red"
		}
		out[i] = map[string]string{"a": strconv.Itoa(i + 1), "color": color, message.PropertyTags: "T" + strconv.Itoa(i%3)}
	}
	return out
}

func sqlPullExt(topic string, offset int64, expr string, maxMsgs int) remoting.ExtFields {
	ext := pullExt(topic, 0, offset, expr, 0)
	ext["expressionType"] = "SQL92"
	ext["maxMsgNums"] = strconv.Itoa(maxMsgs)
	return ext
}

// pullBodies pulls once and returns the bodies and nextBeginOffset.
func pullBodies(t *testing.T, c *remoting.Client, ext remoting.ExtFields) ([]string, int64, *remoting.Command) {
	t.Helper()
	resp := invoke(t, c, remoting.CodePullMessage, ext, nil)
	next, _ := resp.ExtFields.Int64("nextBeginOffset")
	if resp.Code != remoting.RespSuccess {
		return nil, next, resp
	}
	msgs, err := message.DecodeAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Body))
	}
	return out, next, resp
}

func TestSQL92Pull(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "S", 1)
	appendProps(t, env.b, "S", numbered(100))
	// a = 10..20 and red: a even, i = a-1.
	got, next, resp := pullBodies(t, env.bk, sqlPullExt("S", 0, "a BETWEEN 10 AND 20 AND color = 'red'", 32))
	if resp.Code != remoting.RespSuccess || strings.Join(got, ",") != "m9,m11,m13,m15,m17,m19" || next != 100 {
		t.Fatalf("pull: code %d %q, got %v next %d", resp.Code, resp.Remark, got, next)
	}
	// Nothing matches: PULL_RETRY_IMMEDIATELY past everything examined.
	_, next, resp = pullBodies(t, env.bk, sqlPullExt("S", 0, "a > 1000", 32))
	if resp.Code != remoting.RespPullRetryImmediately || next != 100 {
		t.Fatalf("no match: code %d next %d", resp.Code, next)
	}
	// A full response stops at the first match it cannot take: 5 of the even a, then next
	// is the offset of the sixth.
	got, next, _ = pullBodies(t, env.bk, sqlPullExt("S", 0, "color = 'red'", 5))
	if strings.Join(got, ",") != "m1,m3,m5,m7,m9" || next != 11 {
		t.Fatalf("bounded pull: %v next %d", got, next)
	}
	// Everything matches: the store's answer as it is.
	got, next, _ = pullBodies(t, env.bk, sqlPullExt("S", 90, "a IS NOT NULL", 32))
	if len(got) != 10 || got[0] != "m90" || next != 100 {
		t.Fatalf("all match: %v next %d", got, next)
	}
	// A property that does not parse as the literal's type is no match, not an error.
	_, _, resp = pullBodies(t, env.bk, sqlPullExt("S", 0, "color > 5", 32))
	if resp.Code != remoting.RespPullRetryImmediately {
		t.Fatalf("type mismatch: code %d %q", resp.Code, resp.Remark)
	}
	// A bad expression is refused with the position of the bad token.
	_, _, resp = pullBodies(t, env.bk, sqlPullExt("S", 0, "a BETWEEN 10 AND AND", 32))
	if resp.Code != remoting.RespSubscriptionParseFailed ||
		resp.Remark != `consumer group cg: the subscription to topic S is refused: SQL92 filter: at column 18: unexpected "AND" (expected a value)` {
		t.Fatalf("bad expression: code %d %q", resp.Code, resp.Remark)
	}
	// An unknown expression type too.
	ext := sqlPullExt("S", 0, "x", 32)
	ext["expressionType"] = "XPATH"
	if _, _, resp = pullBodies(t, env.bk, ext); resp.Code != remoting.RespSubscriptionParseFailed || !strings.Contains(resp.Remark, `expression type "XPATH" is not supported`) {
		t.Fatalf("unknown type: code %d %q", resp.Code, resp.Remark)
	}
	// Retry topics are not filtered.
	createTopic(t, env, "%RETRY%cg", 1)
	appendProps(t, env.b, "%RETRY%cg", numbered(3))
	if got, _, _ := pullBodies(t, env.bk, sqlPullExt("%RETRY%cg", 0, "a > 1000", 32)); len(got) != 3 {
		t.Fatalf("retry topic filtered: %v", got)
	}
}

func TestSQL92PullScansOnToAMatch(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "Sparse", 1)
	props := make([]map[string]string, 1000)
	for i := range props {
		props[i] = map[string]string{"k": strconv.Itoa(i)}
	}
	appendProps(t, env.b, "Sparse", props)
	// One match 700 messages in: found by one pull of 32, in growing windows.
	got, next, _ := pullBodies(t, env.bk, sqlPullExt("Sparse", 0, "k = 700", 32))
	if strings.Join(got, ",") != "m700" || next != 1000 {
		t.Fatalf("sparse match: %v next %d", got, next)
	}

	limited := startBroker(t, func(c *Config) { c.MaxFilterScanMessages = 100 })
	createTopic(t, limited, "Sparse", 1)
	appendProps(t, limited.b, "Sparse", props)
	_, next, resp := pullBodies(t, limited.bk, sqlPullExt("Sparse", 0, "k = 700", 32))
	if resp.Code != remoting.RespPullRetryImmediately || next != 100 {
		t.Fatalf("scan limit: code %d next %d, want 20 past the 100 examined", resp.Code, next)
	}
}

// heartbeatSQL is a HEART_BEAT body with one SQL92 subscription of group cg.
func heartbeatSQL(topic, expr string) []byte {
	return []byte(fmt.Sprintf(`{"clientID":"10.0.0.1@1","producerDataSet":[],"consumerDataSet":[{"groupName":"cg","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":[{"classFilterMode":false,"topic":%q,"subString":%q,"tagsSet":[],"codeSet":[],"subVersion":1700000000000000000,"expressionType":"SQL92"},{"classFilterMode":false,"topic":"%%RETRY%%cg","subString":"*","tagsSet":[],"codeSet":[],"subVersion":1,"expressionType":"TAG"}],"unitMode":false}]}`, topic, expr))
}

func TestSQL92Heartbeat(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "H", 1)
	appendProps(t, env.b, "H", numbered(30))
	// A push consumer's pull carries no subscription: the heartbeat's applies.
	ext := pullExt("H", 0, 0, "", 0)
	ext["sysFlag"] = strconv.Itoa(pullSuspend)
	wantCode(t, invoke(t, env.bk, remoting.CodeHeartBeat, nil, heartbeatSQL("H", "a < 4")), remoting.RespSuccess)
	if got, _, resp := pullBodies(t, env.bk, ext); strings.Join(got, ",") != "m0,m1,m2" {
		t.Fatalf("heartbeat subscription: %v (code %d %q)", got, resp.Code, resp.Remark)
	}
	// A changed subscription applies from the next pull.
	wantCode(t, invoke(t, env.bk, remoting.CodeHeartBeat, nil, heartbeatSQL("H", "a > 28")), remoting.RespSuccess)
	if got, _, _ := pullBodies(t, env.bk, ext); strings.Join(got, ",") != "m28,m29" {
		t.Fatalf("changed subscription: %v", got)
	}
	// The Go client's lite pull sends the SQL text labelled TAG: read as the SQL92 the
	// group registered.
	lite := pullExt("H", 0, 0, "a > 28", 0)
	if got, _, resp := pullBodies(t, env.bk, lite); strings.Join(got, ",") != "m28,m29" {
		t.Fatalf("SQL92 labelled TAG: %v (code %d %q)", got, resp.Code, resp.Remark)
	}
	// A bad expression is refused at heartbeat time, with the bad token's column; the rest
	// of the heartbeat is registered, and pulls relying on it report the same error.
	resp := invoke(t, env.bk, remoting.CodeHeartBeat, nil, heartbeatSQL("H", "a > 28 AND color = red'"))
	want := `consumer group cg: the subscription to topic H is refused: SQL92 filter: at column 23: the string starting here has no closing quote (write '' for a quote inside a string)`
	if resp.Code != remoting.RespSubscriptionParseFailed || !strings.HasPrefix(resp.Remark, want) {
		t.Fatalf("bad heartbeat: code %d %q", resp.Code, resp.Remark)
	}
	if ids := env.b.clients.consumerIDs("cg"); len(ids) != 1 {
		t.Fatalf("consumer ids after a refused subscription: %v", ids)
	}
	_, _, resp = pullBodies(t, env.bk, ext)
	if resp.Code != remoting.RespSubscriptionParseFailed || !strings.Contains(resp.Remark, "registered by heartbeat was refused: SQL92 filter: at column 23") {
		t.Fatalf("pull after a refused subscription: code %d %q", resp.Code, resp.Remark)
	}
	// The retry topic's subscription in the same heartbeat was registered.
	createTopic(t, env, "%RETRY%cg", 1)
	retry := pullExt("%RETRY%cg", 0, 0, "", 0)
	retry["sysFlag"] = "0"
	if resp := invoke(t, env.bk, remoting.CodePullMessage, retry, nil); resp.Code == remoting.RespSubscriptionNotExist {
		t.Fatalf("retry subscription not registered: %q", resp.Remark)
	}
}

// A held pull with an SQL92 filter stays held past messages it does not match and answers
// with the first one it does.
func TestSQL92LongPoll(t *testing.T) {
	env := startBroker(t, nil)
	createTopic(t, env, "LP", 1)
	ext := sqlPullExt("LP", 0, "color = 'red'", 32)
	ext["sysFlag"] = strconv.Itoa(pullSubscription | pullSuspend)
	ext["suspendTimeoutMillis"] = "20000"
	done := make(chan *remoting.Command, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := env.bk.Invoke(ctx, remoting.NewRequest(remoting.CodePullMessage, ext, nil))
		if err != nil {
			resp = remoting.NewResponse(remoting.NewRequest(0, nil, nil), -1, err.Error())
		}
		done <- resp
	}()
	deadline := time.Now().Add(10 * time.Second)
	for env.b.held.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("pull never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Two messages the filter drops, then one it keeps: the answer holds that one alone
	// (had the pull answered on the first two, it would hold nothing, or them).
	appendProps(t, env.b, "LP", []map[string]string{{"color": "blue"}, {"color": "green"}})
	appendProps(t, env.b, "LP", []map[string]string{{"color": "red"}})
	r := <-done
	wantCode(t, r, remoting.RespSuccess)
	msgs, err := message.DecodeAll(r.Body)
	if err != nil || len(msgs) != 1 || msgs[0].Properties["color"] != "red" || msgs[0].QueueOffset != 2 {
		t.Fatalf("woken pull: %v %v", msgs, err)
	}
}

func TestSQL92ColdReads(t *testing.T) {
	e := newTierEnv(t)
	env := e.start(t, t.TempDir(), nil)
	createTopic(t, env, "ColdSQL", 1)
	const n = 300
	props := numbered(n)
	for _, p := range props {
		p["pad"] = strings.Repeat("x", 400) // several 64 KiB segments
	}
	appendProps(t, env.b, "ColdSQL", props)
	st := env.b.Store()
	waitFor(t, "every segment offloaded and deleted locally", func() bool {
		return st.MinOffset("ColdSQL", 0) == n && env.b.Tier().OffloadWatermark() >= st.MinCommitLogOffset()
	})
	var got []string
	for off := int64(0); off < n; {
		bodies, next, resp := pullBodies(t, env.bk, sqlPullExt("ColdSQL", off, "a BETWEEN 100 AND 120 AND color = 'red'", 4))
		if resp.Code != remoting.RespSuccess && resp.Code != remoting.RespPullRetryImmediately {
			t.Fatalf("cold pull at %d: code %d %q", off, resp.Code, resp.Remark)
		}
		if next <= off {
			t.Fatalf("cold pull at %d made no progress", off)
		}
		got = append(got, bodies...)
		off = next
	}
	var want []string
	for a := 100; a <= 120; a += 2 {
		want = append(want, fmt.Sprintf("m%d", a-1))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("cold SQL92 pull: %v, want %v", got, want)
	}
	// The tier returned only the matches: its cold-read byte count is theirs alone.
	var matched float64
	for _, p := range pullAllRecords(t, env, "ColdSQL", "a BETWEEN 100 AND 120 AND color = 'red'") {
		matched += float64(len(p))
	}
	if cold := gatherCounter(t, env.b, "strata_tier_cold_read_bytes_total"); cold != 2*matched {
		t.Fatalf("the tier read out %v bytes for two passes over %v bytes of matches", cold, matched)
	}
}

// pullAllRecords pulls queue 0 of topic through an SQL92 filter from 0 to its end and returns
// the stored records.
func pullAllRecords(t *testing.T, env *testEnv, topic, expr string) [][]byte {
	t.Helper()
	var out [][]byte
	end := env.b.Store().MaxOffset(topic, 0)
	for off := int64(0); off < end; {
		resp := invoke(t, env.bk, remoting.CodePullMessage, sqlPullExt(topic, off, expr, 4), nil)
		next, _ := resp.ExtFields.Int64("nextBeginOffset")
		if next <= off {
			t.Fatalf("pull at %d: code %d %q", off, resp.Code, resp.Remark)
		}
		for pos := 0; pos < len(resp.Body); {
			h, err := message.ParseRecordHeader(resp.Body[pos:])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, resp.Body[pos:pos+int(h.TotalSize)])
			pos += int(h.TotalSize)
		}
		off = next
	}
	return out
}

func gatherCounter(t *testing.T, b *Broker, name string) float64 {
	t.Helper()
	mfs, err := b.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
