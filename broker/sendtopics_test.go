package broker

import (
	"fmt"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/stratamq/strata/meta"
)

func snapshotOf(topics ...string) *meta.Snapshot {
	s := &meta.Snapshot{Topics: map[string]meta.TopicConfig{}}
	for _, t := range topics {
		s.Topics[t] = meta.TopicConfig{}
	}
	return s
}

func keepEntry(w *writableTopics, topic string, snap *meta.Snapshot, version uint64) *writableTopic {
	t := &writableTopic{snap: snap, incarnationsVersion: version, info: topicInfo{Name: topic}, writeQueueNums: 1}
	w.keep(t)
	return t
}

func TestWritableTopicsKeepAndCurrent(t *testing.T) {
	var w writableTopics
	s1 := snapshotOf("a", "b")
	if got, ok := w.current("a", s1, 1); got != nil || ok {
		t.Fatalf("empty table: current(a) = %v, %v; want nil, false", got, ok)
	}
	a := keepEntry(&w, "a", s1, 1)
	for range 3 { // found through the dirty map, then after it was published
		if got, ok := w.current("a", s1, 1); got != a || !ok {
			t.Fatalf("current(a) = %p, %v; want %p, true", got, ok, a)
		}
	}
	if got, ok := w.current("b", s1, 1); got != nil || ok {
		t.Fatalf("current(b) before any send to b = %v, %v", got, ok)
	}
	if got, ok := w.current("a", snapshotOf("a", "b"), 1); got != a || ok {
		t.Fatalf("current(a) under a newer snapshot = %p, %v; want the old entry, false", got, ok)
	}
	if got, ok := w.current("a", s1, 2); got != a || ok {
		t.Fatalf("current(a) under a newer incarnations version = %p, %v; want the old entry, false", got, ok)
	}
	s2 := snapshotOf("a", "b")
	a2 := keepEntry(&w, "a", s2, 2)
	if a2.slot != a.slot {
		t.Fatalf("a replaced entry has a new slot: counters would restart")
	}
	if got, ok := w.current("a", s2, 2); got != a2 || !ok {
		t.Fatalf("current(a) after replace = %p, %v; want %p, true", got, ok, a2)
	}
}

// TestWritableTopicsManyTopics adds topics one by one, looking each up after it is kept, as
// sends do, and checks every one is found, in the read map once lookups published it.
func TestWritableTopicsManyTopics(t *testing.T) {
	var w writableTopics
	snap := snapshotOf()
	const n = 5000
	entries := make([]*writableTopic, n)
	for i := range entries {
		topic := fmt.Sprintf("t-%d", i)
		snap.Topics[topic] = meta.TopicConfig{}
		entries[i] = keepEntry(&w, topic, snap, 1)
		if got, ok := w.current(topic, snap, 1); got != entries[i] || !ok {
			t.Fatalf("current(%s) right after keep = %p, %v", topic, got, ok)
		}
	}
	for i, e := range entries {
		if got, ok := w.current(e.info.Name, snap, 1); got != entries[i] || !ok {
			t.Fatalf("current(%s) = %p, %v", e.info.Name, got, ok)
		}
	}
	// A topic only in the dirty map costs a locked lookup, until as many of those as the
	// dirty map holds topics publish it.
	last := entries[n-1].info.Name
	for range n {
		w.current(last, snap, 1)
	}
	if r := w.read.Load(); r == nil || r.amended || len(r.m) != n {
		t.Fatalf("after %d lookups past the read map, it should hold all %d topics (it holds %d)", n, n, len(r.m))
	}
}

func TestWritableTopicsForgetDeleted(t *testing.T) {
	var w writableTopics
	s1 := snapshotOf("a", "b", "c")
	keepEntry(&w, "a", s1, 1)
	b := keepEntry(&w, "b", s1, 1) // a and b only in the dirty map
	w.forgetDeleted(s1)
	if got, _ := w.current("b", s1, 1); got != b {
		t.Fatalf("forgetDeleted of a snapshot holding every topic dropped b")
	}
	c := keepEntry(&w, "c", s1, 1)
	s2 := snapshotOf("b", "c")
	w.forgetDeleted(s2)
	if got, ok := w.current("a", s1, 1); got != nil || ok {
		t.Fatalf("deleted topic a still has an entry: %p, %v", got, ok)
	}
	for _, e := range []*writableTopic{b, c} {
		if got, _ := w.current(e.info.Name, s1, 1); got != e {
			t.Fatalf("forgetDeleted dropped %s, which the snapshot still has", e.info.Name)
		}
	}
	a := keepEntry(&w, "a", snapshotOf("a"), 1) // created again
	if got, _ := w.current("a", a.snap, 1); got != a {
		t.Fatalf("topic a sent to again is not found")
	}
}

// TestWritableTopicsCountersSurviveReplace checks a topic's counters are fetched once and kept
// by the entries that replace the first.
func TestWritableTopicsCountersSurviveReplace(t *testing.T) {
	m := newMetrics(MetricsConfig{MaxTopics: 10})
	var w writableTopics
	e1 := keepEntry(&w, "orders", snapshotOf("orders"), 1)
	e1.countIn(m, 2, 100)
	e2 := keepEntry(&w, "orders", snapshotOf("orders"), 2)
	e2.countIn(m, 3, 50)
	if got := m.messagesInByTopic()["orders"]; got != 5 {
		t.Fatalf("messages in = %v, want 5", got)
	}
	var d dto.Metric
	if err := m.bytesIn.vec.WithLabelValues("orders").Write(&d); err != nil || d.GetCounter().GetValue() != 150 {
		t.Fatalf("bytes in = %v (%v), want 150", d.GetCounter().GetValue(), err)
	}
}

// TestWritableTopicsConcurrent runs sends' lookups and keeps of many topics against
// forgetDeleted, for the race detector, and checks that every topic still in the view is
// found with the entry last kept for it.
func TestWritableTopicsConcurrent(t *testing.T) {
	var w writableTopics
	const topics, workers = 300, 4
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("c-%d", i)
	}
	all := snapshotOf(names...)
	half := snapshotOf(names[:topics/2]...)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 * topics {
				topic := names[(i*7+g)%topics]
				if cur, ok := w.current(topic, all, 1); !ok {
					keepEntry(&w, topic, all, 1)
				} else if cur.info.Name != topic {
					t.Errorf("current(%s) returned the entry of %s", topic, cur.info.Name)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			w.forgetDeleted(all)
		}
	}()
	wg.Wait()
	w.forgetDeleted(half)
	for i, topic := range names {
		cur, ok := w.current(topic, all, 1)
		if i < topics/2 && (!ok || cur.info.Name != topic) {
			t.Fatalf("current(%s), a topic every worker sent to, = %v, %v", topic, cur, ok)
		}
		if i >= topics/2 && cur != nil {
			t.Fatalf("deleted topic %s still has an entry", topic)
		}
	}
}
