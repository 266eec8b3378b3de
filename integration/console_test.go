package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/chromedp/chromedp"

	"github.com/stratamq/strata/broker/client"
)

// The web console in a real browser (issue 17): headless Chromium, driven with chromedp,
// loads the pages of a `strata dev` that the official Go client produced to and consumed
// from, and checks what an operator would: the topic and its message count, the group's lag,
// a search by key with the body shown, a message's trace, and an offset reset that asks
// before it moves anything. Screenshots go to testdata/console/ (git-ignored).

// consoleShots is where the test leaves its screenshots.
const consoleShots = "testdata/console"

// chromiumBin is Debian's chromium, installed by `make chromium`.
func chromiumBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("STRATA_CHROMIUM_BIN")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("chromium not found at %s (%v): run `make chromium` to install Debian's chromium, or set STRATA_CHROMIUM_BIN", bin, err)
	}
	return bin
}

// newBrowser starts headless Chromium with a fresh profile and flags that keep it off the
// network (this machine has none besides loopback) and returns a tab's context.
func newBrowser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumBin(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// The first call starts the browser, which then lives as long as ctx.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// browserStepTimeout bounds one step of the test in the browser.
const browserStepTimeout = 30 * time.Second

// browse runs browser steps, failing the test with what was being done and the page.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, browserStepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		failInBrowser(t, ctx, what, err)
	}
}

// run runs one browser action that returns a value.
func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, browserStepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		failInBrowser(t, ctx, what, err)
	}
	return v
}

func failInBrowser(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(dctx, chromedp.Location())
	body, _ := chromedp.Run(dctx, chromedp.Text(chromedp.CSS("body")))
	t.Fatalf("%s: %v\npage %s:\n%.2000s", what, err, loc, body)
}

// textOf reads the visible text of the first element matching the CSS selector sel.
func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	browse(t, ctx, "wait for "+sel, chromedp.WaitReady(chromedp.CSS(sel)))
	return strings.Join(strings.Fields(run(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel)))), " ")
}

// screenshot saves the whole page as testdata/console/<name>.png.
func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	png := run(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(consoleShots, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(consoleShots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// describeGroup is `strata group describe --json` of group on topic.
func describeGroup(t *testing.T, namesrv, group, topic string) []client.QueueStats {
	t.Helper()
	var st []client.QueueStats
	out := runCLI(t, "", "group", "describe", "--namesrv", namesrv, "--group", group, "--topic", topic, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("group describe --json: %v\n%s", err, out)
	}
	return st
}

func committed(st []client.QueueStats) (offsets, lag int64) {
	for _, q := range st {
		if q.ConsumerOffset >= 0 {
			offsets += q.ConsumerOffset
			lag += q.Lag
		}
	}
	return offsets, lag
}

func TestConsoleInABrowser(t *testing.T) {
	chromiumBin(t) // fail first, and clearly, when the browser is missing
	// Small segments sealed at once and no local retention: the first batch ends up in the
	// cold tier only; after a restart with size-only sealing, the second stays hot.
	dev := startDev(t, t.TempDir(), "--segment-size", "64KiB", "--seal-after", "200ms", "--local-retention", "0s")
	const topic, group = "console-orders", "console-cg"
	const firstBatch, secondBatch = 12, 8 // two queues: 6 and 4 per queue
	createTopic(t, dev.Namesrv, topic, 2)
	traceCfg := func(group string) *primitive.TraceConfig { return traceConfig(t, dev.Namesrv, group) }
	var msgIDs []string
	send := func(from, n int) {
		p := newProducer(t, dev.Namesrv, producer.WithGroupName("pg-console"), producer.WithTrace(traceCfg("pg-console")))
		for i := from; i < from+n; i++ {
			m := primitive.NewMessage(topic, []byte(orderBody(i))).WithKeys([]string{orderKey(i)}).WithTag("paid")
			res, err := p.SendSync(context.Background(), m)
			if err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			msgIDs = append(msgIDs, res.MsgID)
		}
	}
	send(0, firstBatch)

	// The group consumes the first batch and commits it.
	r := newReceived()
	c, _ := startPushConsumer(t, dev.Namesrv, group, topic, "*", "console-consumer", r, consumer.WithTrace(traceCfg(group)))
	var first []string
	for i := range firstBatch {
		first = append(first, orderBody(i))
	}
	r.waitFor(t, first, 60*time.Second)
	waitUntil(t, 30*time.Second, "the group's offsets to cover the first batch", func() bool {
		off, lag := committed(describeGroup(t, dev.Namesrv, group, topic))
		return off == firstBatch && lag == 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := newBrowser(t, ctx)
	base := "http://" + dev.HTTP
	var shots []string

	// While the consumer runs, the group page lists it as a member.
	browse(t, b, "open the group page", chromedp.Navigate(base+"/console/groups/"+group))
	if got := textOf(t, b, "#member-count"); got != "1" {
		t.Fatalf("group page lists %s members while one consumer runs", got)
	}
	if got := textOf(t, b, "#members td.client-id"); !strings.Contains(got, "console-consumer") {
		t.Fatalf("member shown as %q, want the consumer's client id (instance console-consumer)", got)
	}
	shots = append(shots, screenshot(t, b, "group-with-member"))

	// The trace of the first message: its publish and its delivery to the group, from the
	// clients' trace records (sent in the background: wait for them).
	traceURL := base + "/console/trace?id=" + msgIDs[0]
	browse(t, b, "open the trace page", chromedp.Navigate(traceURL))
	waitUntil(t, 60*time.Second, "the publish and delivery traces of "+msgIDs[0], func() bool {
		browse(t, b, "reload the trace", chromedp.Reload(), chromedp.WaitReady(chromedp.CSS("#trace")))
		return run(t, b, "look for trace rows", chromedp.Evaluate[bool](
			`document.querySelector("#trace tr.pub") !== null && [...document.querySelectorAll("#trace tr.sub")].some(r => r.textContent.includes("consumed"))`))
	})
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// The first batch goes to the bucket and leaves the local disk; the second stays hot.
	waitUntil(t, 60*time.Second, "the first batch to be in the cold tier only", func() bool {
		st := describeGroup(t, dev.Namesrv, group, topic)
		var hotMin int64
		for _, q := range st {
			if q.MinOffset != 0 || q.HotMinOffset != q.MaxOffset {
				return false
			}
			hotMin += q.HotMinOffset
		}
		return len(st) == 2 && hotMin == firstBatch
	})
	for i, a := range dev.args {
		if a == "--seal-after" {
			dev.args[i+1] = "0s"
		}
	}
	dev.Restart()
	send(firstBatch, secondBatch)
	produced := int64(firstBatch + secondBatch)

	// The cluster: one broker group, its member elected master, the tier's watermark.
	browse(t, b, "open the cluster page", chromedp.Navigate(base+"/"))
	if got := textOf(t, b, "#broker-groups tbody tr td.role"); got != "master" {
		t.Fatalf("the only member acts as %q, want master", got)
	}
	if got := textOf(t, b, "#tier-watermark"); got == "0" {
		t.Fatal("the cluster page shows offload watermark 0 after the first batch was offloaded")
	}
	htmx := run(t, b, "check htmx loaded", chromedp.Evaluate[string](`typeof htmx === "object" ? htmx.version : "missing"`))
	if htmx != "2.0.11" {
		t.Fatalf("htmx on the page: %s, want 2.0.11 (blocked by the CSP or not served?)", htmx)
	}
	shots = append(shots, screenshot(t, b, "cluster"))

	// Topics: listed with its message count; each queue's part in each tier.
	browse(t, b, "open the topic list", chromedp.Navigate(base+"/console/topics"))
	row := fmt.Sprintf(`#topic-list tr[data-topic=%q]`, topic)
	if got := textOf(t, b, row+" td.messages"); got != fmt.Sprint(produced) {
		t.Fatalf("topic list shows %s messages in %s, want %d", got, topic, produced)
	}
	shots = append(shots, screenshot(t, b, "topics"))
	browse(t, b, "open the topic", chromedp.Click(chromedp.CSS(row+" a")), chromedp.WaitVisible(chromedp.CSS("#queues")))
	if got := textOf(t, b, "#topic-messages"); got != fmt.Sprint(produced) {
		t.Fatalf("topic page shows %s messages, want %d", got, produced)
	}
	for q := 1; q <= 2; q++ {
		cell := func(col int) string {
			return textOf(t, b, fmt.Sprintf("#queues tbody tr:nth-child(%d) td:nth-child(%d)", q, col))
		}
		if hot, cold := cell(6), cell(7); hot != "6 – 9 (4)" || cold != "0 – 5 (6)" {
			t.Fatalf("queue %d: hot %q, cold %q; want hot 6 – 9 (4) and cold 0 – 5 (6)", q-1, hot, cold)
		}
	}
	shots = append(shots, screenshot(t, b, "topic"))

	// The group: lag is what was produced less what was consumed, as the CLI says too.
	browse(t, b, "open the group page again", chromedp.Navigate(base+"/console/groups/"+group))
	_, cliLag := committed(describeGroup(t, dev.Namesrv, group, topic))
	if got := textOf(t, b, "#lag-total"); got != fmt.Sprint(secondBatch) || cliLag != secondBatch {
		t.Fatalf("group lag on the page %s, by the CLI %d; want %d (produced %d, consumed %d)", got, cliLag, secondBatch, produced, firstBatch)
	}
	if got := textOf(t, b, "#member-count"); got != "0" {
		t.Fatalf("group page lists %s members after the consumer left", got)
	}
	shots = append(shots, screenshot(t, b, "group"))

	// Search by key in both tiers, answered inline by htmx (the URL follows the search).
	for _, tc := range []struct {
		i    int
		tier string
	}{{3, "cold"}, {firstBatch + 3, "hot"}} {
		key := orderKey(tc.i)
		browse(t, b, "search by key "+key,
			chromedp.Navigate(base+"/console/messages"),
			chromedp.SetValue(chromedp.CSS("#search-by"), "key"),
			chromedp.SetValue(chromedp.CSS("#search-topic"), topic),
			chromedp.SetValue(chromedp.CSS("#search-q"), key),
			chromedp.Click(chromedp.CSS("#search-submit")),
			chromedp.WaitVisible(chromedp.CSS("#results article.message")))
		if got := textOf(t, b, "#results article.message pre.body"); got != orderBody(tc.i) {
			t.Fatalf("search by key %s shows body %q, want %q", key, got, orderBody(tc.i))
		}
		if got := textOf(t, b, "#results article.message td.keys"); got != key {
			t.Fatalf("found message has keys %q, want %s", got, key)
		}
		if got := textOf(t, b, "#results article.message h3 .tag"); got != tc.tier {
			t.Fatalf("message %s found in the %s tier, want %s", key, got, tc.tier)
		}
		loc := run(t, b, "read the location", chromedp.Location())
		if !strings.Contains(loc, "q="+key) {
			t.Fatalf("after an inline search the location is %s, want the search in it", loc)
		}
		shots = append(shots, screenshot(t, b, "search-"+tc.tier))
	}

	// The trace again, now that its records are in the bucket.
	browse(t, b, "open the trace page after the restart", chromedp.Navigate(traceURL))
	if got := textOf(t, b, "#trace tr.pub"); !strings.Contains(got, "pg-console") || !strings.Contains(got, "topic "+topic) || !strings.Contains(got, "sent") {
		t.Fatalf("publish trace row %q", got)
	}
	if got := textOf(t, b, "#trace tr.sub"); !strings.Contains(got, group) || !strings.Contains(got, "consumed") {
		t.Fatalf("delivery trace row %q, want group %s and consumed", got, group)
	}
	shots = append(shots, screenshot(t, b, "trace"))

	// Reset to offset 0: the form asks first, and nothing moves until confirmed.
	browse(t, b, "fill the reset form",
		chromedp.Navigate(base+"/console/groups/"+group),
		chromedp.SetValue(chromedp.CSS(`#reset-form input[name="topic"]`), topic),
		chromedp.Click(chromedp.CSS(`#reset-form input[name="mode"][value="offset"]`)),
		chromedp.SetValue(chromedp.CSS(`#reset-form input[name="offset"]`), "0"),
		chromedp.Click(chromedp.CSS(`#reset-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-question")))
	want := fmt.Sprintf("Reset group %s on topic %s to offset 0 on every queue?", group, topic)
	if got := textOf(t, b, "#confirm-question"); got != want {
		t.Fatalf("confirmation asks %q, want %q", got, want)
	}
	shots = append(shots, screenshot(t, b, "reset-confirm"))
	if off, _ := committed(describeGroup(t, dev.Namesrv, group, topic)); off != firstBatch {
		t.Fatalf("offsets moved to %d before the reset was confirmed", off)
	}
	browse(t, b, "confirm the reset", chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#reset-done")))
	if got := textOf(t, b, "#reset-done"); !strings.Contains(got, "2 queues moved") {
		t.Fatalf("after the reset the page says %q", got)
	}
	if got := textOf(t, b, "#lag-total"); got != fmt.Sprint(produced) {
		t.Fatalf("lag after resetting to 0: %s, want %d", got, produced)
	}
	shots = append(shots, screenshot(t, b, "reset-done"))
	for _, q := range describeGroup(t, dev.Namesrv, group, topic) {
		if q.ConsumerOffset != 0 {
			t.Fatalf("after the reset `strata group describe` shows queue %d at offset %d, want 0", q.QueueID, q.ConsumerOffset)
		}
	}

	// Transactions and timers.
	browse(t, b, "open transactions", chromedp.Navigate(base+"/console/transactions"))
	if got := textOf(t, b, "#txn-count"); got != "0 half messages pending." {
		t.Fatalf("transactions page says %q", got)
	}
	shots = append(shots, screenshot(t, b, "transactions"))
	// One message scheduled two hours ahead (delay level 18) is listed as pending.
	later := newProducer(t, dev.Namesrv)
	if _, err := later.SendSync(context.Background(), primitive.NewMessage(topic, []byte("later")).WithDelayTimeLevel(18)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the timers page to list the scheduled message", func() bool {
		browse(t, b, "open timers", chromedp.Navigate(base+"/console/timers"))
		return textOf(t, b, "#timers-pending") == "1"
	})
	shots = append(shots, screenshot(t, b, "timers"))
	t.Logf("screenshots: %s", strings.Join(shots, " "))
}

// orderKey is the key of the i-th message the console test sends.
func orderKey(i int) string { return fmt.Sprintf("order-%02d", i) }

// orderBody is the body of the i-th message the console test sends (not ASCII only, so the
// preview must read it as UTF-8).
func orderBody(i int) string { return fmt.Sprintf("order %02d: 2 × espresso", i) }
