package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/remoting"
)

// heartbeatData is the HEART_BEAT body (PROTOCOL.md §6.1).
type heartbeatData struct {
	ClientID        string `json:"clientID"`
	ProducerDataSet []struct {
		GroupName string `json:"groupName"`
	} `json:"producerDataSet"`
	ConsumerDataSet []consumerData `json:"consumerDataSet"`

	// From the request header, not the body: the client's language and protocol version,
	// which admin tools show per connection.
	language string
	version  int16
}

type consumerData struct {
	GroupName           string             `json:"groupName"`
	ConsumeType         string             `json:"consumeType"`
	MessageModel        string             `json:"messageModel"`
	ConsumeFromWhere    string             `json:"consumeFromWhere"`
	UnitMode            bool               `json:"unitMode"`
	SubscriptionDataSet []subscriptionData `json:"subscriptionDataSet"`
}

type subscriptionData struct {
	ClassFilterMode bool            `json:"classFilterMode"`
	Topic           string          `json:"topic"`
	SubString       string          `json:"subString"`
	TagsSet         []string        `json:"tagsSet"`
	CodeSet         []flexibleInt   `json:"codeSet"`
	SubVersion      json.RawMessage `json:"subVersion"`
	ExpressionType  string          `json:"expressionType"`
}

// flexibleInt accepts a JSON number or a decimal string (Go sends codeSet as strings, Java as
// numbers).
type flexibleInt int64

func (f *flexibleInt) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) >= 2 && s[0] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("tag code %s is not an integer", b)
	}
	*f = flexibleInt(n)
	return nil
}

const messageModelBroadcasting = "BROADCASTING"

// consumerChannel is one client connection's membership in one consumer group.
type consumerChannel struct {
	clientID      string
	conn          *remoting.Conn
	lastHeartbeat time.Time
	messageModel  string
	fromWhere     string // consumeFromWhere, e.g. CONSUME_FROM_TIMESTAMP
	consumeType   string // CONSUME_PASSIVELY (push) or CONSUME_ACTIVELY (pull)
	language      string
	version       int16
	subs          map[string]subscription // by topic
	subData       []subscriptionData      // as the heartbeat sent them, for admin tools
}

// subscription is a registered subscription in the form the pull path filters with.
type subscription struct {
	expression string
	exprType   string
	filter     *filter.Filter
	// err is why the expression was refused; pulls that rely on this subscription answer
	// with it until the consumer sends a valid one.
	err error
}

// subscriptionError is a subscription a heartbeat could not register.
type subscriptionError struct {
	group, topic string
	err          error
}

type consumerGroup struct {
	channels map[uint64]*consumerChannel // by connection id
}

type producerChannel struct {
	clientID      string
	conn          *remoting.Conn
	lastHeartbeat time.Time
}

// clientRegistry keeps consumer and producer group membership per connection (PROTOCOL.md
// §6.1, §6.3, §6.5). A connection's registrations end when it closes or stops heartbeating.
type clientRegistry struct {
	mu        sync.Mutex
	consumers map[string]*consumerGroup
	producers map[string]map[uint64]*producerChannel
	watched   map[uint64]bool // connections with an OnClose hook

	// notify is called, outside mu, for every group whose membership changed.
	notify func(group string, conns []*remoting.Conn)
	// compile turns a subscription expression into its filter.
	compile func(exprType, expr string) (*filter.Filter, error)
}

func newClientRegistry(notify func(group string, conns []*remoting.Conn), compile func(exprType, expr string) (*filter.Filter, error)) *clientRegistry {
	return &clientRegistry{
		consumers: make(map[string]*consumerGroup),
		producers: make(map[string]map[uint64]*producerChannel),
		watched:   make(map[uint64]bool),
		notify:    notify,
		compile:   compile,
	}
}

// register records a heartbeat synchronously, so GET_CONSUMER_LIST sent right after it lists
// the caller (§6.3). It notifies groups whose channels or subscriptions changed. It returns
// the subscriptions whose expression does not compile; they are registered all the same,
// with their error, and everything else in the heartbeat takes effect.
func (r *clientRegistry) register(conn *remoting.Conn, hb *heartbeatData, now time.Time) []subscriptionError {
	type change struct {
		group string
		conns []*remoting.Conn
	}
	var changes []change
	var refused []subscriptionError
	compiled := make([]map[string]subscription, len(hb.ConsumerDataSet))
	for i, cd := range hb.ConsumerDataSet {
		compiled[i] = make(map[string]subscription, len(cd.SubscriptionDataSet))
		for _, sd := range cd.SubscriptionDataSet {
			f, err := r.compile(sd.ExpressionType, sd.SubString)
			compiled[i][sd.Topic] = subscription{expression: sd.SubString, exprType: sd.ExpressionType, filter: f, err: err}
			if err != nil && cd.GroupName != "" {
				refused = append(refused, subscriptionError{cd.GroupName, sd.Topic, err})
			}
		}
	}
	r.mu.Lock()
	for i, cd := range hb.ConsumerDataSet {
		if cd.GroupName == "" {
			continue
		}
		g := r.consumers[cd.GroupName]
		if g == nil {
			g = &consumerGroup{channels: make(map[uint64]*consumerChannel)}
			r.consumers[cd.GroupName] = g
		}
		subs := compiled[i]
		ch := g.channels[conn.ID()]
		changed := ch == nil || ch.clientID != hb.ClientID || !sameSubscriptions(ch.subs, subs)
		g.channels[conn.ID()] = &consumerChannel{
			clientID: hb.ClientID, conn: conn, lastHeartbeat: now, messageModel: cd.MessageModel, fromWhere: cd.ConsumeFromWhere, subs: subs,
			consumeType: cd.ConsumeType, language: hb.language, version: hb.version, subData: cd.SubscriptionDataSet,
		}
		if changed && cd.MessageModel != messageModelBroadcasting {
			changes = append(changes, change{cd.GroupName, g.connsLocked()})
		}
	}
	for _, pd := range hb.ProducerDataSet {
		if pd.GroupName == "" {
			continue
		}
		m := r.producers[pd.GroupName]
		if m == nil {
			m = make(map[uint64]*producerChannel)
			r.producers[pd.GroupName] = m
		}
		m[conn.ID()] = &producerChannel{clientID: hb.ClientID, conn: conn, lastHeartbeat: now}
	}
	hook := !r.watched[conn.ID()]
	r.watched[conn.ID()] = true
	r.mu.Unlock()
	if hook {
		conn.OnClose(func() { r.removeConn(conn.ID()) })
	}
	for _, c := range changes {
		r.notify(c.group, c.conns)
	}
	return refused
}

func sameSubscriptions(a, b map[string]subscription) bool {
	if len(a) != len(b) {
		return false
	}
	for t, s := range a {
		o, ok := b[t]
		if !ok || o.expression != s.expression || o.exprType != s.exprType {
			return false
		}
	}
	return true
}

func (g *consumerGroup) connsLocked() []*remoting.Conn {
	out := make([]*remoting.Conn, 0, len(g.channels))
	for _, ch := range g.channels {
		out = append(out, ch.conn)
	}
	return out
}

// removeConn drops every registration of a closed connection and notifies the groups it left.
func (r *clientRegistry) removeConn(id uint64) {
	r.removeWhere(func(connID uint64, _ time.Time) bool { return connID == id })
	r.mu.Lock()
	delete(r.watched, id)
	r.mu.Unlock()
}

// unregister serves UNREGISTER_CLIENT (35): it drops only the named producer and consumer
// groups' registrations made on conn (RocketMQ matches the channel), so a process whose
// consumers share one connection keeps its other groups when one shuts down.
func (r *clientRegistry) unregister(connID uint64, producerGroup, consumerGroup string) {
	var notifyConns []*remoting.Conn
	notify := false
	r.mu.Lock()
	if g := r.consumers[consumerGroup]; consumerGroup != "" && g != nil {
		if ch, ok := g.channels[connID]; ok {
			delete(g.channels, connID)
			if len(g.channels) == 0 {
				delete(r.consumers, consumerGroup)
			} else if ch.messageModel != messageModelBroadcasting {
				notify, notifyConns = true, g.connsLocked()
			}
		}
	}
	if m := r.producers[producerGroup]; producerGroup != "" && m != nil {
		delete(m, connID)
		if len(m) == 0 {
			delete(r.producers, producerGroup)
		}
	}
	r.mu.Unlock()
	if notify {
		r.notify(consumerGroup, notifyConns)
	}
}

// expire drops registrations without a heartbeat since before deadline.
func (r *clientRegistry) expire(deadline time.Time) {
	r.removeWhere(func(_ uint64, last time.Time) bool { return last.Before(deadline) })
}

func (r *clientRegistry) removeWhere(drop func(connID uint64, last time.Time) bool) {
	type change struct {
		group string
		conns []*remoting.Conn
	}
	var changes []change
	r.mu.Lock()
	for name, g := range r.consumers {
		removed, broadcast := false, false
		for id, ch := range g.channels {
			if drop(id, ch.lastHeartbeat) {
				broadcast = ch.messageModel == messageModelBroadcasting
				delete(g.channels, id)
				removed = true
			}
		}
		if len(g.channels) == 0 {
			delete(r.consumers, name)
		} else if removed && !broadcast {
			changes = append(changes, change{name, g.connsLocked()})
		}
	}
	for name, m := range r.producers {
		for id, p := range m {
			if drop(id, p.lastHeartbeat) {
				delete(m, id)
			}
		}
		if len(m) == 0 {
			delete(r.producers, name)
		}
	}
	r.mu.Unlock()
	for _, c := range changes {
		r.notify(c.group, c.conns)
	}
}

// producerConns lists the connections of a producer group (check-back targets).
func (r *clientRegistry) producerConns(group string) []*remoting.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*remoting.Conn, 0, len(r.producers[group]))
	for _, p := range r.producers[group] {
		out = append(out, p.conn)
	}
	return out
}

// consumerIDs lists the group's client ids, sorted and unique.
func (r *clientRegistry) consumerIDs(group string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.consumers[group]
	if g == nil {
		return nil
	}
	seen := make(map[string]bool)
	var out []string
	for _, ch := range g.channels {
		if !seen[ch.clientID] {
			seen[ch.clientID] = true
			out = append(out, ch.clientID)
		}
	}
	sort.Strings(out)
	return out
}

// subscription finds the group's registered subscription for topic, preferring the one made
// on conn (§7.3).
func (r *clientRegistry) subscription(group, topic string, conn *remoting.Conn) (subscription, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.consumers[group]
	if g == nil {
		return subscription{}, false
	}
	if ch := g.channels[conn.ID()]; ch != nil {
		if s, ok := ch.subs[topic]; ok {
			return s, true
		}
	}
	for _, ch := range g.channels {
		if s, ok := ch.subs[topic]; ok {
			return s, true
		}
	}
	return subscription{}, false
}

// lockTable holds orderly consumers' queue locks (PROTOCOL.md §6.6).
type lockTable struct {
	mu     sync.Mutex
	expiry time.Duration
	locks  map[lockKey]lockEntry
}

type lockKey struct {
	group string
	mq    messageQueue
}

type lockEntry struct {
	clientID string
	updated  time.Time
}

// messageQueue is RocketMQ's MessageQueue JSON object.
type messageQueue struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int    `json:"queueId"`
}

func newLockTable(expiry time.Duration) *lockTable {
	return &lockTable{expiry: expiry, locks: make(map[lockKey]lockEntry)}
}

// lock grants every queue that is free, already the caller's, or held by an expired entry,
// and returns the queues the caller now holds.
func (t *lockTable) lock(group, clientID string, mqs []messageQueue, now time.Time) []messageQueue {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []messageQueue{}
	for _, mq := range mqs {
		k := lockKey{group, mq}
		e, ok := t.locks[k]
		if !ok || e.clientID == clientID || now.Sub(e.updated) > t.expiry {
			t.locks[k] = lockEntry{clientID: clientID, updated: now}
			out = append(out, mq)
		}
	}
	return out
}

func (t *lockTable) unlock(group, clientID string, mqs []messageQueue) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, mq := range mqs {
		k := lockKey{group, mq}
		if e, ok := t.locks[k]; ok && e.clientID == clientID {
			delete(t.locks, k)
		}
	}
}

// holdsUnexpired reports whether the group still holds an unexpired lock (a %RETRY% send from
// such a group goes to the DLQ, §6.6).
func (t *lockTable) holdsUnexpired(group string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.locks {
		if k.group == group && now.Sub(e.updated) <= t.expiry {
			return true
		}
	}
	return false
}

func (t *lockTable) sweep(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.locks {
		if now.Sub(e.updated) > t.expiry {
			delete(t.locks, k)
		}
	}
}

// notifyConsumerIDsChanged sends NOTIFY_CONSUMER_IDS_CHANGED (40) to every connection of the
// group, oneway (§6.5). A failed write only means that client rebalances on its 20 s timer.
func notifyConsumerIDsChanged(ctx context.Context, group string, conns []*remoting.Conn) {
	for _, c := range conns {
		req := remoting.NewRequest(remoting.CodeNotifyConsumerIdsChanged, remoting.ExtFields{"consumerGroup": group}, nil)
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_ = c.InvokeOneway(wctx, req)
		cancel()
	}
}
