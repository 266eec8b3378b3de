package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/message"
)

// jsExport is what testdata/read_arrow.mjs prints: an Arrow IPC file as Apache Arrow's
// JavaScript implementation reads it. Integers and timestamps are decimal strings (int64
// arrives in JS as BigInt), binary is base64 (decoded by encoding/json into []byte), a map
// is its [key, value] entries in stored order.
type jsExport struct {
	Rows    int `json:"rows"`
	Batches int `json:"batches"`
	Fields  []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		TypeID   string `json:"typeId"`
		Nullable bool   `json:"nullable"`
	} `json:"fields"`
	Data []struct {
		Topic           string      `json:"topic"`
		QueueID         string      `json:"queue_id"`
		QueueOffset     string      `json:"queue_offset"`
		CommitLogOffset string      `json:"commitlog_offset"`
		MsgID           string      `json:"msg_id"`
		Keys            string      `json:"keys"`
		Tags            string      `json:"tags"`
		BornTimestamp   string      `json:"born_timestamp"`
		StoreTimestamp  string      `json:"store_timestamp"`
		BornHost        string      `json:"born_host"`
		StoreHost       string      `json:"store_host"`
		ReconsumeTimes  string      `json:"reconsume_times"`
		Properties      [][2]string `json:"properties"`
		Body            []byte      `json:"body"`
	} `json:"data"`
}

// arrowJSDir is where `make tools` installed the apache-arrow npm package.
func arrowJSDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("STRATA_ARROWJS_DIR")
	if dir == "" {
		root, err := filepath.Abs("..")
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, ".tools", "node")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "apache-arrow", "package.json")); err != nil {
		t.Fatalf("the apache-arrow npm package is not in %s (STRATA_ARROWJS_DIR): run `make tools` at the repository root: %v", dir, err)
	}
	return dir
}

// readExportJS reads an Arrow IPC file with apache-arrow under Node.js.
func readExportJS(t *testing.T, dir, path string) *jsExport {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH; install Node.js 18 or newer (apt-get install nodejs) and run `make tools`: %v", err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "read_arrow.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, path)
	cmd.Env = append(os.Environ(), "STRATA_ARROWJS_DIR="+dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("apache-arrow (JS) could not read %s: %v\n%s", path, err, errb.String())
	}
	var e jsExport
	if err := json.Unmarshal(out.Bytes(), &e); err != nil {
		t.Fatalf("read_arrow.mjs printed something that is not its JSON: %v\n%.2000s", err, out.String())
	}
	return &e
}

// wantSchema is the export's layout as arrow JS names the types.
var wantSchema = [][3]string{
	{"topic", "Utf8", "Utf8"},
	{"queue_id", "Int32", "Int"},
	{"queue_offset", "Int64", "Int"},
	{"commitlog_offset", "Int64", "Int"},
	{"msg_id", "Utf8", "Utf8"},
	{"keys", "Utf8", "Utf8"},
	{"tags", "Utf8", "Utf8"},
	{"born_timestamp", "Timestamp<MILLISECOND, UTC>", "Timestamp"},
	{"store_timestamp", "Timestamp<MILLISECOND, UTC>", "Timestamp"},
	{"born_host", "Utf8", "Utf8"},
	{"store_host", "Utf8", "Utf8"},
	{"reconsume_times", "Int32", "Int"},
	{"properties", "Map<{key:Utf8, value:Utf8}>", "Map"},
	{"body", "Binary", "Binary"},
}

func checkSchemaJS(t *testing.T, e *jsExport) {
	t.Helper()
	if len(e.Fields) != len(wantSchema) {
		t.Fatalf("arrow JS sees %d columns %+v, want %d", len(e.Fields), e.Fields, len(wantSchema))
	}
	for i, w := range wantSchema {
		f := e.Fields[i]
		if f.Name != w[0] || f.Type != w[1] || f.TypeID != w[2] {
			t.Fatalf("column %d: arrow JS sees %s %s (%s), want %s %s (%s)", i, f.Name, f.Type, f.TypeID, w[0], w[1], w[2])
		}
	}
}

// TestExportReadByArrowJS checks that an export, part from the bucket and part from the
// broker's disk, reads the same in Apache Arrow's JavaScript implementation as a consumer
// reads it through the protocol: rows, order, offsets, bodies, tags, keys, properties.
func TestExportReadByArrowJS(t *testing.T) {
	jsDir := arrowJSDir(t)
	// Size-only sealing of tiny segments: full segments go to the bucket and leave the disk,
	// the last one stays hot.
	dev := startDev(t, t.TempDir(), "--segment-size", "64KiB", "--seal-after", "0s", "--local-retention", "0s")
	createTopic(t, dev.Namesrv, exportTopic, 2)
	p := newProducer(t, dev.Namesrv)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	type sent struct {
		tag, keys, custom, note string
		body                    []byte
	}
	sentBy := map[string]sent{} // by body
	send := func(from, n int) {
		for i := from; i < from+n; i++ {
			// Bytes that are not UTF-8, so a reader that decodes binary as text would fail.
			body := append([]byte(fmt.Sprintf("m-%04d-", i)), 0x00, 0xff, 0xfe, byte(i))
			body = append(body, bytes.Repeat([]byte{'p'}, 300)...)
			s := sent{
				tag:    []string{"TagA", "TagB", "TagC"}[i%3],
				keys:   fmt.Sprintf("key-%d shared", i),
				custom: strconv.Itoa(i),
				note:   fmt.Sprintf("grüße, 世界 #%d", i),
				body:   body,
			}
			m := primitive.NewMessage(exportTopic, body)
			m.WithTag(s.tag)
			m.WithKeys(strings.Fields(s.keys))
			m.WithProperty("custom", s.custom)
			m.WithProperty("note", s.note)
			if _, err := p.SendSync(ctx, m); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			sentBy[string(body)] = s
		}
	}
	send(0, 400)
	c, err := client.Dial(ctx, dev.Namesrv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, 60*time.Second, "the first segments to be offloaded and dropped locally", func() bool {
		for _, q := range queueBounds(t, c) {
			if q.HotMinOffset == 0 {
				return false
			}
		}
		return true
	})
	send(400, 20) // at least these stay on the broker's disk

	want := consumeExportTopic(t, c)
	if len(want) != 420 {
		t.Fatalf("a consumer reads %d messages, want 420", len(want))
	}
	out := filepath.Join(t.TempDir(), "all.arrow")
	rows, cold, hot := parseSummary(t, runCLI(t, "", "export", "--namesrv", dev.Namesrv, "--topic", exportTopic, "--out", out))
	if rows != 420 || cold == 0 || hot == 0 || cold+hot != rows {
		t.Fatalf("export summary: %d rows, %d cold, %d hot; want 420 from both tiers", rows, cold, hot)
	}
	t.Logf("exported %d rows: %d from the bucket, %d from the broker", rows, cold, hot)

	e := readExportJS(t, jsDir, out)
	checkSchemaJS(t, e)
	if e.Rows != len(want) || len(e.Data) != len(want) {
		t.Fatalf("arrow JS reads %d rows (%d in data), a consumer reads %d", e.Rows, len(e.Data), len(want))
	}
	if goRows := readExport(t, out); len(goRows) != e.Rows {
		t.Fatalf("arrow Go reads %d rows, arrow JS %d", len(goRows), e.Rows)
	}
	for i, w := range want {
		g := e.Data[i]
		where := fmt.Sprintf("row %d (queue %d offset %d)", i, w.QueueID, w.QueueOffset)
		ints := [][3]string{
			{"queue_id", g.QueueID, strconv.Itoa(int(w.QueueID))},
			{"queue_offset", g.QueueOffset, strconv.FormatInt(w.QueueOffset, 10)},
			{"commitlog_offset", g.CommitLogOffset, strconv.FormatInt(w.CommitLogOffset, 10)},
			{"born_timestamp", g.BornTimestamp, strconv.FormatInt(w.BornTimestamp, 10)},
			{"store_timestamp", g.StoreTimestamp, strconv.FormatInt(w.StoreTimestamp, 10)},
			{"reconsume_times", g.ReconsumeTimes, strconv.Itoa(int(w.ReconsumeTimes))},
		}
		for _, v := range ints {
			if v[1] != v[2] {
				t.Fatalf("%s: %s is %s in arrow JS, a consumer reads %s", where, v[0], v[1], v[2])
			}
		}
		if g.Topic != exportTopic || g.MsgID != w.OffsetMsgID() || g.Keys != w.Properties[message.PropertyKeys] || g.Tags != w.Tags() ||
			g.BornHost != w.BornHost.String() || g.StoreHost != w.StoreHost.String() {
			t.Fatalf("%s: arrow JS reads topic %q id %q keys %q tags %q hosts %q %q; a consumer reads %q %q %q %q %q %q", where,
				g.Topic, g.MsgID, g.Keys, g.Tags, g.BornHost, g.StoreHost,
				w.Topic, w.OffsetMsgID(), w.Properties[message.PropertyKeys], w.Tags(), w.BornHost, w.StoreHost)
		}
		if !bytes.Equal(g.Body, w.Body) {
			t.Fatalf("%s: arrow JS reads body %q, a consumer reads %q", where, g.Body, w.Body)
		}
		props := map[string]string{}
		var names []string
		for _, kv := range g.Properties {
			props[kv[0]] = kv[1]
			names = append(names, kv[0])
		}
		if !sort.StringsAreSorted(names) || len(props) != len(w.Properties) {
			t.Fatalf("%s: arrow JS reads properties %q (want sorted keys), a consumer reads %q", where, g.Properties, w.Properties)
		}
		for k, v := range w.Properties {
			if pv, ok := props[k]; !ok || pv != v {
				t.Fatalf("%s: property %s is %q in arrow JS, a consumer reads %q", where, k, pv, v)
			}
		}
		// And what the producer sent.
		s, ok := sentBy[string(g.Body)]
		if !ok {
			t.Fatalf("%s: arrow JS reads a body no one sent: %q", where, g.Body)
		}
		delete(sentBy, string(g.Body))
		if g.Tags != s.tag || g.Keys != s.keys || props["custom"] != s.custom || props["note"] != s.note {
			t.Fatalf("%s: arrow JS reads tags %q keys %q custom %q note %q; the producer sent %+v", where, g.Tags, g.Keys, props["custom"], props["note"], s)
		}
	}
	if len(sentBy) != 0 {
		t.Fatalf("%d sent messages are missing from what arrow JS reads", len(sentBy))
	}

	// An empty range: a valid file with the schema and no rows.
	out = filepath.Join(t.TempDir(), "empty.arrow")
	runCLI(t, "", "export", "--namesrv", dev.Namesrv, "--topic", exportTopic, "--from", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--out", out)
	e = readExportJS(t, jsDir, out)
	checkSchemaJS(t, e)
	if e.Rows != 0 || len(e.Data) != 0 {
		t.Fatalf("arrow JS reads %d rows from an export of an empty range", e.Rows)
	}
}
