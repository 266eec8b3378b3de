package console

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/txn"
	"github.com/stratamq/strata/query"
)

// overviewPage is the data of overview.html.
type overviewPage struct {
	Cluster     Cluster
	Topics      int
	Groups      int
	TxnPending  int
	TxnError    string
	Timers      Timers
	GeneratedAt time.Time
}

func (c *console) serveOverview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := overviewPage{Cluster: c.src.Cluster(ctx), Timers: c.src.Timers(ctx), GeneratedAt: time.Now()}
	for _, t := range c.src.Topics(ctx) {
		if !t.System {
			p.Topics++
		}
	}
	p.Groups = len(c.src.Groups(ctx))
	if l, err := c.src.PendingTransactions(ctx, "", 0); err != nil {
		p.TxnError = err.Error()
	} else {
		p.TxnPending = l.Pending
	}
	c.render(w, r, http.StatusOK, "overview", "Cluster "+p.Cluster.Name, "cluster", p)
}

// topicsPage is the data of topics.html.
type topicsPage struct {
	Topics     []TopicSummary
	ShowSystem bool
	Hidden     int // system topics not shown
	SelfGroup  string
}

func (c *console) serveTopics(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	cl := c.src.Cluster(ctx)
	p := topicsPage{ShowSystem: r.URL.Query().Get("system") == "1", SelfGroup: cl.SelfGroup}
	all := c.src.Topics(ctx)
	c.rates.observe(all, time.Now(), cl.Started)
	for _, t := range all {
		if t.System && !p.ShowSystem {
			p.Hidden++
			continue
		}
		p.Topics = append(p.Topics, t)
	}
	c.render(w, r, http.StatusOK, "topics", "Topics", "topics", p)
}

func (c *console) serveTopic(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, err := c.src.Topic(ctx, r.PathValue("topic"))
	if err != nil {
		c.fail(w, r, err, "/console/topics")
		return
	}
	c.rates.observeOne(&t.TopicSummary, time.Now(), c.src.Cluster(ctx).Started)
	c.render(w, r, http.StatusOK, "topic", "Topic "+t.Name, "topics", t)
}

func (c *console) serveGroups(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "groups", "Consumer groups", "groups", c.src.Groups(r.Context()))
}

// groupPage is the data of group.html.
type groupPage struct {
	GroupDetail
	// Done reports a reset just made (the redirect after it carries it in the query).
	Done *resetDone
	// Form is the reset form's values, kept when it comes back with an error.
	Form resetForm
}

// resetDone is the banner after a reset.
type resetDone struct {
	Topic   string
	Target  string
	Queues  int
	Clients int
}

func (c *console) serveGroup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	g, err := c.src.Group(ctx, r.PathValue("group"))
	if err != nil {
		c.fail(w, r, err, "/console/groups")
		return
	}
	p := groupPage{GroupDetail: g}
	q := r.URL.Query()
	if t := q.Get("reset"); t != "" {
		n, _ := strconv.Atoi(q.Get("queues"))
		cl, _ := strconv.Atoi(q.Get("clients"))
		p.Done = &resetDone{Topic: t, Target: q.Get("to"), Queues: n, Clients: cl}
	}
	p.Form.Mode = "offset"
	for _, t := range g.Topics() {
		// The topic the group consumes, not its retry topic.
		if !strings.HasPrefix(t, "%RETRY%") && !strings.HasPrefix(t, "%DLQ%") {
			p.Form.Topic = t
			break
		}
	}
	c.render(w, r, http.StatusOK, "group", "Group "+g.Name, "groups", p)
}

// maxResetFormBytes bounds a posted reset form: a few short fields.
const maxResetFormBytes = 16 << 10

// resetForm is the reset form as posted.
type resetForm struct {
	Topic     string
	Mode      string // "offset" or "time"
	Offset    string
	Time      string
	Queue     string // "" for every queue
	KeepNewer bool
}

// values encodes the form for the confirmation page's hidden fields.
func (f resetForm) values() url.Values {
	v := url.Values{"topic": {f.Topic}, "mode": {f.Mode}, "offset": {f.Offset}, "time": {f.Time}, "queue": {f.Queue}}
	if f.KeepNewer {
		v.Set("keep_newer", "on")
	}
	return v
}

// parseResetForm reads and checks a reset form into the request it asks for.
func parseResetForm(group string, form url.Values) (resetForm, ResetRequest, error) {
	f := resetForm{Topic: strings.TrimSpace(form.Get("topic")), Mode: form.Get("mode"),
		Offset: strings.TrimSpace(form.Get("offset")), Time: strings.TrimSpace(form.Get("time")),
		Queue: strings.TrimSpace(form.Get("queue")), KeepNewer: form.Get("keep_newer") != ""}
	req := ResetRequest{Group: group, Topic: f.Topic, ToOffset: -1, QueueID: -1, KeepNewer: f.KeepNewer}
	if f.Topic == "" {
		return f, req, invalid("choose the topic whose offsets to reset")
	}
	switch f.Mode {
	case "offset":
		n, err := strconv.ParseInt(f.Offset, 10, 64)
		if err != nil || n < 0 {
			return f, req, invalid("offset %q is not a queue offset (a whole number, 0 or more)", f.Offset)
		}
		req.ToOffset = n
	case "time":
		t, err := parseTime(f.Time)
		if err != nil {
			return f, req, invalid("time: %v", err)
		}
		if t.IsZero() {
			return f, req, invalid("give the time to reset to")
		}
		req.ToTime = t
	default:
		return f, req, invalid("reset to what? choose an offset or a time (mode %q)", f.Mode)
	}
	if f.Queue != "" {
		n, err := strconv.ParseInt(f.Queue, 10, 32)
		if err != nil || n < 0 {
			return f, req, invalid("queue %q is not a queue id (leave it empty for every queue)", f.Queue)
		}
		req.QueueID = int32(n)
	}
	return f, req, nil
}

// describeTarget says what a reset moves to, as the confirmation and the banner show it.
func describeTarget(r ResetRequest) string {
	s := ""
	if r.ToOffset >= 0 {
		s = fmt.Sprintf("offset %d", r.ToOffset)
	} else {
		s = "the first message stored at or after " + r.ToTime.UTC().Format("2006-01-02 15:04:05.000 UTC")
	}
	if r.QueueID >= 0 {
		s += fmt.Sprintf(" on queue %d", r.QueueID)
	} else {
		s += " on every queue"
	}
	if r.KeepNewer {
		s += ", leaving queues already older alone"
	}
	return s
}

// confirmPage is the data of confirm.html.
type confirmPage struct {
	Group   string
	Topic   string
	Target  string
	Fields  url.Values
	Current []GroupQueue
	Members int
}

// serveReset asks for confirmation, then resets: the form posts without confirm=yes and gets
// the question back with the same values in hidden fields; the confirmed post resets and
// redirects to the group page (POST, redirect, GET), whose banner says what was done.
func (c *console) serveReset(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	group := r.PathValue("group")
	back := "/console/groups/" + url.PathEscape(group)
	r.Body = http.MaxBytesReader(w, r.Body, maxResetFormBytes)
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, invalid("reset form: %v", err), back)
		return
	}
	f, req, err := parseResetForm(group, r.PostForm)
	if err != nil {
		c.fail(w, r, err, back)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		g, err := c.src.Group(ctx, group)
		if err != nil {
			c.fail(w, r, err, "/console/groups")
			return
		}
		p := confirmPage{Group: group, Topic: req.Topic, Target: describeTarget(req), Fields: f.values(), Members: len(g.Members)}
		for _, q := range g.Queues {
			if q.Topic == req.Topic && (req.QueueID < 0 || q.QueueID == req.QueueID) {
				p.Current = append(p.Current, q)
			}
		}
		c.render(w, r, http.StatusOK, "confirm", "Confirm reset of "+group, "groups", p)
		return
	}
	res, err := c.src.ResetGroup(ctx, req)
	if err != nil {
		c.fail(w, r, err, back)
		return
	}
	c.cfg.Logger.Info("console: consumer offsets reset", "group", group, "topic", req.Topic, "to", describeTarget(req),
		"queues", len(res.Queues), "clients", res.Clients, "remote", r.RemoteAddr)
	v := url.Values{"reset": {req.Topic}, "to": {describeTarget(req)},
		"queues": {strconv.Itoa(len(res.Queues))}, "clients": {strconv.Itoa(res.Clients)}}
	http.Redirect(w, r, back+"?"+v.Encode(), http.StatusSeeOther)
}

// messagesPage is the data of messages.html.
type messagesPage struct {
	By, Topic, Q, From, To string
	Limit                  int
	MaxLimit               int
	Searched               bool
	Error                  string
	Result                 SearchResult
	Previews               []bodyPreview
	Topics                 []string
}

func (c *console) serveMessages(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	p := messagesPage{By: cmp.Or(q.Get("by"), SearchByKey), Topic: strings.TrimSpace(q.Get("topic")), Q: strings.TrimSpace(q.Get("q")),
		From: strings.TrimSpace(q.Get("from")), To: strings.TrimSpace(q.Get("to")), Limit: 20, MaxLimit: c.cfg.MaxSearchResults}
	p.Limit = min(p.Limit, c.cfg.MaxSearchResults)
	for _, t := range c.src.Topics(ctx) {
		if t.Local {
			p.Topics = append(p.Topics, t.Name)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			p.Error = fmt.Sprintf("limit %q is not a count; use 1..%d", v, c.cfg.MaxSearchResults)
		}
		p.Limit = min(max(n, 1), c.cfg.MaxSearchResults)
	}
	if p.Q != "" || (p.By == SearchByTime && p.Topic != "") {
		p.Searched = true
		if p.Error == "" {
			c.search(r, &p)
		}
	}
	status := http.StatusOK
	if p.Error != "" {
		status = http.StatusBadRequest
	}
	c.render(w, r, status, "messages", "Messages", "messages", p)
}

// search runs the search p asks for and fills its result or its error.
func (c *console) search(r *http.Request, p *messagesPage) {
	req := SearchRequest{Kind: p.By, Topic: p.Topic, Limit: p.Limit}
	var err error
	if req.From, err = parseTime(p.From); err != nil {
		p.Error = "from: " + err.Error()
		return
	}
	if req.To, err = parseTime(p.To); err != nil {
		p.Error = "to: " + err.Error()
		return
	}
	switch p.By {
	case SearchByID:
		req.ID = p.Q
	case SearchByKey:
		req.Key = p.Q
		if p.Topic == "" {
			p.Error = "searching by key needs a topic"
			return
		}
	case SearchByTime:
		if p.Topic == "" {
			p.Error = "searching by store time needs a topic"
			return
		}
	default:
		p.Error = fmt.Sprintf("search by %q: choose id, key or time", p.By)
		return
	}
	res, err := c.src.Search(r.Context(), req)
	if err != nil {
		p.Error = err.Error()
		return
	}
	if len(res.Messages) > p.Limit {
		res.Messages = res.Messages[:p.Limit]
	}
	p.Result = res
	for _, m := range res.Messages {
		p.Previews = append(p.Previews, previewBody(m.Body, m.SysFlag, c.cfg.BodyPreviewBytes))
	}
}

// tracePage is the data of trace.html.
type tracePage struct {
	ID, Key  string
	Searched bool
	Error    string
	Messages []traceMessage
}

// traceMessage is one traced message: its publish records and its deliveries.
type traceMessage struct {
	MsgID      string
	Publish    []query.TraceRecord
	Deliveries []traceDelivery
}

// traceDelivery is a SubBefore record joined with its SubAfter (by request id).
type traceDelivery struct {
	Before   query.TraceRecord
	After    query.TraceRecord
	HasAfter bool
}

func (c *console) serveTrace(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := tracePage{ID: strings.TrimSpace(q.Get("id")), Key: strings.TrimSpace(q.Get("key"))}
	status := http.StatusOK
	if p.ID != "" || p.Key != "" {
		p.Searched = true
		recs, err := c.src.Trace(r.Context(), TraceRequest{ID: p.ID, Key: p.Key})
		if err != nil {
			p.Error = err.Error()
			status = http.StatusBadRequest
		} else {
			if len(recs) > c.cfg.MaxTraceRecords {
				recs = recs[:c.cfg.MaxTraceRecords]
			}
			p.Messages = groupTrace(recs)
		}
	}
	c.render(w, r, status, "trace", "Trace", "trace", p)
}

// groupTrace orders trace records by message, publishes first, and joins each delivery's
// records by request id.
func groupTrace(recs []query.TraceRecord) []traceMessage {
	byID := map[string]*traceMessage{}
	var order []string
	after := map[string]query.TraceRecord{}
	for _, r := range recs {
		if r.Type == query.TraceSubAfter {
			after[r.RequestID+"/"+r.MsgID] = r
		}
	}
	for _, r := range recs {
		m := byID[r.MsgID]
		if m == nil {
			m = &traceMessage{MsgID: r.MsgID}
			byID[r.MsgID] = m
			order = append(order, r.MsgID)
		}
		switch r.Type {
		case query.TracePub:
			m.Publish = append(m.Publish, r)
		case query.TraceSubBefore:
			a, ok := after[r.RequestID+"/"+r.MsgID]
			m.Deliveries = append(m.Deliveries, traceDelivery{Before: r, After: a, HasAfter: ok})
		}
	}
	slices.Sort(order)
	out := make([]traceMessage, 0, len(order))
	for _, id := range order {
		m := byID[id]
		slices.SortStableFunc(m.Deliveries, func(a, b traceDelivery) int { return cmp.Compare(a.Before.Time, b.Before.Time) })
		out = append(out, *m)
	}
	return out
}

// transactionsPage is the data of transactions.html.
type transactionsPage struct {
	Group string
	Limit int
	List  txn.PendingList
	Error string
}

func (c *console) serveTransactions(w http.ResponseWriter, r *http.Request) {
	p := transactionsPage{Group: strings.TrimSpace(r.URL.Query().Get("group")), Limit: c.cfg.TxnPendingLimit}
	l, err := c.src.PendingTransactions(r.Context(), p.Group, p.Limit)
	if err != nil {
		p.Error = err.Error()
	}
	p.List = l
	c.render(w, r, http.StatusOK, "transactions", "Transactions pending", "transactions", p)
}

func (c *console) serveTimers(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "timers", "Timers pending", "timers", c.src.Timers(r.Context()))
}

// timeLayouts are the forms a time field takes: what <input type=datetime-local> sends
// (read as UTC, as the pages say), and RFC 3339.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02T15:04:05.000", "2006-01-02 15:04:05"}

// parseTime reads a time field: empty is the zero time; otherwise RFC 3339, a
// datetime-local value (UTC) or Unix milliseconds.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, nil
		}
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return time.UnixMilli(ms).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2026-05-01T12:00:00Z), 2026-05-01T12:00 (UTC) or Unix milliseconds", s)
}
