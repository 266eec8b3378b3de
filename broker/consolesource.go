package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stratamq/strata/broker/console"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/txn"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/query"
	"github.com/stratamq/strata/retro"
	"github.com/stratamq/strata/tier"
)

// The web console (broker/console) over this broker: consoleSource implements
// console.Source from the metadata view, the hot store, the cold tier, the client registry
// and the transaction service; HTTPHandler mounts it at / and /console/. Figures are this
// broker group's (the queues it serves, the offsets it keeps); other groups' consoles are
// linked from the cluster and topic pages.

// Bounds of the console's lookups.
const (
	// consoleKeyScanTopics bounds the topics searched for a unique key when no topic is
	// given.
	consoleKeyScanTopics = 1000
	// consoleTraceLookups bounds the trace messages read for one trace lookup.
	consoleTraceLookups = 256
)

// consoleHandler builds the console's handler, or one that says why it could not.
func (b *Broker) consoleHandler() http.Handler {
	cfg := b.cfg.Console
	if cfg.Auth == nil {
		// With ACL on (or an admin token set) the console asks for an admin account's access
		// key and secret key (HTTP basic auth) or the token; with neither it is open.
		cfg.Auth = b.httpAdmin
	}
	h, err := console.New(consoleSource{b}, cfg)
	if err != nil {
		b.log.Error("console disabled", "err", err)
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "console disabled: "+err.Error(), http.StatusInternalServerError)
		})
	}
	return h
}

// consoleSource implements console.Source over the broker.
type consoleSource struct{ b *Broker }

var errConsoleNotStarted = errors.New("the broker is not started yet; reload in a moment")

// started reports whether Start has set up what the console reads.
func (s consoleSource) started() bool { return s.b.meta != nil && s.b.store != nil }

func (s consoleSource) Cluster(_ context.Context) console.Cluster {
	b := s.b
	c := console.Cluster{Name: b.cfg.ClusterName, Self: b.memberName(), SelfGroup: b.cfg.BrokerName, Started: b.started}
	if !s.started() {
		c.MetaError = errConsoleNotStarted.Error()
		return c
	}
	if err := b.meta.healthy(); err != nil {
		c.MetaError = err.Error()
	}
	snap := b.meta.view.Snapshot()
	c.Revision = snap.Revision
	groups := map[string]*console.BrokerGroup{}
	group := func(name string) *console.BrokerGroup {
		g := groups[name]
		if g == nil {
			g = &console.BrokerGroup{Name: name, Master: snap.Masters[name]}
			groups[name] = g
		}
		return g
	}
	for _, m := range snap.Brokers {
		g := group(m.Group)
		g.Members = append(g.Members, console.BrokerMember{
			Name: m.Name, Role: m.Role, Elected: snap.Masters[m.Group] == m.Name, ID: m.ID,
			BrokerAddr: m.BrokerAddr, NamesrvAddr: m.NamesrvAddr, HTTPAddr: reachableHTTPAddr(m),
			Self: m.Group == b.cfg.BrokerName && m.Name == b.memberName(),
		})
	}
	for name := range snap.Masters {
		group(name)
	}
	for _, g := range groups {
		slices.SortFunc(g.Members, func(x, y console.BrokerMember) int {
			return cmp.Or(cmp.Compare(x.ID, y.ID), cmp.Compare(x.Name, y.Name))
		})
		c.Groups = append(c.Groups, *g)
	}
	slices.SortFunc(c.Groups, func(x, y console.BrokerGroup) int { return cmp.Compare(x.Name, y.Name) })
	c.Tier = s.tier()
	return c
}

// tier is the cold tier's state for the cluster page.
func (s consoleSource) tier() console.Tier {
	b := s.b
	st := b.TierStatus()
	t := console.Tier{Enabled: st.Enabled, Prefix: st.Prefix, OffloadWatermark: st.OffloadWatermark,
		LocalMinOffset: st.LocalMinOffset, LocalMaxOffset: st.LocalMaxOffset, BacklogBytes: st.OffloadLagBytes,
		Segments: st.Segments, Objects: st.Objects, Bytes: st.Bytes, Writer: st.WriterEpoch > 0, WriterEpoch: st.WriterEpoch}
	if b.tier == nil {
		return t
	}
	if first, ok := b.store.FirstStoreTimeFrom(st.OffloadWatermark); ok {
		t.BacklogAge = time.Since(time.UnixMilli(first))
	} else {
		t.BacklogBytes = 0 // what lies past the watermark holds no message (segment padding)
	}
	if b.tier.OffloadStall().Cause != tier.StallNone {
		t.Stall = b.offloadStallRemark()
	}
	return t
}

// reachableHTTPAddr is a member's HTTP address with a wildcard host replaced by the host of
// its broker address, so a link to its console works from a browser.
func reachableHTTPAddr(m meta.BrokerInfo) string {
	host, port, err := net.SplitHostPort(m.HTTPAddr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if bh, _, err := net.SplitHostPort(m.BrokerAddr); err == nil {
			host = bh
		}
	}
	return net.JoinHostPort(host, port)
}

// memberConsole is the console URL of a group's master (or any member) at path, "" when it
// is this broker or has no HTTP listener.
func (s consoleSource) memberConsole(snap *meta.Snapshot, group, path string) string {
	if group == s.b.cfg.BrokerName {
		return ""
	}
	var pick *meta.BrokerInfo
	for _, m := range snap.Brokers {
		if m.Group != group || m.HTTPAddr == "" {
			continue
		}
		if pick == nil || snap.Masters[group] == m.Name {
			m := m
			pick = &m
		}
	}
	if pick == nil {
		return ""
	}
	return "http://" + reachableHTTPAddr(*pick) + path
}

// permString writes a topic permission as RocketMQ's admin tools do.
func permString(p int) string {
	r, w := "-", "-"
	if p&permRead != 0 {
		r = "R"
	}
	if p&permWrite != 0 {
		w = "W"
	}
	return r + w
}

// isSystemTopicName reports topics that RocketMQ or Strata create for themselves.
func isSystemTopicName(name string) bool {
	return isInternalTopic(name) || name == query.TraceTopic || name == "TBW102" || name == "SCHEDULE_TOPIC_XXXX" ||
		strings.HasPrefix(name, "%RETRY%") || strings.HasPrefix(name, "%DLQ%") || strings.HasPrefix(name, "RMQ_SYS_") ||
		strings.HasPrefix(name, "rmq_sys_")
}

// queueCount is how many queues of t this broker group holds.
func queueCount(sh groupQueues) int { return max(sh.ReadQueueNums, sh.WriteQueueNums) }

func (s consoleSource) summary(snap *meta.Snapshot, t topicInfo, l *retro.Log, in map[string]int64) console.TopicSummary {
	ts := console.TopicSummary{Name: t.Name, Perm: permString(t.Perm), System: isSystemTopicName(t.Name), MessagesIn: in[t.Name]}
	for _, q := range t.Queues {
		ts.Shares = append(ts.Shares, console.TopicShare{Group: q.BrokerName, ReadQueues: q.ReadQueueNums, WriteQueues: q.WriteQueueNums,
			ConsoleURL: s.memberConsole(snap, q.BrokerName, "/console/topics/"+url.PathEscape(t.Name))})
	}
	if sh, ok := t.share(s.b.cfg.BrokerName); ok {
		ts.Local = true
		for i := range queueCount(sh) {
			bd := l.Bounds(t.Name, int32(i))
			ts.Messages += bd.Max - bd.Min
		}
	}
	return ts
}

func (s consoleSource) Topics(_ context.Context) []console.TopicSummary {
	if !s.started() {
		return nil
	}
	snap := s.b.meta.view.Snapshot()
	l := s.b.retroLog()
	in := s.b.metrics.messagesInByTopic()
	out := make([]console.TopicSummary, 0, len(snap.Topics))
	for name := range snap.Topics {
		t, _ := topicFrom(snap, name)
		out = append(out, s.summary(snap, t, l, in))
	}
	slices.SortFunc(out, func(x, y console.TopicSummary) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

func (s consoleSource) Topic(_ context.Context, name string) (console.TopicDetail, error) {
	if !s.started() {
		return console.TopicDetail{}, errConsoleNotStarted
	}
	b := s.b
	snap := b.meta.view.Snapshot()
	t, ok := topicFrom(snap, name)
	if !ok {
		return console.TopicDetail{}, fmt.Errorf("topic %s does not exist in cluster %s: %w", name, b.cfg.ClusterName, console.ErrNotFound)
	}
	l := b.retroLog()
	d := console.TopicDetail{TopicSummary: s.summary(snap, t, l, b.metrics.messagesInByTopic()), RetentionMs: t.RetentionMs}
	if sh, ok := t.share(b.cfg.BrokerName); ok {
		for i := range queueCount(sh) {
			q := int32(i)
			bd := l.Bounds(name, q)
			qb := console.QueueBounds{Group: b.cfg.BrokerName, QueueID: q, Min: bd.Min, Max: bd.Max, HotMin: bd.HotMin, HotMax: bd.HotMax,
				HotKnown: bd.HotKnown && bd.HotMax > bd.HotMin, ColdFirst: bd.ColdFirst, ColdLast: bd.ColdLast, InCold: bd.InCold}
			if bd.Max > bd.Min {
				if ms, ok := b.store.StoreTimeAt(name, q, bd.Max-1); ok {
					qb.LastStored = time.UnixMilli(ms)
				}
			}
			d.Queues = append(d.Queues, qb)
		}
	}
	groups := map[string]bool{}
	for k := range b.meta.offsets.Offsets() {
		if k.Topic == name {
			groups[k.Group] = true
		}
	}
	for _, g := range b.clients.groupsSubscribedTo(name) {
		groups[g] = true
	}
	for g := range groups {
		d.ConsumerGroups = append(d.ConsumerGroups, g)
	}
	slices.Sort(d.ConsumerGroups)
	return d, nil
}

func (s consoleSource) Groups(_ context.Context) []console.GroupSummary {
	if !s.started() {
		return nil
	}
	b := s.b
	snap := b.meta.view.Snapshot()
	l := b.retroLog()
	type acc struct {
		sum    console.GroupSummary
		topics map[string]bool
	}
	all := map[string]*acc{}
	get := func(name string) *acc {
		a := all[name]
		if a == nil {
			a = &acc{sum: console.GroupSummary{Name: name}, topics: map[string]bool{}}
			all[name] = a
		}
		return a
	}
	for name := range snap.SubscriptionGroups {
		get(name).sum.Configured = true
	}
	for k, off := range b.meta.offsets.Offsets() {
		if _, ok := snap.Topics[k.Topic]; !ok {
			continue // a deleted topic's offsets, being forgotten
		}
		a := get(k.Group)
		a.topics[k.Topic] = true
		a.sum.HasOffsets = true
		a.sum.Lag += max(0, l.MaxOffset(k.Topic, k.QueueID)-off)
	}
	for _, name := range b.clients.consumerGroupNames() {
		a := get(name)
		a.sum.Clients = len(b.clients.groupConns(name))
		for _, t := range b.clients.groupTopics(name) {
			a.topics[t] = true
		}
	}
	out := make([]console.GroupSummary, 0, len(all))
	for _, a := range all {
		for t := range a.topics {
			a.sum.Topics = append(a.sum.Topics, t)
		}
		slices.Sort(a.sum.Topics)
		out = append(out, a.sum)
	}
	slices.SortFunc(out, func(x, y console.GroupSummary) int { return cmp.Compare(x.Name, y.Name) })
	return out
}

func (s consoleSource) Group(_ context.Context, name string) (console.GroupDetail, error) {
	if !s.started() {
		return console.GroupDetail{}, errConsoleNotStarted
	}
	b := s.b
	d := console.GroupDetail{Name: name}
	if g, ok := b.meta.group(name); ok {
		d.Configured, d.ConsumeEnable, d.Broadcast, d.MaxReconsumeTimes = true, g.ConsumeEnable, g.BroadcastEnable, g.RetryMaxTimes
	}
	topics := map[string]bool{}
	for k := range b.meta.offsets.Offsets() {
		if k.Group == name {
			topics[k.Topic] = true
		}
	}
	for _, t := range b.clients.groupTopics(name) {
		topics[t] = true
	}
	d.Members = b.clients.consoleMembers(name)
	if !d.Configured && len(topics) == 0 && len(d.Members) == 0 {
		return d, fmt.Errorf("consumer group %s is not configured in etcd, has no offsets in broker group %s and no consumer connected here: %w",
			name, b.cfg.BrokerName, console.ErrNotFound)
	}
	sorted := make([]string, 0, len(topics))
	for t := range topics {
		sorted = append(sorted, t)
	}
	slices.Sort(sorted)
	l := b.retroLog()
	for _, topic := range sorted {
		t, ok := b.meta.topic(topic)
		if !ok {
			continue
		}
		sh, ok := t.share(b.cfg.BrokerName)
		if !ok {
			continue
		}
		for i := range queueCount(sh) {
			q := int32(i)
			bd := l.Bounds(topic, q)
			gq := console.GroupQueue{Topic: topic, Group: b.cfg.BrokerName, QueueID: q, Min: bd.Min, HotMin: bd.HotMin, Max: bd.Max,
				Offset: -1, Lag: -1, Tier: retro.Nowhere.String()}
			if off, ok := b.meta.offset(name, topic, q); ok {
				gq.Offset, gq.Lag, gq.Tier = off, max(0, bd.Max-off), bd.Locate(off).String()
			}
			d.Queues = append(d.Queues, gq)
		}
	}
	return d, nil
}

// ResetGroup goes through INVOKE_BROKER_TO_RESET_OFFSET's handler (offsets.go), as `strata
// group reset` does over the wire, so the console's reset is the same one: offsets written
// to etcd, queues fenced, connected consumers told.
func (s consoleSource) ResetGroup(ctx context.Context, r console.ResetRequest) (console.ResetResult, error) {
	if !s.started() {
		return console.ResetResult{}, errConsoleNotStarted
	}
	b := s.b
	// The group must be one the console shows (configured, with offsets here or a
	// consumer connected): a reset is not the way to create one.
	if _, err := s.Group(ctx, r.Group); err != nil {
		return console.ResetResult{}, err
	}
	t, ok := b.meta.topic(r.Topic)
	if !ok {
		return console.ResetResult{}, fmt.Errorf("topic %s does not exist: %w", r.Topic, console.ErrNotFound)
	}
	sh, ok := t.share(b.cfg.BrokerName)
	if !ok {
		return console.ResetResult{}, fmt.Errorf("broker group %s serves no queue of topic %s; reset it on the console of a group that does: %w",
			b.cfg.BrokerName, r.Topic, console.ErrInvalid)
	}
	ext := remoting.ExtFields{"topic": r.Topic, "group": r.Group}
	ext.SetBool("isForce", !r.KeepNewer)
	if r.ToOffset >= 0 {
		ext.SetInt64("offset", r.ToOffset)
	} else {
		ext.SetInt64("timestamp", r.ToTime.UnixMilli())
	}
	if r.QueueID >= 0 {
		ext.SetInt64("queueId", int64(r.QueueID))
	}
	var res console.ResetResult
	for i := range sh.ReadQueueNums {
		if q := int32(i); r.QueueID < 0 || q == r.QueueID {
			before := int64(-1)
			if off, ok := b.meta.offset(r.Group, r.Topic, q); ok {
				before = off
			}
			res.Queues = append(res.Queues, console.ResetQueue{QueueID: q, Before: before})
		}
	}
	resp := b.handleResetOffset(ctx, remoting.NewRequest(remoting.CodeInvokeBrokerToResetOffset, ext, nil))
	switch resp.Code {
	case remoting.RespSuccess:
	case remoting.RespInvalidParameter:
		return console.ResetResult{}, fmt.Errorf("%s: %w", resp.Remark, console.ErrInvalid)
	case remoting.RespTopicNotExist:
		return console.ResetResult{}, fmt.Errorf("%s: %w", resp.Remark, console.ErrNotFound)
	default:
		return console.ResetResult{}, fmt.Errorf("reset offsets of group %s on topic %s: %s", r.Group, r.Topic, resp.Remark)
	}
	for i := range res.Queues {
		res.Queues[i].After, _ = b.meta.offset(r.Group, r.Topic, res.Queues[i].QueueID)
	}
	res.Clients = len(b.clients.groupConns(r.Group))
	return res, nil
}

func (s consoleSource) Search(ctx context.Context, r console.SearchRequest) (console.SearchResult, error) {
	if !s.started() {
		return console.SearchResult{}, errConsoleNotStarted
	}
	limit := max(r.Limit, 1)
	switch r.Kind {
	case console.SearchByID:
		return s.searchByID(ctx, r.ID, r.Topic, limit)
	case console.SearchByKey:
		if r.Key == "" {
			return console.SearchResult{}, fmt.Errorf("give the key to search for: %w", console.ErrInvalid)
		}
		if err := s.localTopic(r.Topic); err != nil {
			return console.SearchResult{}, err
		}
		q := query.KeyQuery{Topic: r.Topic, Key: r.Key, MaxResults: limit}
		if !r.From.IsZero() {
			q.BeginMs = r.From.UnixMilli()
		}
		if !r.To.IsZero() {
			q.EndMs = r.To.UnixMilli()
		}
		recs, err := s.b.finder().ByKey(ctx, q)
		if err != nil {
			return console.SearchResult{}, err
		}
		msgs, err := s.decodeFound(recs)
		return console.SearchResult{Messages: msgs}, err
	case console.SearchByTime:
		return s.searchByTime(ctx, r, limit)
	}
	return console.SearchResult{}, fmt.Errorf("search by %q: want id, key or time: %w", r.Kind, console.ErrInvalid)
}

// localTopic checks that topic exists and this broker group serves it.
func (s consoleSource) localTopic(topic string) error {
	t, ok := s.b.meta.topic(topic)
	if !ok {
		return fmt.Errorf("topic %s does not exist: %w", topic, console.ErrNotFound)
	}
	if !t.hasShare(s.b.cfg.BrokerName) {
		return fmt.Errorf("broker group %s serves no queue of topic %s; search on the console of a group that does: %w",
			s.b.cfg.BrokerName, topic, console.ErrInvalid)
	}
	return nil
}

// searchByID tries id as an offset message id of this broker, then as a unique key in topic
// (every topic served here when ""); an offset message id of another broker gets a link to
// its console.
func (s consoleSource) searchByID(ctx context.Context, id, topic string, limit int) (console.SearchResult, error) {
	b := s.b
	var res console.SearchResult
	if id == "" {
		return res, fmt.Errorf("give the message id to search for: %w", console.ErrInvalid)
	}
	if host, off, err := message.ParseOffsetMsgID(id); err == nil {
		if host == b.storeHost {
			rec, err := b.finder().ByCommitLogOffset(ctx, off)
			if err == nil {
				msgs, err := s.decodeFound([][]byte{rec})
				return console.SearchResult{Messages: msgs}, err
			}
			if !errors.Is(err, query.ErrNotFound) {
				return res, err
			}
		} else {
			snap := b.meta.view.Snapshot()
			for _, m := range snap.Brokers {
				if m.BrokerAddr == host.String() {
					res.Note = fmt.Sprintf("%s is an offset message id of broker %s (group %s), not of this broker.", id, m.Name, m.Group)
					res.NoteURL = s.memberConsole(snap, m.Group, "/console/messages?by=id&q="+url.QueryEscape(id))
				}
			}
		}
	}
	topics := []string{topic}
	if topic == "" {
		topics = topics[:0]
		for _, t := range b.meta.topics() {
			if t.hasShare(b.cfg.BrokerName) && !isInternalTopic(t.Name) && t.Name != query.TraceTopic {
				topics = append(topics, t.Name)
			}
			if len(topics) == consoleKeyScanTopics {
				break
			}
		}
	} else if err := s.localTopic(topic); err != nil {
		return res, err
	}
	for _, t := range topics {
		recs, err := b.finder().ByKey(ctx, query.KeyQuery{Topic: t, Key: id, Uniq: true, MaxResults: limit})
		if err != nil {
			return res, err
		}
		if len(recs) > 0 {
			msgs, err := s.decodeFound(recs)
			return console.SearchResult{Messages: msgs}, err
		}
	}
	return res, nil
}

// searchByTime lists a topic's messages stored from r.From on (the oldest held when zero;
// until r.To when set), oldest first across the queues.
func (s consoleSource) searchByTime(ctx context.Context, r console.SearchRequest, limit int) (console.SearchResult, error) {
	b := s.b
	if err := s.localTopic(r.Topic); err != nil {
		return console.SearchResult{}, err
	}
	t, _ := b.meta.topic(r.Topic)
	sh, _ := t.share(b.cfg.BrokerName)
	l := b.retroLog()
	fromMs := int64(0)
	if !r.From.IsZero() {
		fromMs = r.From.UnixMilli()
	}
	var found []console.FoundMessage
	for i := range queueCount(sh) {
		q := int32(i)
		off, err := l.OffsetForTime(ctx, r.Topic, q, fromMs)
		if err != nil {
			return console.SearchResult{}, err
		}
		rr, err := l.Read(ctx, retro.ReadRequest{Topic: r.Topic, QueueID: q, Offset: off, MaxMessages: limit})
		if err != nil {
			return console.SearchResult{}, err
		}
		for _, rec := range rr.Records {
			m, _, err := message.Decode(rec)
			if err != nil {
				return console.SearchResult{}, fmt.Errorf("decode %s/%d: %w", r.Topic, q, err)
			}
			if m.StoreTimestamp < fromMs || (!r.To.IsZero() && m.StoreTimestamp > r.To.UnixMilli()) {
				continue
			}
			found = append(found, console.FoundMessage{Message: m, Tier: rr.From.String()})
		}
	}
	slices.SortFunc(found, func(x, y console.FoundMessage) int {
		return cmp.Or(cmp.Compare(x.StoreTimestamp, y.StoreTimestamp), cmp.Compare(x.QueueID, y.QueueID), cmp.Compare(x.QueueOffset, y.QueueOffset))
	})
	if len(found) > limit {
		found = found[:limit]
	}
	return console.SearchResult{Messages: found}, nil
}

// decodeFound decodes stored records and says which tier holds each.
func (s consoleSource) decodeFound(recs [][]byte) ([]console.FoundMessage, error) {
	l := s.b.retroLog()
	out := make([]console.FoundMessage, 0, len(recs))
	for _, rec := range recs {
		m, _, err := message.Decode(rec)
		if err != nil {
			return out, fmt.Errorf("decode a found message: %w", err)
		}
		where := l.Bounds(m.Topic, m.QueueID).Locate(m.QueueOffset)
		if where == retro.Nowhere {
			where = retro.Cold // found by the tier's index below what the queue still serves
		}
		out = append(out, console.FoundMessage{Message: m, Tier: where.String()})
	}
	return out, nil
}

// Trace reads RMQ_SYS_TRACE_TOPIC in both tiers, as `strata trace` does over the wire: trace
// messages are keyed by the traced message's id and keys.
func (s consoleSource) Trace(ctx context.Context, r console.TraceRequest) ([]query.TraceRecord, error) {
	if !s.started() {
		return nil, errConsoleNotStarted
	}
	if (r.ID == "") == (r.Key == "") {
		return nil, fmt.Errorf("give a message id or a key, not both: %w", console.ErrInvalid)
	}
	if _, ok := s.b.meta.topic(query.TraceTopic); !ok {
		return nil, fmt.Errorf("the trace topic %s does not exist (the broker's trace topic is disabled): %w", query.TraceTopic, console.ErrNotFound)
	}
	if r.ID != "" {
		recs, err := s.traceRecords(ctx, r.ID)
		return keepTrace(recs, func(t query.TraceRecord) bool { return t.MsgID == r.ID }), err
	}
	byKey, err := s.traceRecords(ctx, r.Key)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, t := range byKey {
		if slices.Contains(strings.Fields(t.Keys), r.Key) {
			ids[t.MsgID] = true
		}
	}
	var out []query.TraceRecord
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		recs, err := s.traceRecords(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, keepTrace(recs, func(t query.TraceRecord) bool { return t.MsgID == id })...)
	}
	return out, nil
}

func keepTrace(recs []query.TraceRecord, keep func(query.TraceRecord) bool) []query.TraceRecord {
	out := recs[:0]
	for _, r := range recs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// traceRecords decodes the trace messages keyed by lookup.
func (s consoleSource) traceRecords(ctx context.Context, lookup string) ([]query.TraceRecord, error) {
	recs, err := s.b.finder().ByKey(ctx, query.KeyQuery{Topic: query.TraceTopic, Key: lookup, MaxResults: consoleTraceLookups})
	if err != nil {
		return nil, err
	}
	var out []query.TraceRecord
	for _, rec := range recs {
		m, _, err := message.Decode(rec)
		if err != nil {
			return nil, fmt.Errorf("decode a trace message: %w", err)
		}
		tr, err := query.ParseTrace(m.Body)
		if err != nil {
			return nil, fmt.Errorf("trace message %s: %w", m.OffsetMsgID(), err)
		}
		out = append(out, tr...)
	}
	return out, nil
}

func (s consoleSource) PendingTransactions(ctx context.Context, group string, limit int) (txn.PendingList, error) {
	if s.b.txnService() == nil {
		return txn.PendingList{}, errConsoleNotStarted
	}
	return s.b.TxnPending(ctx, group, limit), nil
}

// Timers is the console's place for scheduled delivery. broker/timer is not part of this
// build yet; once it is, fill console.Timers from the timer service's Status (pending count,
// next due time, pending by horizon, scheduled/fired/dropped) here.
func (s consoleSource) Timers(context.Context) console.Timers {
	if s.b.timerService() == nil {
		return console.Timers{Note: "Scheduled delivery is not running on this broker."}
	}
	st := s.b.timerService().Status()
	t := console.Timers{Available: true, Pending: st.Pending, Scheduled: st.Scheduled, Fired: st.Fired, Dropped: st.Dropped}
	if st.NextDueMs > 0 {
		t.NextDue = time.UnixMilli(st.NextDueMs).UTC()
	}
	for _, h := range st.PendingByHorizon {
		t.ByHorizon = append(t.ByHorizon, console.TimerHorizon{Horizon: h.Horizon, Count: h.Count})
	}
	return t
}

// messagesInByTopic reads strata_broker_messages_in_total per topic without creating a
// series for a topic that has none (topics past the metrics limit are under "(other)").
func (m *metrics) messagesInByTopic() map[string]int64 {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		m.messagesIn.vec.Collect(ch)
		close(ch)
	}()
	out := map[string]int64{}
	for pm := range ch {
		var d dto.Metric
		if pm.Write(&d) != nil {
			continue
		}
		for _, lp := range d.GetLabel() {
			if lp.GetName() == "topic" {
				out[lp.GetValue()] = int64(d.GetCounter().GetValue())
			}
		}
	}
	return out
}

// consumerGroupNames lists the groups with a connected consumer.
func (r *clientRegistry) consumerGroupNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.consumers))
	for name, g := range r.consumers {
		if len(g.channels) > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// consoleMembers lists a group's connected consumers for the console.
func (r *clientRegistry) consoleMembers(group string) []console.GroupMember {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.consumers[group]
	if g == nil {
		return nil
	}
	out := make([]console.GroupMember, 0, len(g.channels))
	for _, ch := range g.channels {
		m := console.GroupMember{ClientID: ch.clientID, Addr: ch.conn.RemoteAddr().String(), Language: ch.language,
			Version: int(ch.version), ConsumeType: ch.consumeType, MessageModel: ch.messageModel, FromWhere: ch.fromWhere,
			LastHeartbeat: ch.lastHeartbeat}
		for topic, sub := range ch.subs {
			expr := sub.expression
			if sub.exprType != "" && sub.exprType != "TAG" {
				expr = sub.exprType + " " + expr
			}
			m.Subscriptions = append(m.Subscriptions, topic+": "+expr)
		}
		slices.Sort(m.Subscriptions)
		out = append(out, m)
	}
	slices.SortFunc(out, func(x, y console.GroupMember) int {
		return cmp.Or(cmp.Compare(x.ClientID, y.ClientID), cmp.Compare(x.Addr, y.Addr))
	})
	return out
}
