package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/parquet/file"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

const exportTopic = "exported"

// sendExportMessages sends n messages round-robin over the topic's queues with tags, keys
// and a unique key of their own; tags cycle through TagA, TagB, TagC.
func sendExportMessages(t *testing.T, c *client.Client, prefix string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	route, err := c.Route(ctx, exportTopic)
	if err != nil {
		t.Fatal(err)
	}
	qs := route.Queues(exportTopic)
	pad := strings.Repeat("p", 300)
	for i := 0; i < n; i++ {
		props := map[string]string{
			message.PropertyTags:    []string{"TagA", "TagB", "TagC"}[i%3],
			message.PropertyKeys:    fmt.Sprintf("%s-key-%d shared", prefix, i),
			message.PropertyUniqKey: fmt.Sprintf("%s-UNIQ-%04d", prefix, i),
			"custom":                strconv.Itoa(i),
		}
		body := []byte(fmt.Sprintf("%s-%04d-%s", prefix, i, pad))
		if _, err := c.Send(ctx, "export-producer", qs[i%len(qs)], body, props); err != nil {
			t.Fatal(err)
		}
	}
}

// consumeExportTopic reads every queue of the topic from offset 0 to its end, as a consumer does.
func consumeExportTopic(t *testing.T, c *client.Client) []*message.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	route, err := c.Route(ctx, exportTopic)
	if err != nil {
		t.Fatal(err)
	}
	var out []*message.Message
	for _, q := range route.Queues(exportTopic) {
		end, err := c.MaxOffset(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < end; {
			r, err := c.Pull(ctx, "export-checker", q, off, 32, 0, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Messages) == 0 {
				t.Fatalf("queue %d: pull at %d found nothing (next %d, min %d)", q.QueueID, off, r.NextOffset, r.MinOffset)
			}
			out = append(out, r.Messages...)
			off = r.NextOffset
		}
	}
	return out
}

// readExport reads an Arrow IPC file with the Arrow Go reader, row by row.
func readExport(t *testing.T, path string) []*message.Message {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f)
	if err != nil {
		t.Fatalf("%s is not an Arrow IPC file: %v", path, err)
	}
	defer r.Close()
	var out []*message.Message
	for i := 0; i < r.NumRecords(); i++ {
		rec, err := r.Record(i)
		if err != nil {
			t.Fatal(err)
		}
		props := rec.Column(12).(*array.Map)
		pk, pv := props.Keys().(*array.String), props.Items().(*array.String)
		for j := 0; j < int(rec.NumRows()); j++ {
			m := &message.Message{
				Topic:           rec.Column(0).(*array.String).Value(j),
				QueueID:         rec.Column(1).(*array.Int32).Value(j),
				QueueOffset:     rec.Column(2).(*array.Int64).Value(j),
				CommitLogOffset: rec.Column(3).(*array.Int64).Value(j),
				BornTimestamp:   int64(rec.Column(7).(*array.Timestamp).Value(j)),
				StoreTimestamp:  int64(rec.Column(8).(*array.Timestamp).Value(j)),
				ReconsumeTimes:  rec.Column(11).(*array.Int32).Value(j),
				Body:            bytes.Clone(rec.Column(13).(*array.Binary).Value(j)),
				Properties:      map[string]string{},
			}
			s, e := props.ValueOffsets(j)
			for k := s; k < e; k++ {
				m.Properties[pk.Value(int(k))] = pv.Value(int(k))
			}
			cols := []string{rec.Column(4).(*array.String).Value(j), rec.Column(5).(*array.String).Value(j),
				rec.Column(6).(*array.String).Value(j), rec.Column(9).(*array.String).Value(j), rec.Column(10).(*array.String).Value(j)}
			m.Properties["_msg_id"], m.Properties["_keys"], m.Properties["_tags"] = cols[0], cols[1], cols[2]
			m.Properties["_born_host"], m.Properties["_store_host"] = cols[3], cols[4]
			out = append(out, m)
		}
	}
	return out
}

// checkExport compares exported rows with consumed messages.
func checkExport(t *testing.T, got, want []*message.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("export has %d rows, a consumer reads %d messages", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Topic != w.Topic || g.QueueID != w.QueueID || g.QueueOffset != w.QueueOffset || g.CommitLogOffset != w.CommitLogOffset ||
			g.BornTimestamp != w.BornTimestamp || g.StoreTimestamp != w.StoreTimestamp || g.ReconsumeTimes != w.ReconsumeTimes ||
			!bytes.Equal(g.Body, w.Body) {
			t.Fatalf("row %d: %+v\nconsumer read %+v", i, g, w)
		}
		if g.Properties["_msg_id"] != w.OffsetMsgID() || g.Properties["_keys"] != w.Properties[message.PropertyKeys] ||
			g.Properties["_tags"] != w.Tags() || g.Properties["_born_host"] != w.BornHost.String() || g.Properties["_store_host"] != w.StoreHost.String() {
			t.Fatalf("row %d: id/keys/tags/hosts %v, consumer read %s %v %s %s", i, g.Properties, w.OffsetMsgID(), w.Properties, w.BornHost, w.StoreHost)
		}
		for k, v := range w.Properties {
			if g.Properties[k] != v {
				t.Fatalf("row %d: property %s = %q, consumer read %q", i, k, g.Properties[k], v)
			}
		}
	}
}

var exportSummary = regexp.MustCompile(`exported (\d+) messages \((\d+) from the bucket, (\d+) through brokers`)

func parseSummary(t *testing.T, out string) (rows, cold, hot int) {
	t.Helper()
	m := exportSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no export summary in %q", out)
	}
	rows, _ = strconv.Atoi(m[1])
	cold, _ = strconv.Atoi(m[2])
	hot, _ = strconv.Atoi(m[3])
	return rows, cold, hot
}

func queueBounds(t *testing.T, c *client.Client) []client.QueueStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.ConsumeStats(ctx, "probe", exportTopic)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestExportAndQueryAcrossTiers exports a topic whose older messages are only in the bucket
// and newer ones only on the broker's disk, and looks messages of both tiers up by id and key.
func TestExportAndQueryAcrossTiers(t *testing.T) {
	dev := startDev(t, t.TempDir(), "--segment-size", "64KiB", "--seal-after", "200ms", "--local-retention", "0s")
	createTopic(t, dev.Namesrv, exportTopic, 2)
	c, err := client.Dial(context.Background(), dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	sendExportMessages(t, c, "cold", 300)
	waitUntil(t, 60*time.Second, "every sent message to be offloaded and dropped locally", func() bool {
		for _, q := range queueBounds(t, c) {
			if q.MinOffset != 0 || q.HotMinOffset != q.MaxOffset || q.MaxOffset != 150 {
				return false
			}
		}
		return true
	})
	c.Close()
	// Restart with size-only sealing: what comes next stays on local disk.
	for i, a := range dev.args {
		if a == "--seal-after" {
			dev.args[i+1] = "0s"
		}
	}
	dev.Restart()
	c, err = client.Dial(context.Background(), dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendExportMessages(t, c, "hot", 60)
	for _, q := range queueBounds(t, c) {
		if q.HotMinOffset != 150 || q.MaxOffset != 180 {
			t.Fatalf("queue %d bounds %+v; want 150 cold and 30 hot messages", q.QueueID, q)
		}
	}
	want := consumeExportTopic(t, c)
	dir := t.TempDir()

	// Everything: the cold part from the bucket, the hot part through the broker.
	out := filepath.Join(dir, "all.arrow")
	rows, cold, hot := parseSummary(t, runCLI(t, "", "export", "--namesrv", dev.Namesrv, "--topic", exportTopic, "--out", out))
	checkExport(t, readExport(t, out), want)
	if rows != 360 || cold != 300 || hot != 60 {
		t.Fatalf("export summary: %d rows, %d cold, %d hot; want 360, 300, 60", rows, cold, hot)
	}

	// One queue, an offset window across the boundary, one tag.
	out = filepath.Join(dir, "tagged.arrow")
	runCLI(t, "", "export", "--namesrv", dev.Namesrv, "--topic", exportTopic, "--queue", "1", "--from", "100", "--to", "170", "--tag", "TagB || TagC", "--out", out)
	var wantTagged []*message.Message
	for _, m := range want {
		if m.QueueID == 1 && m.QueueOffset >= 100 && m.QueueOffset < 170 && (m.Tags() == "TagB" || m.Tags() == "TagC") {
			wantTagged = append(wantTagged, m)
		}
	}
	checkExport(t, readExport(t, out), wantTagged)

	// An empty range still gives a valid file.
	out = filepath.Join(dir, "empty.arrow")
	runCLI(t, "", "export", "--namesrv", dev.Namesrv, "--topic", exportTopic, "--from", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--out", out)
	if got := readExport(t, out); len(got) != 0 {
		t.Fatalf("export of an empty range has %d rows", len(got))
	}

	// Parquet.
	out = filepath.Join(dir, "all.parquet")
	runCLI(t, "", "export", "--namesrv", dev.Namesrv, "--topic", exportTopic, "--format", "parquet", "--out", out)
	pf, err := file.OpenParquetFile(out, false)
	if err != nil {
		t.Fatal(err)
	}
	if pf.NumRows() != 360 {
		t.Fatalf("parquet file has %d rows, want 360", pf.NumRows())
	}
	pf.Close()

	// Lookups in both tiers, with raw requests as Java's admin tools send them.
	brk, err := remoting.Dial(context.Background(), dev.Broker, remoting.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer brk.Close()
	for _, m := range []*message.Message{want[3], want[len(want)-2]} { // one cold, one hot
		_, off, err := message.ParseOffsetMsgID(m.OffsetMsgID())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := brk.Invoke(context.Background(), remoting.NewRequest(remoting.CodeViewMessageByID,
			remoting.ExtFields{"offset": strconv.FormatInt(off, 10)}, nil))
		if err != nil || resp.Code != remoting.RespSuccess {
			t.Fatalf("VIEW_MESSAGE_BY_ID %d: %v %+v", off, err, resp)
		}
		got, _, err := message.Decode(resp.Body)
		if err != nil || !bytes.Equal(got.Body, m.Body) || got.QueueOffset != m.QueueOffset {
			t.Fatalf("VIEW_MESSAGE_BY_ID %d: %v, body %q", off, err, got.Body)
		}
		for _, q := range []remoting.ExtFields{
			{"topic": exportTopic, "key": m.UniqKey(), "maxNum": "32", "beginTimestamp": "0", "endTimestamp": strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10), "_UNIQUE_KEY_QUERY": "true"},
			{"topic": exportTopic, "key": strings.Fields(m.Properties[message.PropertyKeys])[0], "maxNum": "32", "beginTimestamp": "0", "endTimestamp": strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)},
		} {
			resp, err := brk.Invoke(context.Background(), remoting.NewRequest(remoting.CodeQueryMessage, q, nil))
			if err != nil || resp.Code != remoting.RespSuccess {
				t.Fatalf("QUERY_MESSAGE %v: %v %+v", q, err, resp)
			}
			msgs, err := message.DecodeAll(resp.Body)
			if err != nil || len(msgs) != 1 || msgs[0].CommitLogOffset != m.CommitLogOffset {
				t.Fatalf("QUERY_MESSAGE %v: %d messages, %v", q, len(msgs), err)
			}
		}
		// The CLI, by offset id and by unique key.
		for _, id := range []string{m.OffsetMsgID(), m.UniqKey()} {
			out := runCLI(t, "", "message", "get", "--namesrv", dev.Namesrv, "--id", id, "--topic", exportTopic)
			if !strings.Contains(out, "offset="+strconv.FormatInt(m.QueueOffset, 10)) || !strings.Contains(out, string(m.Body[:12])) {
				t.Fatalf("message get --id %s printed:\n%s", id, out)
			}
		}
	}
	resp, err := brk.Invoke(context.Background(), remoting.NewRequest(remoting.CodeQueryMessage,
		remoting.ExtFields{"topic": exportTopic, "key": "no-such-key", "maxNum": "32", "beginTimestamp": "0", "endTimestamp": "0"}, nil))
	if err != nil || resp.Code != remoting.RespQueryNotFound {
		t.Fatalf("QUERY_MESSAGE of a missing key: %v %+v, want code %d", err, resp, remoting.RespQueryNotFound)
	}
	// "shared" is a key of every message: the CLI finds those of both tiers.
	out = runCLI(t, "", "message", "find", "--namesrv", dev.Namesrv, "--topic", exportTopic, "--key", "shared", "--max", "1000", "--json")
	if n := strings.Count(out, "\n"); n != 360 {
		t.Fatalf("message find printed %d messages, want 360", n)
	}
}

// TestExportWithEveryBrokerStopped exports the cold part of a topic from the bucket with
// the routes and tier pointers read from etcd, after the only broker stopped.
func TestExportWithEveryBrokerStopped(t *testing.T) {
	etcd := startEtcdProcess(t)
	bucketDir := t.TempDir()
	namesrv, brokerAddr, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`cluster: it
broker_name: broker-a
data_dir: %s
etcd_endpoints: [%s]
namesrv_addr: %s
broker_addr: %s
advertised_addr: %s
http_addr: %s
store:
  segment_size: 64KiB
  seal_after: 200ms
tier:
  bucket: file://%s
  local_retention: 0s
`, t.TempDir(), strings.Join(etcd.Endpoints(), ","), namesrv, brokerAddr, brokerAddr, httpAddr, bucketDir)
	path := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	brk := startProc(t, namesrv, brokerAddr, httpAddr, "broker", "--config", path)
	createTopic(t, namesrv, exportTopic, 2)
	c, err := client.Dial(context.Background(), namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sendExportMessages(t, c, "m", 200)
	waitUntil(t, 60*time.Second, "every message to be offloaded", func() bool {
		for _, q := range queueBounds(t, c) {
			if q.HotMinOffset != q.MaxOffset || q.MaxOffset != 100 {
				return false
			}
		}
		return true
	})
	want := consumeExportTopic(t, c)
	c.Close()
	brk.Stop()

	out := filepath.Join(t.TempDir(), "cold.arrow")
	rows, cold, hot := parseSummary(t, runCLI(t, "", "export", "--etcd", strings.Join(etcd.Endpoints(), ","), "--cluster", "it",
		"--bucket", "file://"+bucketDir, "--topic", exportTopic, "--out", out))
	if rows != 200 || cold != 200 || hot != 0 {
		t.Fatalf("export summary: %d rows, %d cold, %d hot; want 200 from the bucket", rows, cold, hot)
	}
	checkExport(t, readExport(t, out), want)

	// An SQL92 filter is applied as the bucket is read.
	var some []*message.Message
	for _, m := range want {
		if n, _ := strconv.Atoi(m.Properties["custom"]); n >= 10 && n <= 19 && m.Tags() != "TagB" {
			some = append(some, m)
		}
	}
	rows, cold, _ = parseSummary(t, runCLI(t, "", "export", "--etcd", strings.Join(etcd.Endpoints(), ","), "--cluster", "it",
		"--bucket", "file://"+bucketDir, "--topic", exportTopic, "--where", "custom BETWEEN 10 AND 19 AND TAGS <> 'TagB'", "--out", out))
	if rows != len(some) || cold != rows || len(some) == 0 {
		t.Fatalf("export --where from the bucket: %d rows (%d cold), want %d", rows, cold, len(some))
	}
	checkExport(t, readExport(t, out), some)
}
