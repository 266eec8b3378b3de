package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker/remoting"
)

// TestAdminAnswersInRocketMQShapes asks a running broker every admin request mqadmin and
// rocketmq-dashboard use and checks each answer against the Java shape recorded in
// testdata/admin (README.md there says where every field comes from); it also drives the
// official Go client's admin API (topic create and delete, subscription groups, clusters).
func TestAdminAnswersInRocketMQShapes(t *testing.T) {
	dev := startDev(t, t.TempDir())
	ctx := context.Background()
	const topic, group = "admin-shapes", "cg-admin"
	adm, err := admin.NewAdmin(admin.WithResolver(primitive.NewPassthroughResolver([]string{dev.Namesrv})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adm.Close() })
	if err := adm.CreateTopic(ctx, admin.WithTopicCreate(topic), admin.WithBrokerAddrCreate(dev.Broker),
		admin.WithReadQueueNums(2), admin.WithWriteQueueNums(2)); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, dev.Namesrv)
	sent := bodies("admin", 10)
	for _, b := range sent {
		if _, err := p.SendSync(ctx, primitive.NewMessage(topic, []byte(b))); err != nil {
			t.Fatal(err)
		}
	}
	r := newReceived()
	startPushConsumer(t, dev.Namesrv, group, topic, "*", "admin-consumer", r)
	r.waitFor(t, sent, 60*time.Second)

	raw, err := remoting.Dial(ctx, dev.Broker, remoting.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	ask := func(code int16, ext remoting.ExtFields) []byte {
		t.Helper()
		resp, err := raw.Invoke(ctx, remoting.NewRequest(code, ext, nil))
		if err != nil || resp.Code != remoting.RespSuccess {
			t.Fatalf("request %d: %v, code %d %q", code, err, resp.Code, resp.Remark)
		}
		return resp.Body
	}
	// Offsets are committed every few seconds by the client; wait for the stats to show them.
	var stats []byte
	waitUntil(t, 30*time.Second, "consume stats with committed offsets", func() bool {
		stats = ask(remoting.CodeGetConsumeStats, remoting.ExtFields{"consumerGroup": group, "topic": topic})
		return strings.Contains(string(stats), `"consumerOffset":`) && !strings.Contains(string(stats), `"consumerOffset":0,`)
	})
	checkShape(t, "consume_stats.json", stats)
	checkShape(t, "topic_stats.json", ask(remoting.CodeGetTopicStatsInfo, remoting.ExtFields{"topic": topic}))
	checkShape(t, "all_topic_config.json", ask(remoting.CodeGetAllTopicConfig, nil))
	who := ask(remoting.CodeQueryTopicConsumeByWho, remoting.ExtFields{"topic": topic})
	checkShape(t, "consume_by_who.json", who)
	if !strings.Contains(string(who), group) {
		t.Errorf("QUERY_TOPIC_CONSUME_BY_WHO %s does not name %s", who, group)
	}
	checkShape(t, "runtime_info.json", ask(remoting.CodeGetBrokerRuntimeInfo, nil))
	checkShape(t, "cluster_info.json", ask(remoting.CodeGetBrokerClusterInfo, nil))
	conns := ask(remoting.CodeGetConsumerConnectionList, remoting.ExtFields{"consumerGroup": group})
	checkShape(t, "consumer_connection.json", conns)
	var cc struct {
		ConnectionSet []struct {
			ClientID string `json:"clientId"`
			Language string `json:"language"`
		} `json:"connectionSet"`
	}
	if err := json.Unmarshal(conns, &cc); err != nil || len(cc.ConnectionSet) != 1 || cc.ConnectionSet[0].Language != "GO" {
		t.Fatalf("consumer connections %s: %v", conns, err)
	}
	// The running info is relayed to the consumer, whose answer comes back unchanged. This
	// client version answers SUCCESS with an empty body and the remark "json marshal error:
	// json: unsupported value: NaN" while its consume-rate statistics are NaN, so either is
	// the client's own answer.
	info, err := raw.Invoke(ctx, remoting.NewRequest(remoting.CodeGetConsumerRunningInfo,
		remoting.ExtFields{"consumerGroup": group, "clientId": cc.ConnectionSet[0].ClientID}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if info.Code != remoting.RespSuccess || (!strings.Contains(string(info.Body), topic) && !strings.Contains(info.Remark, "json marshal error")) {
		t.Errorf("consumer running info not relayed: code %d remark %q body %.300q", info.Code, info.Remark, info.Body)
	}
	unknown, err := raw.Invoke(ctx, remoting.NewRequest(remoting.CodeGetConsumerRunningInfo,
		remoting.ExtFields{"consumerGroup": group, "clientId": "nobody@1"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if unknown.Code == remoting.RespSuccess || !strings.Contains(unknown.Remark, "not online") {
		t.Errorf("running info of an unknown client: code %d %q", unknown.Code, unknown.Remark)
	}

	// The official client's admin API.
	subs, err := adm.GetAllSubscriptionGroup(ctx, dev.Broker, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := subs.SubscriptionGroupTable[group]; !ok {
		t.Fatalf("GetAllSubscriptionGroup lacks %s: %v", group, subs.SubscriptionGroupTable)
	}
	clusters, err := adm.FetchClusterList(topic)
	if err != nil || !slices.Equal(clusters, []string{"DefaultCluster"}) {
		t.Fatalf("FetchClusterList: %v %v", clusters, err)
	}
	list, err := adm.FetchAllTopicList(ctx)
	if err != nil || !slices.Contains(list.TopicList, topic) {
		t.Fatalf("FetchAllTopicList: %v %v", list, err)
	}
	if err := adm.DeleteTopic(ctx, admin.WithTopicDelete(topic), admin.WithBrokerAddrDelete(dev.Broker), admin.WithNameSrvAddr([]string{dev.Namesrv})); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the topic gone from the list", func() bool {
		list, err := adm.FetchAllTopicList(ctx)
		return err == nil && !slices.Contains(list.TopicList, topic)
	})
	ask(remoting.CodeDeleteSubscriptionGroup, remoting.ExtFields{"groupName": group})
	if subs, err := adm.GetAllSubscriptionGroup(ctx, dev.Broker, 3*time.Second); err != nil || subs.SubscriptionGroupTable[group].GroupName != "" {
		t.Fatalf("after DELETE_SUBSCRIPTIONGROUP the group is still listed: %v", err)
	}
}

// checkShape compares the key structure of got with the recorded Java answer: every key
// recorded must be there with the same JSON type, recursively (maps keyed by MessageQueue
// are compared by their first entry).
func checkShape(t *testing.T, file string, got []byte) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("testdata", "admin", file))
	if err != nil {
		t.Fatal(err)
	}
	w, err := parseFastjson(want)
	if err != nil {
		t.Fatalf("testdata %s: %v", file, err)
	}
	g, err := parseFastjson(got)
	if err != nil {
		t.Fatalf("%s: answer is not fastjson: %v\n%s", file, err, got)
	}
	if diff := shapeDiff("$", w, g); diff != "" {
		t.Errorf("%s: %s\nanswer: %s", file, diff, got)
	}
}

func shapeDiff(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %T", path, got)
		}
		if isMQMap(w) {
			if len(g) == 0 {
				return fmt.Sprintf("%s: want a map keyed by MessageQueue, got an empty one", path)
			}
			return shapeDiff(path+"[mq]", firstValue(w), firstValue(g))
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				if isDynamicKey(path) {
					if len(g) == 0 {
						return fmt.Sprintf("%s: empty, want entries like %q", path, k)
					}
					return shapeDiff(path+".*", w[k], firstValue(g))
				}
				return fmt.Sprintf("%s: missing key %q", path, k)
			}
			if d := shapeDiff(path+"."+k, w[k], gv); d != "" {
				return d
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return fmt.Sprintf("%s: want an array, got %T", path, got)
		}
		if len(w) > 0 && len(g) > 0 {
			return shapeDiff(path+"[0]", w[0], g[0])
		}
	default:
		if fmt.Sprintf("%T", want) != fmt.Sprintf("%T", got) {
			return fmt.Sprintf("%s: want a %T, got %T (%v)", path, want, got, got)
		}
	}
	return ""
}

// isDynamicKey reports whether the object at path is a map whose keys are names (topics,
// groups, broker names, clusters, ids), compared by one entry rather than by key.
func isDynamicKey(path string) bool {
	for _, s := range []string{"topicConfigTable", "subscriptionTable", "brokerAddrTable", "clusterAddrTable", "brokerAddrs"} {
		if strings.HasSuffix(path, "."+s) {
			return true
		}
	}
	return false
}

func isMQMap(m map[string]any) bool {
	for k := range m {
		return strings.HasPrefix(k, "{")
	}
	return false
}

func firstValue(m map[string]any) any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return nil
	}
	return m[keys[0]]
}

// parseFastjson parses JSON extended as fastjson writes maps with object keys: such a key is
// kept as its compact text.
func parseFastjson(b []byte) (any, error) {
	p := &fjParser{b: b}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.b) {
		return nil, fmt.Errorf("trailing bytes at %d", p.i)
	}
	return v, nil
}

type fjParser struct {
	b []byte
	i int
}

func (p *fjParser) space() {
	for p.i < len(p.b) && strings.IndexByte(" \t\r\n", p.b[p.i]) >= 0 {
		p.i++
	}
}

func (p *fjParser) value() (any, error) {
	p.space()
	if p.i >= len(p.b) {
		return nil, fmt.Errorf("unexpected end")
	}
	switch p.b[p.i] {
	case '{':
		p.i++
		m := map[string]any{}
		for {
			p.space()
			if p.i < len(p.b) && p.b[p.i] == '}' {
				p.i++
				return m, nil
			}
			start := p.i
			k, err := p.value()
			if err != nil {
				return nil, err
			}
			key, ok := k.(string)
			if !ok {
				key = string(p.b[start:p.i])
			}
			p.space()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return nil, fmt.Errorf("want ':' at %d", p.i)
			}
			p.i++
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			m[key] = v
			p.space()
			if p.i < len(p.b) && p.b[p.i] == ',' {
				p.i++
			}
		}
	case '[':
		p.i++
		var a []any
		for {
			p.space()
			if p.i < len(p.b) && p.b[p.i] == ']' {
				p.i++
				if a == nil {
					a = []any{}
				}
				return a, nil
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			a = append(a, v)
			p.space()
			if p.i < len(p.b) && p.b[p.i] == ',' {
				p.i++
			}
		}
	default:
		dec := json.NewDecoder(strings.NewReader(string(p.b[p.i:])))
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("at %d: %w", p.i, err)
		}
		p.i += int(dec.InputOffset())
		return v, nil
	}
}
