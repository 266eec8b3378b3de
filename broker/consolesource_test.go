package broker

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/timer"
)

// The console over a real broker (embedded etcd, real store): what each page shows, and
// that the offset reset asks before it moves anything.

// consolePage is a page as the test reads it.
type consolePage struct {
	status int
	body   string
	doc    *html.Node
	header http.Header
}

func consoleDo(t *testing.T, h http.Handler, req *http.Request) consolePage {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("%s %s: not HTML: %v", req.Method, req.URL, err)
	}
	return consolePage{status: rec.Code, body: string(body), doc: doc, header: rec.Header()}
}

func consoleGet(t *testing.T, h http.Handler, path string) consolePage {
	t.Helper()
	p := consoleDo(t, h, httptest.NewRequest("GET", path, nil))
	if p.status != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", path, p.status, p.body)
	}
	return p
}

func consolePost(t *testing.T, h http.Handler, path string, form url.Values, header http.Header) consolePage {
	t.Helper()
	req := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	return consoleDo(t, h, req)
}

// text is the visible text under n, with runs of white space as one space.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// find returns the first element under n that match accepts.
func find(n *html.Node, match func(*html.Node) bool) *html.Node {
	if n.Type == html.ElementNode && match(n) {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := find(c, match); f != nil {
			return f
		}
	}
	return nil
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func byID(id string) func(*html.Node) bool {
	return func(n *html.Node) bool { return attr(n, "id") == id }
}

func (p consolePage) textOf(t *testing.T, id string) string {
	t.Helper()
	n := find(p.doc, byID(id))
	if n == nil {
		t.Fatalf("page has no element #%s:\n%s", id, p.body)
	}
	return text(n)
}

// rows are the body rows of table #id, as the cells' texts.
func (p consolePage) rows(t *testing.T, id string) [][]string {
	t.Helper()
	tbl := find(p.doc, byID(id))
	if tbl == nil {
		t.Fatalf("page has no table #%s:\n%s", id, p.body)
	}
	tbody := find(tbl, func(n *html.Node) bool { return n.Data == "tbody" })
	var out [][]string
	for _, tr := range findAll(tbody, func(n *html.Node) bool { return n.Data == "tr" }) {
		var cells []string
		for _, td := range findAll(tr, func(n *html.Node) bool { return n.Data == "td" }) {
			cells = append(cells, text(td))
		}
		out = append(out, cells)
	}
	return out
}

// sendOK sends a message with props (sendWithProps) and wants it stored.
func sendOK(t *testing.T, env *testEnv, topic string, queue int, props map[string]string, body []byte) *remoting.Command {
	t.Helper()
	resp := sendWithProps(t, env, topic, queue, props, string(body))
	wantCode(t, resp, remoting.RespSuccess)
	return resp
}

func TestConsolePages(t *testing.T) {
	env := startBroker(t, nil)
	h := env.b.HTTPHandler()
	createTopic(t, env, "orders", 2)
	var firstID string
	for i := range 6 {
		resp := sendOK(t, env, "orders", i%2, map[string]string{message.PropertyKeys: "order-" + strconv.Itoa(i), message.PropertyTags: "paid"},
			[]byte("<b>order "+strconv.Itoa(i)+"</b>"))
		if i == 0 {
			firstID = resp.ExtFields["msgId"]
		}
	}
	sendOK(t, env, "orders", 0, map[string]string{message.PropertyKeys: "blob"}, []byte{0x00, 0xff, 0x10, 'z'})
	// Group cg consumed 2 of queue 0's 4 messages and 1 of queue 1's 3.
	commitOffset(t, env, "cg", "orders", 0, 2)
	commitOffset(t, env, "cg", "orders", 1, 1)
	c := dial(t, env.b.BrokerAddr(), nil)
	wantCode(t, invoke(t, c, remoting.CodeHeartBeat, nil, heartbeat("10.0.0.7@member", "cg", "orders", "paid")), remoting.RespSuccess)

	// The cluster page shows the master as the watched view knows it.
	waitFor(t, "the elected master in the view", func() bool { return env.b.meta.view.Snapshot().Masters["broker-a"] != "" })
	t.Run("cluster", func(t *testing.T) {
		for _, path := range []string{"/", "/console/"} {
			p := consoleGet(t, h, path)
			rows := p.rows(t, "broker-groups")
			if len(rows) != 1 || rows[0][0] != "broker-a" || !strings.Contains(rows[0][1], "broker-a-0 (this broker)") || rows[0][3] != "master" {
				t.Fatalf("%s: broker groups %q", path, rows)
			}
			if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Fatalf("%s: Content-Security-Policy %q", path, csp)
			}
		}
	})
	t.Run("topics", func(t *testing.T) {
		p := consoleGet(t, h, "/console/topics")
		found := false
		for _, r := range p.rows(t, "topic-list") {
			if r[0] == "orders" {
				found = true
				if r[3] != "7" || r[4] != "7" || !strings.Contains(r[2], "broker-a (2/2)") {
					t.Fatalf("orders row %q, want 7 messages held and appended on broker-a (2/2)", r)
				}
			}
			if strings.HasPrefix(r[0], "%RETRY%") || strings.HasPrefix(r[0], "RMQ_SYS_") {
				t.Fatalf("system topic %q listed without ?system=1", r[0])
			}
		}
		if !found {
			t.Fatalf("orders not listed:\n%s", p.body)
		}
		if all := consoleGet(t, h, "/console/topics?system=1"); !strings.Contains(all.body, "RMQ_SYS_TRACE_TOPIC") {
			t.Fatal("?system=1 does not list the trace topic")
		}
		d := consoleGet(t, h, "/console/topics/orders")
		q := d.rows(t, "queues")
		if len(q) != 2 || q[0][1] != "0" || q[0][3] != "4" || q[0][5] != "0 – 3 (4)" || q[1][3] != "3" {
			t.Fatalf("queues of orders %q", q)
		}
		if got := d.textOf(t, "topic-messages"); got != "7" {
			t.Fatalf("topic page says %q messages, want 7", got)
		}
		if nf := consoleDo(t, h, httptest.NewRequest("GET", "/console/topics/nope", nil)); nf.status != http.StatusNotFound ||
			!strings.Contains(nf.textOf(t, "error"), "topic nope does not exist") {
			t.Fatalf("unknown topic: %d %s", nf.status, nf.body)
		}
	})
	t.Run("group", func(t *testing.T) {
		gl := consoleGet(t, h, "/console/groups")
		var row []string
		for _, r := range gl.rows(t, "group-list") {
			if r[0] == "cg" {
				row = r
			}
		}
		if row == nil || row[2] != "1" || row[4] != "4" {
			t.Fatalf("group list row of cg %q, want 1 consumer and lag 4", row)
		}
		p := consoleGet(t, h, "/console/groups/cg")
		if got := p.textOf(t, "lag-total"); got != "4" {
			t.Fatalf("group lag %q, want 4 (7 produced, 3 consumed)", got)
		}
		q := p.rows(t, "group-queues")
		if len(q) != 2 || q[0][6] != "2" || q[0][7] != "2" || q[1][6] != "1" || q[1][7] != "2" {
			t.Fatalf("group queues %q", q)
		}
		m := p.rows(t, "members")
		if len(m) != 1 || m[0][0] != "10.0.0.7@member" || m[0][5] != "orders: paid" {
			t.Fatalf("members %q", m)
		}
		if nf := consoleDo(t, h, httptest.NewRequest("GET", "/console/groups/nobody", nil)); nf.status != http.StatusNotFound {
			t.Fatalf("unknown group: %d", nf.status)
		}
	})
	t.Run("search", func(t *testing.T) {
		p := consoleGet(t, h, "/console/messages?by=key&topic=orders&q=order-3")
		if got := p.textOf(t, "result-count"); got != "1 messages found." {
			t.Fatalf("search by key: %q\n%s", got, p.body)
		}
		body := find(p.doc, func(n *html.Node) bool { return strings.Contains(attr(n, "class"), "body text") })
		if body == nil || text(body) != "<b>order 3</b>" {
			t.Fatalf("body preview %v in\n%s", body, p.body)
		}
		if strings.Contains(p.body, "<b>order 3</b>") {
			t.Fatal("a message body reached the page unescaped")
		}
		bin := consoleGet(t, h, "/console/messages?by=key&topic=orders&q=blob")
		hex := find(bin.doc, func(n *html.Node) bool { return strings.Contains(attr(n, "class"), "body hex") })
		if hex == nil || !strings.Contains(text(hex), "00 ff 10 7a") {
			t.Fatalf("binary body not shown as hex:\n%s", bin.body)
		}
		byID := consoleGet(t, h, "/console/messages?by=id&q="+firstID)
		if !strings.Contains(byID.body, "&lt;b&gt;order 0&lt;/b&gt;") || !strings.Contains(byID.body, firstID) {
			t.Fatalf("search by offset message id %s:\n%s", firstID, byID.body)
		}
		since := consoleGet(t, h, "/console/messages?by=time&topic=orders&from=2000-01-01T00:00&limit=5")
		if got := since.textOf(t, "result-count"); got != "5 messages found." {
			t.Fatalf("search by time, limit 5: %q", got)
		}
		oldest := consoleGet(t, h, "/console/messages?by=time&topic=orders&limit=2")
		if got := oldest.textOf(t, "result-count"); got != "2 messages found." || !strings.Contains(oldest.body, "&lt;b&gt;order 0&lt;/b&gt;") {
			t.Fatalf("browse by time from the oldest, limit 2: %q\n%s", got, oldest.body)
		}
		bad := consoleDo(t, h, httptest.NewRequest("GET", "/console/messages?by=key&q=x", nil))
		if bad.status != http.StatusBadRequest || !strings.Contains(bad.textOf(t, "search-error"), "needs a topic") {
			t.Fatalf("search by key without topic: %d %s", bad.status, bad.body)
		}
	})
	t.Run("trace transactions timers", func(t *testing.T) {
		tr := consoleGet(t, h, "/console/trace?id=C0A800010000000000000000000000FF")
		if !strings.Contains(tr.body, "No trace found") {
			t.Fatalf("trace of an untraced id:\n%s", tr.body)
		}
		tx := consoleGet(t, h, "/console/transactions")
		if got := tx.textOf(t, "txn-count"); got != "0 half messages pending." {
			t.Fatalf("transactions: %q", got)
		}
		sendOK(t, env, "orders", 0, map[string]string{timer.PropertyTimerDelaySec: "3600"}, []byte("in an hour"))
		waitFor(t, "the scheduled message indexed", func() bool { return env.b.timerService().Status().Pending == 1 })
		tm := consoleGet(t, h, "/console/timers")
		if got := tm.textOf(t, "timers-pending"); got != "1" {
			t.Fatalf("timers pending: %q, want 1", got)
		}
	})
	t.Run("assets", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/console/assets/htmx-2.0.11.min.js", nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "htmx") || !strings.Contains(rec.Header().Get("Content-Type"), "javascript") {
			t.Fatalf("htmx asset: %d %s", rec.Code, rec.Header())
		}
		if nf := consoleDo(t, h, httptest.NewRequest("GET", "/nowhere", nil)); nf.status != http.StatusNotFound {
			t.Fatalf("unknown path: %d", nf.status)
		}
		// The console does not shadow the broker's own endpoints.
		if ok := consoleDo(t, h, httptest.NewRequest("GET", "/healthz", nil)); ok.status != 200 || !strings.Contains(ok.body, "ok") {
			t.Fatalf("/healthz: %d %s", ok.status, ok.body)
		}
	})
}

func TestConsoleResetAsksThenResets(t *testing.T) {
	env := startBroker(t, nil)
	h := env.b.HTTPHandler()
	createTopic(t, env, "R", 2)
	before := time.Now()
	for i := range 10 {
		sendOK(t, env, "R", i%2, nil, []byte("m"+strconv.Itoa(i)))
	}
	commitOffset(t, env, "cg", "R", 0, 5)
	commitOffset(t, env, "cg", "R", 1, 5)
	offset := func(q int32) int64 {
		off, ok := env.b.meta.offset("cg", "R", q)
		if !ok {
			t.Fatalf("no offset of queue %d", q)
		}
		return off
	}
	form := url.Values{"topic": {"R"}, "mode": {"offset"}, "offset": {"1"}}

	ask := consolePost(t, h, "/console/groups/cg/reset", form, nil)
	if ask.status != 200 {
		t.Fatalf("reset form: %d %s", ask.status, ask.body)
	}
	if got := ask.textOf(t, "confirm-question"); got != "Reset group cg on topic R to offset 1 on every queue?" {
		t.Fatalf("confirmation asks %q", got)
	}
	if offset(0) != 5 || offset(1) != 5 {
		t.Fatal("the reset happened before it was confirmed")
	}
	// Confirming re-posts the hidden fields with confirm=yes, as the browser would.
	confirmed := url.Values{}
	for _, in := range findAll(find(ask.doc, byID("confirm-form")), func(n *html.Node) bool { return n.Data == "input" }) {
		confirmed.Add(attr(in, "name"), attr(in, "value"))
	}
	if confirmed.Get("confirm") != "yes" {
		t.Fatalf("confirmation form fields %v", confirmed)
	}

	// A page of another site cannot make the browser confirm.
	cross := consolePost(t, h, "/console/groups/cg/reset", confirmed, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if cross.status != http.StatusForbidden || offset(0) != 5 {
		t.Fatalf("cross-site confirm: %d, offset %d", cross.status, offset(0))
	}

	done := consolePost(t, h, "/console/groups/cg/reset", confirmed, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	if done.status != http.StatusSeeOther {
		t.Fatalf("confirmed reset: %d %s", done.status, done.body)
	}
	if offset(0) != 1 || offset(1) != 1 {
		t.Fatalf("offsets after reset to 1: %d, %d", offset(0), offset(1))
	}
	page := consoleGet(t, h, done.header.Get("Location"))
	if got := page.textOf(t, "reset-done"); !strings.Contains(got, "Reset offsets of topic R to offset 1 on every queue: 2 queues moved") {
		t.Fatalf("banner after reset: %q", got)
	}
	if got := page.textOf(t, "lag-total"); got != "8" {
		t.Fatalf("lag after reset to 1: %q, want 8", got)
	}

	// To a time: the first message stored at or after it, here the queue's start.
	byTime := url.Values{"topic": {"R"}, "mode": {"time"}, "time": {before.Add(-time.Second).UTC().Format(time.RFC3339)}, "queue": {"1"}, "confirm": {"yes"}}
	if r := consolePost(t, h, "/console/groups/cg/reset", byTime, nil); r.status != http.StatusSeeOther {
		t.Fatalf("reset to a time: %d %s", r.status, r.body)
	}
	if offset(1) != 0 || offset(0) != 1 {
		t.Fatalf("reset of queue 1 to a time before every message: offsets %d, %d; want 1, 0", offset(0), offset(1))
	}

	// A reset does not create a group.
	if r := consolePost(t, h, "/console/groups/nobody/reset", url.Values{"topic": {"R"}, "mode": {"offset"}, "offset": {"0"}, "confirm": {"yes"}}, nil); r.status != http.StatusNotFound {
		t.Fatalf("reset of an unknown group: %d %s", r.status, r.body)
	}
	if _, ok := env.b.meta.offset("nobody", "R", 0); ok {
		t.Fatal("a reset of an unknown group wrote an offset")
	}

	// Bad requests come back with what to fix, and change nothing.
	for _, bad := range []url.Values{
		{"topic": {"R"}, "mode": {"offset"}, "offset": {"x"}, "confirm": {"yes"}},
		{"topic": {"R"}, "mode": {"offset"}, "offset": {"0"}, "queue": {"9"}, "confirm": {"yes"}},
		{"topic": {"nope"}, "mode": {"offset"}, "offset": {"0"}, "confirm": {"yes"}},
	} {
		r := consolePost(t, h, "/console/groups/cg/reset", bad, nil)
		if r.status != http.StatusBadRequest && r.status != http.StatusNotFound {
			t.Fatalf("bad reset %v: %d %s", bad, r.status, r.body)
		}
		if offset(0) != 1 || offset(1) != 0 {
			t.Fatalf("bad reset %v moved offsets to %d, %d", bad, offset(0), offset(1))
		}
	}
}

// TestConsoleAuthHook: Config.Console.Auth wraps every console page (ACL on asks for an
// access key); the broker's health endpoints stay open.
func TestConsoleAuthHook(t *testing.T) {
	env := startBroker(t, func(c *Config) {
		c.Console.Auth = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if user, pass, ok := r.BasicAuth(); !ok || user != "ak" || pass != "sk" {
					w.Header().Set("WWW-Authenticate", `Basic realm="strata"`)
					http.Error(w, "access key and secret needed", http.StatusUnauthorized)
					return
				}
				next.ServeHTTP(w, r)
			})
		}
	})
	h := env.b.HTTPHandler()
	for _, path := range []string{"/", "/console/topics", "/console/assets/console.css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("%s without credentials: %d", path, rec.Code)
		}
		req := httptest.NewRequest("GET", path, nil)
		req.SetBasicAuth("ak", "sk")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s with credentials: %d", path, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/healthz behind the console's auth: %d", rec.Code)
	}
}

// TestConsoleServesOverHTTP: the console answers on the broker's HTTP listener itself.
func TestConsoleServesOverHTTP(t *testing.T) {
	env := startBroker(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+env.b.HTTPAddr()+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "Broker groups") {
		t.Fatalf("GET / on %s: %d %.300s", env.b.HTTPAddr(), resp.StatusCode, b)
	}
}
