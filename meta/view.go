package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Snapshot is one consistent, immutable state of the cluster's shape. Do not modify its maps.
type Snapshot struct {
	// Revision is the etcd revision the snapshot reflects.
	Revision int64
	Topics   map[string]TopicConfig
	Routes   map[string]Route
	// Brokers is keyed by "<group>/<name>".
	Brokers            map[string]BrokerInfo
	SubscriptionGroups map[string]SubscriptionGroup
	// Masters maps a broker group to its elected master's broker name.
	Masters map[string]string

	candidates map[string]candidate // election key → candidate
}

type candidate struct {
	group     string
	name      string
	createRev int64
}

// BrokerGroupData is one broker group's addresses in RocketMQ's BrokerData shape.
type BrokerGroupData struct {
	Cluster string
	Group   string // RocketMQ brokerName
	// Addrs maps brokerId to the broker-role address; 0 is the acting master.
	Addrs map[int64]string
}

// QueueData is one broker group's share of a topic, in RocketMQ's QueueData shape.
type QueueData struct {
	Group          string // RocketMQ brokerName
	ReadQueueNums  int32
	WriteQueueNums int32
	Perm           int32
}

// TopicRouteData is what a name server answers for a topic.
type TopicRouteData struct {
	Topic   string
	Queues  []QueueData       // sorted by group
	Brokers []BrokerGroupData // sorted by group; only groups in Queues
}

// TopicRoute assembles a topic's route data: its queues per broker group, and each group's
// brokers with the elected master at id 0 (or the configured MASTER if the election has no
// leader yet). ok is false if the topic or its route is unknown.
func (s *Snapshot) TopicRoute(cluster, topic string) (TopicRouteData, bool) {
	t, ok := s.Topics[topic]
	if !ok {
		return TopicRouteData{}, false
	}
	r, ok := s.Routes[topic]
	if !ok {
		return TopicRouteData{}, false
	}
	out := TopicRouteData{Topic: topic}
	for _, gq := range r.Queues {
		bd := s.BrokerGroup(cluster, gq.Group)
		if len(bd.Addrs) == 0 {
			// Not live in this snapshot: producers and consumers skip the group until it
			// registers again, with the same queues.
			continue
		}
		out.Queues = append(out.Queues, QueueData{Group: gq.Group, ReadQueueNums: gq.ReadQueues, WriteQueueNums: gq.WriteQueues, Perm: t.Perm})
		out.Brokers = append(out.Brokers, bd)
	}
	return out, true
}

// BrokerGroup returns a group's live brokers keyed by RocketMQ brokerId (0 = master).
func (s *Snapshot) BrokerGroup(cluster, group string) BrokerGroupData {
	bd := BrokerGroupData{Cluster: cluster, Group: group, Addrs: map[int64]string{}}
	master := s.Masters[group]
	var members []BrokerInfo
	for _, b := range s.Brokers {
		if b.Group == group {
			members = append(members, b)
		}
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	if master == "" {
		for _, b := range members {
			if b.Role == RoleMaster {
				master = b.Name
				break
			}
		}
	}
	next := int64(1)
	for _, b := range members {
		if b.Name == master {
			bd.Addrs[0] = b.BrokerAddr
			continue
		}
		id := b.ID
		if id <= 0 {
			id = next
		}
		for bd.Addrs[id] != "" {
			id++
		}
		next = id + 1
		bd.Addrs[id] = b.BrokerAddr
	}
	return bd
}

// View is an in-memory copy of the cluster's shape (topics, routes, brokers, subscription
// groups, masters) kept current by etcd watches. During an etcd outage it keeps serving its last
// state, and catches up when etcd returns.
type View struct {
	c      *Client
	cancel context.CancelFunc
	done   chan struct{}

	// snap is read without mu (every send asks for it); mu orders a change of snap with
	// the close of changed, so Current's pair is consistent.
	snap    atomic.Pointer[Snapshot]
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change

	closeOnce sync.Once
}

// NewView loads the current state and starts watching. It fails if etcd cannot be read within
// ctx: a broker should not start serving routes it never knew.
func (c *Client) NewView(ctx context.Context) (*View, error) {
	v := &View{c: c, done: make(chan struct{}), changed: make(chan struct{})}
	snap, err := v.load(ctx)
	if err != nil {
		return nil, err
	}
	v.snap.Store(snap)
	runCtx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	go v.run(runCtx, snap.Revision)
	return v, nil
}

// Current returns the latest snapshot and a channel closed when a newer one replaces it.
func (v *View) Current() (*Snapshot, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.snap.Load(), v.changed
}

// Snapshot returns the latest snapshot.
func (v *View) Snapshot() *Snapshot { return v.snap.Load() }

// Close stops the watches; idempotent.
func (v *View) Close() error {
	v.closeOnce.Do(func() {
		v.cancel()
		<-v.done
		v.c.clearFault(viewComponent)
	})
	return nil
}

const viewComponent = "view"

func (v *View) watchedDirs() []string {
	return []string{dirBrokers, dirTopics, dirRoutes, dirSubGroups, dirElection}
}

func (v *View) load(ctx context.Context) (*Snapshot, error) {
	s := &Snapshot{
		Topics: map[string]TopicConfig{}, Routes: map[string]Route{}, Brokers: map[string]BrokerInfo{},
		SubscriptionGroups: map[string]SubscriptionGroup{}, Masters: map[string]string{}, candidates: map[string]candidate{},
	}
	var rev int64
	for _, dir := range v.watchedDirs() {
		r, err := v.c.scanAt(ctx, v.c.key(dir), rev, func(kv *mvccpb.KeyValue) error {
			return v.apply(s, dir, &clientv3.Event{Type: clientv3.EventTypePut, Kv: kv})
		})
		if err != nil {
			return nil, fmt.Errorf("load cluster view: %w", err)
		}
		if rev == 0 {
			rev = r // the other directories are read at the same revision
		}
	}
	s.Revision = rev
	s.Masters = mastersOf(s.candidates)
	return s, nil
}

// apply folds one event into s, whose maps the caller owns.
func (v *View) apply(s *Snapshot, dir string, ev *clientv3.Event) error {
	name := strings.TrimPrefix(string(ev.Kv.Key), v.c.key(dir))
	del := ev.Type == clientv3.EventTypeDelete
	var err error
	switch dir {
	case dirBrokers:
		if del {
			delete(s.Brokers, name)
		} else {
			var b BrokerInfo
			err = json.Unmarshal(ev.Kv.Value, &b)
			s.Brokers[name] = b
		}
	case dirTopics:
		if del {
			delete(s.Topics, name)
		} else {
			var t TopicConfig
			err = json.Unmarshal(ev.Kv.Value, &t)
			t.Incarnation = ev.Kv.CreateRevision
			s.Topics[name] = t
		}
	case dirRoutes:
		if del {
			delete(s.Routes, name)
		} else {
			var r Route
			err = json.Unmarshal(ev.Kv.Value, &r)
			s.Routes[name] = r
		}
	case dirSubGroups:
		if del {
			delete(s.SubscriptionGroups, name)
		} else {
			var g SubscriptionGroup
			err = json.Unmarshal(ev.Kv.Value, &g)
			s.SubscriptionGroups[name] = g
		}
	case dirElection:
		i := strings.LastIndexByte(name, '/')
		if i <= 0 {
			return nil
		}
		if del {
			delete(s.candidates, name)
		} else if c, ok := s.candidates[name]; ok {
			c.name = string(ev.Kv.Value) // proclaim: same candidate, new value
			s.candidates[name] = c
		} else {
			s.candidates[name] = candidate{group: name[:i], name: string(ev.Kv.Value), createRev: ev.Kv.CreateRevision}
		}
	}
	if err != nil {
		return fmt.Errorf("decode %s: %w", ev.Kv.Key, err)
	}
	return nil
}

// mastersOf applies etcd election semantics: the candidate with the lowest create revision leads.
// MasterEpoch is the election epoch of group's current master (the create revision of its
// election key, Leadership.Epoch), 0 when nobody leads.
func (s *Snapshot) MasterEpoch(group string) int64 {
	var best int64
	for _, c := range s.candidates {
		if c.group == group && (best == 0 || c.createRev < best) {
			best = c.createRev
		}
	}
	return best
}

func mastersOf(cands map[string]candidate) map[string]string {
	best := map[string]candidate{}
	for _, c := range cands {
		if b, ok := best[c.group]; !ok || c.createRev < b.createRev {
			best[c.group] = c
		}
	}
	out := make(map[string]string, len(best))
	for g, c := range best {
		out[g] = c.name
	}
	return out
}

func (v *View) publish(s *Snapshot) {
	v.mu.Lock()
	v.snap.Store(s)
	close(v.changed)
	v.changed = make(chan struct{})
	v.mu.Unlock()
}

func (v *View) run(ctx context.Context, rev int64) {
	defer close(v.done)
	bo := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for {
		err := v.watch(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		// The watch broke (compaction, lost leader): reload, keep serving the old state meanwhile.
		v.c.setFault(viewComponent, err)
		for {
			if !sleepCtx(ctx, bo.next()) {
				return
			}
			snap, lerr := v.load(ctx)
			if lerr == nil {
				v.publish(snap)
				rev = snap.Revision
				break
			}
			v.c.setFault(viewComponent, lerr)
		}
		bo.reset()
		v.c.clearFault(viewComponent)
	}
}

type dirEvents struct {
	dir  string
	resp clientv3.WatchResponse
	ok   bool
}

// watch follows every watched directory from rev+1 until a watch fails.
func (v *View) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	merged := make(chan dirEvents)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, dir := range v.watchedDirs() {
		wch := v.c.cli.Watch(wctx, v.c.key(dir), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				resp, ok := <-wch
				select {
				case merged <- dirEvents{dir: dir, resp: resp, ok: ok}:
				case <-wctx.Done():
					return
				}
				if !ok {
					return
				}
			}
		}()
	}
	for {
		var de dirEvents
		select {
		case <-ctx.Done():
			return ctx.Err()
		case de = <-merged:
		}
		if !de.ok {
			return fmt.Errorf("watch %s closed", de.dir)
		}
		if err := de.resp.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", de.dir, err)
		}
		if len(de.resp.Events) == 0 {
			continue
		}
		old := v.Snapshot()
		next := *old
		// Copy only the map this directory touches; the others are shared, read-only.
		switch de.dir {
		case dirBrokers:
			next.Brokers = maps.Clone(old.Brokers)
		case dirTopics:
			next.Topics = maps.Clone(old.Topics)
		case dirRoutes:
			next.Routes = maps.Clone(old.Routes)
		case dirSubGroups:
			next.SubscriptionGroups = maps.Clone(old.SubscriptionGroups)
		case dirElection:
			next.candidates = maps.Clone(old.candidates)
		}
		for _, ev := range de.resp.Events {
			if err := v.apply(&next, de.dir, ev); err != nil {
				v.c.setFault(viewComponent, err) // a bad value: skip it, keep watching
			}
		}
		if de.dir == dirElection {
			next.Masters = mastersOf(next.candidates)
		}
		next.Revision = de.resp.Header.Revision
		v.publish(&next)
	}
}
