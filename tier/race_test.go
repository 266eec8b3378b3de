package tier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
	"github.com/stratamq/strata/tier/objstore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// raceMember is one member of a broker group: its own etcd client, election candidacy and
// tier, all on the group's one bucket prefix.
type raceMember struct {
	name string
	mc   *meta.Client
	el   *meta.Election
	tr   *Tier
}

// raceGroup drives two members of one group through leadership flips.
type raceGroup struct {
	t       *testing.T
	ctx     context.Context
	bucket  objstore.Bucket
	ptrs    MetaPointers // read side, for the checks
	members []*raceMember
	segs    []*testSegment
	g       *logGen
	nowMs   atomic.Int64
	lastWM  int64
	lastEp  int64
	epochs  []int64      // every term won, in order
	expired atomic.Int64 // objects retention deleted in churn passes

	updMu   sync.Mutex
	updates []pointerUpdate // every stored pointer, from a watch of its key
}

// pointerUpdate is one stored tier pointer: the etcd revision of the write, and the epoch
// the value records.
type pointerUpdate struct{ rev, epoch int64 }

const (
	raceGroupName = "race"
	racePrefix    = "race-cluster/race"
	raceShortTTL  = time.Hour
)

func raceRetention(topic string) time.Duration {
	if topic == "Short" {
		return raceShortTTL
	}
	return 0
}

func newRaceGroup(t *testing.T) *raceGroup {
	ctx := waitCtx(t)
	srv, err := etcdembed.Start(ctx, t.TempDir(), etcdembed.WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	rg := &raceGroup{t: t, ctx: ctx, bucket: fsBucket(t), g: newLogGen()}
	rg.nowMs.Store(rg.g.nowMs)
	for i := range 2 {
		mc, err := meta.New(ctx, meta.Config{Endpoints: srv.Endpoints(), Cluster: "race-cluster"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mc.Close() })
		el, err := mc.NewElection(ctx, raceGroupName, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { el.Close() })
		tr := openFollower(t, Config{Bucket: rg.bucket, Pointers: MetaPointers{Client: mc, Group: raceGroupName}, Prefix: racePrefix,
			BlockBytes: 4 << 10, CompactMinRunBytes: 256 << 10, CompactTargetBytes: 2 << 20, CompactMinRuns: 2,
			CompactInterval: 15 * time.Millisecond, Retention: raceRetention, RetentionInterval: 10 * time.Millisecond,
			Now: func() time.Time { return time.UnixMilli(rg.nowMs.Load()) }})
		rg.members = append(rg.members, &raceMember{name: fmt.Sprintf("member-%d", i), mc: mc, el: el, tr: tr})
		if i == 0 {
			rg.ptrs = MetaPointers{Client: mc, Group: raceGroupName}
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	mc := rg.ptrs.Client
	wch := mc.Etcd().Watch(wctx, mc.Prefix()+"tier/"+raceGroupName, clientv3.WithRev(1))
	go func() {
		for wr := range wch {
			for _, ev := range wr.Events {
				tp, err := meta.DecodeTierPointer(ev.Kv.Value)
				if err != nil {
					t.Errorf("stored tier pointer does not decode: %v", err)
				}
				rg.updMu.Lock()
				rg.updates = append(rg.updates, pointerUpdate{ev.Kv.ModRevision, tp.Epoch})
				rg.updMu.Unlock()
			}
		}
	}()
	return rg
}

// checkUpdatesByLeader asserts that every pointer update seen so far was made by the member
// leading at its revision: a term's epoch is the revision it was won at, so an update at
// revision r must carry the newest epoch below r. A deposed member's update would carry an
// older one.
func (rg *raceGroup) checkUpdatesByLeader(step string) {
	rg.t.Helper()
	rg.updMu.Lock()
	defer rg.updMu.Unlock()
	for _, u := range rg.updates {
		leader := int64(0)
		for _, e := range rg.epochs {
			if e < u.rev {
				leader = e
			}
		}
		if u.epoch != leader {
			rg.t.Fatalf("%s: the pointer update at revision %d carries epoch %d, but epoch %d led then (terms %v)", step, u.rev, u.epoch, leader, rg.epochs)
		}
	}
}

// feed appends n segments to the group's log and hands each to both members, as replicas
// of one log would seal them.
func (rg *raceGroup) feed(n int) {
	queues := []queueKey{{"Long", 0}, {"Long", 1}, {"Short", 0}}
	for i := range n {
		qs := queues
		if i == 0 {
			qs = queues[2:] // a segment of Short alone expires as a whole
		}
		s := rg.g.segment(rg.t, 120, qs, 80)
		rg.segs = append(rg.segs, s)
		for _, m := range rg.members {
			m.tr.Submit(s)
		}
	}
	rg.nowMs.Store(rg.g.nowMs)
}

// elect makes m the leader (the previous leader's key must be gone already) and leads its
// tier, with a copy of the term that never reports its end when blindly is set.
func (rg *raceGroup) elect(m *raceMember, blindly bool) meta.Leadership {
	rg.t.Helper()
	l, err := m.el.Campaign(rg.ctx, m.name)
	if err != nil {
		rg.t.Fatal(err)
	}
	rg.epochs = append(rg.epochs, l.Epoch)
	term := l
	if blindly {
		term = blind(l)
	}
	if _, err := m.tr.Lead(rg.ctx, term); err != nil {
		rg.t.Fatal(err)
	}
	return l
}

// churn runs compaction and retention passes on every member until stop closes; the
// members that do not lead must be refused with ErrFenced.
func (rg *raceGroup) churn(stop <-chan struct{}, wg *sync.WaitGroup) {
	for _, m := range rg.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Errors are expected here: ErrFenced on a member that does not lead, and
				// a pass that loses a race with retention. The checks judge the outcome.
				_, _ = m.tr.Compact(rg.ctx)
				if st, err := m.tr.EnforceRetention(rg.ctx, raceRetention); err == nil {
					rg.expired.Add(int64(st.SegmentsDeleted + st.RunsDeleted + st.CompactedDeleted))
				}
			}
		}()
	}
}

// check asserts the invariants against the published state: the watermark and the epoch
// never went backwards, every object the published manifest names exists, and every
// acknowledged record (offloaded and published) that has not expired is readable through a
// fresh read-only tier.
func (rg *raceGroup) check(step string) {
	t := rg.t
	t.Helper()
	var ptr TierPointer
	for attempt := 0; ; attempt++ {
		p1, err := rg.ptrs.Load(rg.ctx)
		if err != nil {
			t.Fatal(err)
		}
		m, err := LoadManifest(rg.ctx, rg.bucket, p1.Manifest)
		var missing []string
		if err == nil {
			for _, name := range namedObjects(m) {
				if _, aerr := rg.bucket.Attributes(rg.ctx, name); aerr != nil {
					missing = append(missing, name)
				}
			}
		}
		p2, perr := rg.ptrs.Load(rg.ctx)
		if perr != nil {
			t.Fatal(perr)
		}
		if p2.Revision != p1.Revision && attempt < 50 {
			continue // a newer manifest was published meanwhile; objects may have gone legitimately
		}
		if err != nil {
			t.Fatalf("%s: the pointer names manifest %s: %v", step, p1.Manifest, err)
		}
		if len(missing) > 0 {
			t.Fatalf("%s: manifest %s (epoch %d) names objects missing from the bucket: %v", step, p1.Manifest, p1.Epoch, missing)
		}
		ptr = p1
		break
	}
	if ptr.OffloadWatermark < rg.lastWM || ptr.Epoch < rg.lastEp {
		t.Fatalf("%s: pointer went backwards: watermark %d after %d, epoch %d after %d", step, ptr.OffloadWatermark, rg.lastWM, ptr.Epoch, rg.lastEp)
	}
	rg.lastWM, rg.lastEp = ptr.OffloadWatermark, ptr.Epoch
	rg.checkUpdatesByLeader(step)

	// Acknowledged: every record of a segment ending at or below the watermark.
	acked := map[queueKey][][]byte{}
	for _, s := range rg.segs {
		if s.end > ptr.OffloadWatermark {
			break
		}
		for _, rec := range s.recs {
			h, _ := message.ParseRecordHeader(rec)
			k := queueKey{h.Topic, h.QueueID}
			acked[k] = append(acked[k], rec)
		}
	}
	ro, err := Open(rg.ctx, Config{Bucket: rg.bucket, Pointers: rg.ptrs, Prefix: racePrefix, ReadOnly: true})
	if err != nil {
		t.Fatalf("%s: open a read-only tier: %v", step, err)
	}
	defer ro.Close()
	horizon := rg.nowMs.Load() - raceShortTTL.Milliseconds()
	for k, want := range acked {
		got := map[int64][]byte{}
		for _, rec := range readQueue(t, ro, k, 97) {
			h, _ := message.ParseRecordHeader(rec)
			if h.QueueOffset < int64(len(want)) && !bytes.Equal(rec, want[h.QueueOffset]) {
				t.Fatalf("%s: %v offset %d: the tier serves other bytes than were offloaded", step, k, h.QueueOffset)
			}
			got[h.QueueOffset] = rec
		}
		for off, rec := range want {
			h, _ := message.ParseRecordHeader(rec)
			if raceRetention(k.topic) > 0 && h.StoreTimestamp < horizon {
				continue // expired: retention may have deleted it
			}
			if got[int64(off)] == nil {
				t.Fatalf("%s: acknowledged record %v offset %d (watermark %d) is not readable", step, k, off, ptr.OffloadWatermark)
			}
		}
	}
}

// waitOffloaded waits until the published watermark covers every segment fed so far.
func (rg *raceGroup) waitOffloaded(m *raceMember) {
	rg.t.Helper()
	end := rg.segs[len(rg.segs)-1].end
	if err := m.tr.WaitOffloaded(rg.ctx, end); err != nil {
		rg.t.Fatalf("%s: %v", m.name, err)
	}
}

// Two members of one group race offload, compaction and retention while the leadership
// flips between them: by resigning, by a revoked lease (a lost session) the deposed member
// notices, and by a revoked lease it does not notice (it keeps working until it is fenced).
func TestTwoWritersRaceThroughLeadershipFlips(t *testing.T) {
	rg := newRaceGroup(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	rg.churn(stop, &wg)
	defer func() {
		close(stop)
		wg.Wait()
	}()

	flips := []string{"resign", "revoke", "revoke-unnoticed", "resign", "revoke-unnoticed", "revoke", "resign", "revoke-unnoticed"}
	cur := rg.members[0]
	rg.elect(cur, flips[0] == "revoke-unnoticed")
	rg.feed(3)
	rg.waitOffloaded(cur)
	rg.check("first term")
	for i, how := range flips {
		step := fmt.Sprintf("flip %d (%s)", i+1, how)
		// New segments arrive, so uploads and commits are in flight when the leader goes;
		// time passes, so Short's old records expire under retention.
		rg.g.nowMs += (raceShortTTL / 2).Milliseconds()
		rg.feed(2)
		switch how {
		case "resign":
			if err := cur.el.Resign(rg.ctx); err != nil {
				t.Fatal(err)
			}
		default:
			if _, err := cur.mc.Etcd().Revoke(rg.ctx, cur.el.Lease()); err != nil {
				t.Fatal(err)
			}
		}
		next := rg.members[0]
		if next == cur {
			next = rg.members[1]
		}
		blindly := i+1 < len(flips) && flips[i+1] == "revoke-unnoticed"
		rg.elect(next, blindly)
		rg.feed(1)
		rg.waitOffloaded(next)
		rg.check(step)
		// A deposed member that noticed stops at once; one that did not stops at its first
		// fenced publish (it has the segments fed since to commit).
		waitUntil(t, step+": deposed member stops writing", func() bool { return cur.tr.Epoch() == 0 })
		if st := cur.tr.OffloadStall(); how == "revoke-unnoticed" && (st.Cause != StallNotWriter || !errors.Is(st.Err, ErrFenced)) {
			t.Fatalf("%s: the unaware deposed member stopped, but not by a fence: %+v", step, st)
		}
		cur = next
	}
	// The deposed members are all fenced by now or stop at their next publish; the last
	// leader has everything.
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	rg.feed(1)
	rg.waitOffloaded(cur)
	rg.check("final")
	for _, m := range rg.members {
		if m != cur {
			if _, err := m.tr.Compact(rg.ctx); !errors.Is(err, ErrFenced) {
				t.Fatalf("%s (not leading) compacted: %v", m.name, err)
			}
		}
	}
	if ep := rg.lastEp; ep != cur.tr.Epoch() {
		t.Fatalf("pointer epoch %d, last leader's %d", ep, cur.tr.Epoch())
	}
	// The race did what it is for: objects were compacted and expired along the way.
	m := cur.tr.Manifest()
	if len(m.Compacted) == 0 {
		t.Fatal("no compacted object survived the race; compaction never published")
	}
	if rg.expired.Load() == 0 {
		// On a loaded machine every churn pass can lose its race; one more pass by the
		// leader, after the clock moved past Short's TTL, must expire something and keep
		// the invariants.
		st, err := cur.tr.EnforceRetention(rg.ctx, raceRetention)
		if err != nil {
			t.Fatalf("final retention pass: %v", err)
		}
		rg.expired.Add(int64(st.SegmentsDeleted + st.RunsDeleted + st.CompactedDeleted))
		rg.check("after the final retention pass")
	}
	if rg.expired.Load() == 0 {
		t.Fatal("retention never deleted anything")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
