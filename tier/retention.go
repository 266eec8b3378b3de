package tier

import (
	"context"
	"fmt"
	"time"
)

// RetentionStats reports what one retention pass removed.
type RetentionStats struct {
	SegmentsDeleted int // segment objects dropped from the manifest and deleted
	RunsDeleted     int // own objects of single queue runs deleted
	// CompactedDeleted counts compacted objects (compact.go) deleted.
	CompactedDeleted int
}

// EnforceRetention deletes the objects whose records have all expired: a segment object once
// every queue in it is past its topic's retention (retention(topic) 0 keeps forever), and a
// run's own object once its queue is. The manifest and the pointer move first, in one fenced
// publish; the objects are deleted afterwards, so a crash in between leaves only
// unreferenced objects (for the orphan sweep, compact.go). Only the group's elected writer
// applies retention: a tier that does not lead gets ErrFenced.
func (t *Tier) EnforceRetention(ctx context.Context, retention func(topic string) time.Duration) (RetentionStats, error) {
	var st RetentionStats
	tm, err := t.writer("retention")
	if err != nil {
		return st, err
	}
	ctx, cancel := withTerm(ctx, tm)
	defer cancel()
	now := t.cfg.Now()
	t.commitMu.Lock()
	defer t.commitMu.Unlock()
	cur := t.cat.Load()
	expired := func(s *ManifestSegment, q *ManifestQueue) bool {
		if _, visible := cur.m.visibleSpan(s, q); !visible {
			return true // a deleted topic's run: nothing will read it again
		}
		r := retention(q.Topic)
		return r > 0 && now.Sub(time.UnixMilli(q.LastTime)) > r
	}
	next := &Manifest{Version: ManifestVersion, Seq: cur.m.Seq + 1, Watermark: cur.m.Watermark}
	var doomed []string
	changed := false
	for _, c := range cur.m.Compacted {
		if expired(&c, &c.Queues[0]) {
			doomed = append(doomed, c.Object)
			st.CompactedDeleted++
			continue
		}
		next.Compacted = append(next.Compacted, c)
	}
	for _, s := range cur.m.Segments {
		all := true
		for i := range s.Queues {
			if !expired(&s, &s.Queues[i]) {
				all = false
			}
		}
		if all {
			changed = true
			if !s.ObjectDeleted {
				doomed = append(doomed, s.Object)
			}
			for _, q := range s.Queues {
				if q.Object != "" && !q.Dropped {
					doomed = append(doomed, q.Object)
				}
			}
			st.SegmentsDeleted++
			continue
		}
		s.Queues = append([]ManifestQueue(nil), s.Queues...)
		for i := range s.Queues {
			q := &s.Queues[i]
			if q.Object != "" && !q.Dropped && expired(&s, q) {
				q.Dropped = true
				doomed = append(doomed, q.Object)
				st.RunsDeleted++
			}
		}
		next.Segments = append(next.Segments, s)
	}
	if len(doomed) == 0 && !changed {
		return st, nil
	}
	if err := t.publish(ctx, tm, cur, next); err != nil {
		return RetentionStats{}, fmt.Errorf("tier retention on %s: %w", t.cfg.Prefix, err)
	}
	for _, name := range doomed {
		if err := t.bucket.Delete(ctx, name); err != nil {
			return st, fmt.Errorf("tier retention on %s: delete %s (already dropped from the manifest): %w", t.cfg.Prefix, name, err)
		}
		t.metrics.retentionDeleted.Inc()
	}
	t.cfg.Logger.Info("tier retention deleted expired objects", "prefix", t.cfg.Prefix,
		"segments", st.SegmentsDeleted, "runs", st.RunsDeleted)
	return st, nil
}

// every runs job each interval until the term ends; a failure is logged and retried on the
// next tick. Retention and compaction are both such background passes.
func (t *Tier) every(tm *term, interval time.Duration, name string, job func(context.Context) error) {
	defer tm.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-tm.ctx.Done():
			return
		case <-tick.C:
			if err := job(tm.ctx); err != nil && tm.ctx.Err() == nil {
				t.cfg.Logger.Warn("tier "+name+" failed; will retry", "err", err)
			}
		}
	}
}
