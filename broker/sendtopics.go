package broker

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
)

// A send used to look its topic up five times: the topic config and the route in the view
// (copying the route into a fresh Queues slice), the incarnation of the local data, and the
// two topic counters, each a map of every topic. With thousands of topics those lookups miss
// the CPU caches and cost more than the append. writableTopics keeps, per topic, one
// immutable writableTopic holding what the checks found, so a send pays one map load and two
// pointer comparisons while neither the view nor the incarnations changed.

// writableTopic is a topic this broker has accepted a send to, as it stood in one view
// snapshot under one state of the incarnations: the route, the permission and the
// incarnation were checked against exactly those, and the result is reused until either
// changes.
type writableTopic struct {
	snap *meta.Snapshot // the view snapshot info was read from
	// incarnationsVersion is incarnations.version when the incarnation was checked.
	incarnationsVersion uint64
	info                topicInfo
	writeQueueNums      int32 // this broker group's write queues of the topic, > 0
	// queues remembers each write queue's consume queue in the store, by queue id, so the
	// append skips the store's lookup too.
	queues []store.QueueRef
	// slot is the topic's place in writableTopics, which outlives this entry and holds the
	// topic's counters; set by writableTopics.keep.
	slot *topicSlot
}

type topicInCounters struct{ messages, bytes prometheus.Counter }

// countIn adds an append of msgs messages and n stored bytes to the topic's counters.
func (t *writableTopic) countIn(m *metrics, msgs, n int) {
	c := t.slot.counters.Load()
	if c == nil {
		c = &topicInCounters{messages: m.messagesIn.WithLabelValues(t.info.Name), bytes: m.bytesIn.WithLabelValues(t.info.Name)}
		t.slot.counters.Store(c)
	}
	c.messages.Add(float64(msgs))
	c.bytes.Add(float64(n))
}

// queue returns the store's handle on the topic's write queue id (0 <= id < writeQueueNums).
func (t *writableTopic) queue(id int32) *store.QueueRef { return &t.queues[id] }

// writableTopics maps topic → *writableTopic. Entries of topics gone from the view are dropped
// by forgetDeleted; an entry that is out of date is replaced on the next send.
//
// Every send reads it and few write it (once per topic and change of the view), so a read
// takes no lock and writes nothing shared: a plain map published through an atomic pointer,
// one probe of a Go map (sync.Map walks a trie of pointers, each a cache miss once there are
// thousands of topics). A topic's slot holds its current entry, so replacing an entry is one
// atomic store; a topic new to the table goes to a dirty copy under mu, which is published
// once lookups have missed the read map as many times as the copy holds topics (sync.Map's
// own amortisation, before Go 1.24), so building the table costs O(1) a topic.
type writableTopics struct {
	read   atomic.Pointer[readTopics]
	mu     sync.Mutex
	dirty  map[string]*topicSlot // under mu: nil, or read's topics and those added since
	misses int                   // under mu: lookups that went past read to dirty
}

// readTopics is the published map; never modified once published.
type readTopics struct {
	m       map[string]*topicSlot
	amended bool // dirty holds topics m does not
}

// topicSlot is one topic's place in writableTopics.
type topicSlot struct {
	cur atomic.Pointer[writableTopic]
	// counters are the topic's strata_broker_{messages,bytes}_in_total, fetched on the first
	// append so a topic whose sends all fail takes no metrics label.
	counters atomic.Pointer[topicInCounters]
}

func (w *writableTopics) loadRead() *readTopics {
	if r := w.read.Load(); r != nil {
		return r
	}
	return &readTopics{}
}

// slot returns topic's slot, or nil.
func (w *writableTopics) slot(topic string) *topicSlot {
	r := w.loadRead()
	if s, ok := r.m[topic]; ok || !r.amended {
		return s
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	r = w.loadRead()
	if s, ok := r.m[topic]; ok || !r.amended {
		return s
	}
	s := w.dirty[topic]
	if w.misses++; w.misses >= len(w.dirty) {
		w.promoteLocked()
	}
	return s
}

// promoteLocked publishes dirty as the read map.
func (w *writableTopics) promoteLocked() {
	if w.dirty == nil {
		return
	}
	w.read.Store(&readTopics{m: w.dirty})
	w.dirty, w.misses = nil, 0
}

// current returns topic's entry if it still holds for snap and the incarnations' version.
func (w *writableTopics) current(topic string, snap *meta.Snapshot, incarnationsVersion uint64) (*writableTopic, bool) {
	s := w.slot(topic)
	if s == nil {
		return nil, false
	}
	t := s.cur.Load()
	return t, t.snap == snap && t.incarnationsVersion == incarnationsVersion
}

// keep stores t as its topic's entry, replacing any.
func (w *writableTopics) keep(t *writableTopic) {
	if s := w.slot(t.info.Name); s != nil {
		t.slot = s
		s.cur.Store(t)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.loadRead()
	s, ok := r.m[t.info.Name]
	if !ok {
		s, ok = w.dirty[t.info.Name]
	}
	if !ok {
		if w.dirty == nil {
			w.dirty = maps.Clone(r.m)
			if w.dirty == nil {
				w.dirty = make(map[string]*topicSlot)
			}
			w.read.Store(&readTopics{m: r.m, amended: true})
		}
		s = &topicSlot{}
		w.dirty[t.info.Name] = s
	}
	t.slot = s
	s.cur.Store(t)
}

// forgetDeleted drops the entries of topics s no longer has.
func (w *writableTopics) forgetDeleted(s *meta.Snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.promoteLocked()
	r := w.loadRead()
	var keep map[string]*topicSlot
	for topic := range r.m {
		if _, ok := s.Topics[topic]; !ok {
			keep = make(map[string]*topicSlot, len(r.m))
			break
		}
	}
	if keep == nil {
		return
	}
	for topic, slot := range r.m {
		if _, ok := s.Topics[topic]; ok {
			keep[topic] = slot
		}
	}
	w.read.Store(&readTopics{m: keep})
}

// writableTopic finds (or auto-creates) topic and checks that this broker may append to it:
// writable, with local data of its current incarnation, with write queues on this group.
func (b *Broker) writableTopic(ctx context.Context, topic string, autoCreate bool) (*writableTopic, error) {
	snap := b.meta.view.Snapshot()
	version := b.incarnations.version.Load()
	cached, ok := b.sendTopics.current(topic, snap, version)
	if ok {
		return cached, nil
	}
	if err := validTopicName(topic); err != nil {
		return nil, sendErrorf(remoting.RespInvalidParameter, "%v", err)
	}
	if isInternalTopic(topic) {
		return nil, sendErrorf(remoting.RespNoPermission, "topic %s is a system topic of this broker; producers may not send to it", topic)
	}
	t, ok := topicFrom(snap, topic)
	if !ok {
		switch {
		case isGroupSystemTopic(topic):
			var err error
			if t, err = b.ensureTopic(ctx, topic, 1); err != nil {
				return nil, sendErrorf(remoting.RespSystemError, "create %s: %v", topic, err)
			}
		case autoCreate && b.cfg.AutoCreateTopics:
			var err error
			if t, err = b.ensureTopic(ctx, topic, b.cfg.DefaultQueueNums); err != nil {
				return nil, sendErrorf(remoting.RespSystemError, "auto-create topic %s: %v", topic, err)
			}
		default:
			return nil, sendErrorf(remoting.RespTopicNotExist, "topic %s does not exist; create it with `strata topic create`", topic)
		}
	}
	if t.Perm&permWrite == 0 {
		return nil, sendErrorf(remoting.RespNoPermission, "topic %s is not writable (perm %d)", topic, t.Perm)
	}
	if err := b.checkIncarnation(ctx, t); err != nil {
		return nil, sendErrorf(remoting.RespSystemError, "%v", err)
	}
	share, ok := t.share(b.cfg.BrokerName)
	if !ok && isGroupSystemTopic(topic) {
		// A broker group that joined after the consumer group's system topic was made.
		var err error
		if t, err = b.ensureTopic(ctx, topic, 1); err != nil {
			return nil, sendErrorf(remoting.RespSystemError, "add broker group %s to %s: %v", b.cfg.BrokerName, topic, err)
		}
		share, ok = t.share(b.cfg.BrokerName)
	}
	if !ok || share.WriteQueueNums == 0 {
		return nil, sendErrorf(remoting.RespTopicNotExist, "topic %s has no writable queue on broker %s; refresh the route", topic, b.cfg.BrokerName)
	}
	// Kept under the snapshot and version read first: if the checks above created the topic or
	// recorded its incarnation, both have moved on and the next send checks once more.
	wt := &writableTopic{snap: snap, incarnationsVersion: version, info: t, writeQueueNums: int32(share.WriteQueueNums),
		queues: make([]store.QueueRef, share.WriteQueueNums)}
	b.sendTopics.keep(wt)
	return wt, nil
}
