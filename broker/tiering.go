package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// The cold tier, wired into the broker:
//
//   - prepareTier (Start, before the store opens) opens the bucket and reads the group's
//     tier pointer from etcd; an empty commit log starts at the offload watermark, so a
//     broker whose disk was wiped continues the commit log after what the bucket holds.
//   - startTier (Start, before serving) opens the tier, continues every cold queue's
//     offsets after the tier's last visible offset, submits sealed segments (those on disk now and
//     every later seal) for offload and lets the store delete a local segment only once it
//     is offloaded and older than LocalRetention. The tier offloads, compacts and applies
//     retention only while this broker is its group's elected master (election.go).
//   - readCold (pull.go) serves offsets below the local min offset from the bucket.
//   - tierBackpressure (send.go) refuses sends while the bytes not yet offloaded exceed
//     MaxLocalBytes, instead of filling the disk, and says what keeps offload from
//     committing (the bucket, etcd, or not being the elected master).
//   - /tier/status (HTTP) reports the watermark, objects, bytes and offload lag.

// tierSegment adapts a sealed hot-store segment to tier.Segment; b drops records of deleted
// topics (topicdelete.go).
type tierSegment struct {
	st  *store.Store
	seg store.SealedSegment
	b   *Broker
}

func (s tierSegment) Base() int64 { return s.seg.BaseOffset }
func (s tierSegment) End() int64  { return s.seg.EndOffset }

// Records reads the segment from local disk in commit-log order, without the records of
// deleted topics.
func (s tierSegment) Records(ctx context.Context, fn func(rec []byte) error) error {
	it, err := s.st.OpenSegment(s.seg.BaseOffset)
	if err != nil {
		return err
	}
	defer it.Close()
	dropDeleted := s.b != nil && s.b.offloadFilters(s.seg.BaseOffset)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		pos, rec, err := it.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if dropDeleted {
			if keep, err := s.b.keepForOffload(pos, rec); err != nil || !keep {
				if err != nil {
					return err
				}
				continue
			}
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// tierEnabled reports whether the configuration asks for a cold tier.
func (c *Config) tierEnabled() bool { return c.BucketURL != "" || c.Bucket != nil }

// tierPrefix names this broker group in the bucket.
func (b *Broker) tierPrefix() string { return b.cfg.ClusterName + "/" + b.cfg.BrokerName }

// prepareTier opens the bucket and loads the tier pointer; it sets the store's BaseOffset to
// the offload watermark, which only matters for an empty commit log.
func (b *Broker) prepareTier(ctx context.Context) error {
	if !b.cfg.tierEnabled() {
		return nil
	}
	bucket := b.cfg.Bucket
	if bucket == nil {
		var err error
		if bucket, err = objstore.Open(ctx, b.cfg.BucketURL, b.cfg.S3); err != nil {
			return fmt.Errorf("broker: cold tier: %w", err)
		}
	}
	b.tierBucket = objstore.WithMetrics(bucket, b.metrics.reg)
	b.tierPointers = tier.MetaPointers{Client: b.mc, Group: b.cfg.BrokerName}
	ptr, err := b.tierPointers.Load(ctx)
	if err != nil {
		return fmt.Errorf("broker: cold tier: load the tier pointer of %s from etcd: %w", b.cfg.BrokerName, err)
	}
	b.cfg.Store.BaseOffset = ptr.OffloadWatermark
	return nil
}

// startTier opens the tier over the opened store and hooks offload and local retention.
func (b *Broker) startTier(ctx context.Context) error {
	if b.tierBucket == nil {
		return nil
	}
	st := b.store
	tc := b.cfg.Tier
	tc.Bucket = b.tierBucket
	tc.Pointers = b.tierPointers
	tc.Prefix = b.tierPrefix()
	tc.StartOffset = st.MinCommitLogOffset()
	tc.LocalRetention = b.cfg.LocalRetention
	tc.Registerer = b.metrics.reg
	tc.Logger = b.log
	if tc.Retention == nil {
		tc.Retention = b.topicRetention
	}
	t, err := tier.Open(ctx, tc)
	if err != nil {
		return fmt.Errorf("broker: cold tier: %w", err)
	}
	b.tier = t
	if wm, end := t.OffloadWatermark(), st.MaxCommitLogOffset(); end < wm {
		return fmt.Errorf("broker: the local commit log in %s ends at %d, below the cold tier's offload watermark %d: the data directory is older than the bucket; move it aside and restart (the broker then serves everything offloaded from the bucket)",
			b.cfg.Store.Dir, end, wm)
	}
	// Cold queues continue after what the tier holds of their live incarnation (a deleted
	// topic's records are hidden, so a recreated one starts at 0).
	next := map[store.QueueID]int64{}
	for _, s := range t.Manifest().Segments {
		for _, q := range s.Queues {
			k := store.QueueID{Topic: q.Topic, QueueID: q.QueueID}
			if _, seen := next[k]; seen {
				continue
			}
			next[k] = 0
			if _, last, ok := t.QueueRange(q.Topic, q.QueueID); ok {
				next[k] = last + 1
			}
		}
	}
	for k, n := range next {
		if err := st.EnsureQueueOffset(ctx, k.Topic, k.QueueID, n); err != nil {
			return fmt.Errorf("broker: cold tier: %w", err)
		}
	}
	st.OnSeal(func(s store.SealedSegment) { t.Submit(tierSegment{st, s, b}) })
	for _, s := range st.SealedSegments() {
		t.Submit(tierSegment{st, s, b})
	}
	st.SetRetention(func(s store.SealedSegment) bool { return t.CanDeleteLocal(s.EndOffset, s.LastStoreTime) })
	b.log.Info("cold tier open", "prefix", tc.Prefix, "watermark", t.OffloadWatermark(),
		"segments", len(t.Manifest().Segments), "local_retention", b.cfg.LocalRetention)
	return nil
}

// topicRetention is a topic's tier retention from its config (0: keep forever).
func (b *Broker) topicRetention(topic string) time.Duration {
	if b.meta == nil {
		return 0
	}
	if t, ok := b.meta.view.Snapshot().Topics[topic]; ok {
		return time.Duration(t.RetentionMs) * time.Millisecond
	}
	return 0
}

// closeTier stops offload and cold reads; the store is closed after it.
func (b *Broker) closeTier() error {
	if b.tier == nil {
		return nil
	}
	return b.tier.Close()
}

// Tier is the broker's cold tier, nil when no bucket is configured; valid after Start.
func (b *Broker) Tier() *tier.Tier { return b.tier }

// tierBackpressure refuses a send while the local bytes not yet offloaded exceed
// MaxLocalBytes: deleting them is not allowed, so the disk would fill.
func (b *Broker) tierBackpressure(req *remoting.Command) *remoting.Command {
	if b.tier == nil || b.cfg.MaxLocalBytes <= 0 {
		return nil
	}
	pending := b.store.MaxCommitLogOffset() - b.tier.OffloadWatermark()
	if pending <= b.cfg.MaxLocalBytes {
		return nil
	}
	return remoting.NewResponse(req, remoting.RespServiceNotAvailable, fmt.Sprintf(
		"local disk above its high watermark (%d bytes not offloaded, limit %d) and %s",
		pending, b.cfg.MaxLocalBytes, b.offloadStallRemark()))
}

// offloadStallRemark says what keeps offload from committing, as the tier recorded it.
func (b *Broker) offloadStallRemark() string {
	st := b.tier.OffloadStall()
	switch st.Cause {
	case tier.StallBucket:
		return fmt.Sprintf("offload cannot commit: bucket writes failing (%v); writes resume once the bucket answers", st.Err)
	case tier.StallPointer:
		return fmt.Sprintf("offload cannot commit: etcd unreachable (tier pointer update: %v); writes resume once etcd answers", st.Err)
	case tier.StallNotWriter:
		if h := b.mc.Health(); h.Degraded {
			return fmt.Sprintf("offload cannot commit: etcd unreachable (%s), so this broker lost or cannot win the master election of group %s; writes resume once etcd answers",
				strings.Join(h.Reasons, "; "), b.cfg.BrokerName)
		}
		master := "none elected"
		if b.meta != nil {
			if m := b.meta.view.Snapshot().Masters[b.cfg.BrokerName]; m != "" {
				master = m
			}
		}
		return fmt.Sprintf("offload cannot commit: this broker (%s) is not the elected master of group %s (master: %s), and only the master offloads; send to the master",
			b.memberName(), b.cfg.BrokerName, master)
	}
	return "offload has not caught up yet; writes resume once it does"
}

// readCold serves a pull from the tier when the store no longer holds the offset (below
// its min offset, or the queue gone from local disk). The tier's block reader applies the
// same filter as the hot path (the tag hash code first, then the record check: exact tag or
// SQL92), so unmatched records never leave it. The records are not copied: the answer's
// body parts are the tier's decoded blocks, and its entries the ones the tier read from the
// headers it checked. ok is false when the store's answer stands (no tier, or the tier
// holds nothing at or after offset).
func (b *Broker) readCold(ctx context.Context, topic string, queueID int32, offset int64, maxMsgs int, f *filter.Filter, hot store.ReadResult, noWait bool) (pullRead, bool, error) {
	if b.tier == nil {
		return pullRead{ReadResult: hot}, false, nil
	}
	first, last, ok := b.tier.QueueRange(topic, queueID)
	if !ok {
		return pullRead{ReadResult: hot}, false, nil
	}
	hot.MinOffset = min(hot.MinOffset, first)
	if hot.Status == store.ReadNoMessageInQueue {
		hot.MinOffset = first
		hot.MaxOffset = max(hot.MaxOffset, last+1)
	}
	if (hot.Status != store.ReadOffsetTooSmall && hot.Status != store.ReadNoMessageInQueue) || offset > last {
		return pullRead{ReadResult: hot}, false, nil
	}
	if noWait {
		return pullRead{}, true, store.ErrWouldBlock // a cold read waits for the bucket
	}
	// Below the tier's first offset nothing is served, not even what an object may still
	// hold there (a deleted topic's records, tier/tombstone.go).
	offset = max(offset, first)
	req := tier.ReadRequest{Topic: topic, QueueID: queueID, Offset: offset, MaxCount: maxMsgs, MaxBytes: b.cfg.MaxPullBytes}
	if f.TagCodes() != nil {
		req.TagFilter = f.MatchTagCode
	}
	if !f.MatchesAll() {
		req.Match = f.MatchRecord
	}
	cr, err := b.tier.Read(ctx, req)
	if errors.Is(err, tier.ErrNotInTier) {
		return pullRead{ReadResult: hot}, false, nil
	}
	if err != nil {
		return pullRead{}, true, fmt.Errorf("cold read: %w", err)
	}
	res := pullRead{ReadResult: store.ReadResult{Status: store.ReadNoMatch, NextOffset: cr.NextOffset, MinOffset: hot.MinOffset, MaxOffset: hot.MaxOffset}}
	if len(cr.Records) == 0 {
		return res, true, nil
	}
	res.Status = store.ReadFound
	res.Entries = make([]store.ReadEntry, len(cr.Entries))
	for i, e := range cr.Entries {
		// TagCode stays 0: nothing downstream of a pull reads it, and the tier parsed the
		// tags only when a filter needed them.
		res.Entries[i] = store.ReadEntry{QueueOffset: e.QueueOffset, CommitLogOffset: e.CommitLogOffset, Size: e.TotalSize, StoreTimestamp: e.StoreTimestamp}
	}
	res.parts = make([][]byte, 0, 4)
	for _, rec := range cr.Records {
		res.parts = appendAdjacent(res.parts, rec)
	}
	res.release = cr.Release
	return res, true, nil
}

// appendAdjacent appends b to parts, extending the last part instead when b starts where it
// ends in the same array, so the records of one block make one part.
func appendAdjacent(parts [][]byte, b []byte) [][]byte {
	if n := len(parts); n > 0 && len(b) > 0 {
		last := parts[n-1]
		if l := len(last); cap(last)-l >= len(b) && &last[:l+1][l] == &b[0] {
			parts[n-1] = last[:l+len(b)]
			return parts
		}
	}
	return append(parts, b)
}

// TierStatus is the JSON of GET /tier/status and `strata tier status`.
type TierStatus struct {
	Enabled bool   `json:"enabled"`
	Cluster string `json:"cluster"`
	Group   string `json:"group"`
	Prefix  string `json:"prefix,omitempty"`
	// OffloadWatermark: every commit-log byte below it is in the bucket.
	OffloadWatermark int64  `json:"offload_watermark"`
	Manifest         string `json:"manifest,omitempty"`
	ManifestSeq      int64  `json:"manifest_seq"`
	// PointerEpoch is the election epoch of the master that wrote the tier pointer.
	PointerEpoch int64 `json:"pointer_epoch"`
	// WriterEpoch is the epoch this broker writes the tier in; 0 when it is not the
	// group's elected master (it then offloads nothing).
	WriterEpoch int64 `json:"writer_epoch"`
	// Segments, Objects and Bytes count what the manifest references (segment objects plus
	// queue runs with objects of their own; Bytes counts segment objects).
	Segments int   `json:"segments"`
	Objects  int   `json:"objects"`
	Bytes    int64 `json:"bytes"`
	// LocalMinOffset and LocalMaxOffset bound the commit log on local disk.
	LocalMinOffset int64 `json:"local_min_offset"`
	LocalMaxOffset int64 `json:"local_max_offset"`
	// OffloadLagBytes is LocalMaxOffset - OffloadWatermark: commit-log bytes not yet in the
	// bucket (the active segment included).
	OffloadLagBytes int64 `json:"offload_lag_bytes"`
	SealedLocal     int   `json:"sealed_local_segments"`
	Puts            int64 `json:"bucket_puts"`
	Gets            int64 `json:"bucket_gets"`
}

// TierStatus reports the cold tier's state; Enabled is false without a bucket.
func (b *Broker) TierStatus() TierStatus {
	st := TierStatus{Cluster: b.cfg.ClusterName, Group: b.cfg.BrokerName}
	if b.store != nil {
		st.LocalMinOffset, st.LocalMaxOffset = b.store.MinCommitLogOffset(), b.store.MaxCommitLogOffset()
		st.SealedLocal = len(b.store.SealedSegments())
	}
	if b.tier == nil {
		return st
	}
	st.Enabled, st.Prefix = true, b.tierPrefix()
	m, ptr := b.tier.Manifest(), b.tier.Pointer()
	st.OffloadWatermark, st.ManifestSeq, st.Manifest = ptr.OffloadWatermark, m.Seq, ptr.Manifest
	st.PointerEpoch, st.WriterEpoch = ptr.Epoch, b.tier.Epoch()
	st.Segments = len(m.Segments)
	for _, s := range m.Segments {
		st.Objects++
		st.Bytes += s.Size
		for _, q := range s.Queues {
			if q.Object != "" && !q.Dropped {
				st.Objects++
			}
		}
	}
	st.OffloadLagBytes = max(0, st.LocalMaxOffset-st.OffloadWatermark)
	st.Puts, st.Gets = b.tier.BucketRequests()
	return st
}

func (b *Broker) serveTierStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(b.TierStatus())
}

// queueMinOffset is a queue's min offset across both tiers.
func (b *Broker) queueMinOffset(topic string, queueID int32) int64 {
	lo := b.store.MinOffset(topic, queueID)
	if b.tier != nil {
		if first, _, ok := b.tier.QueueRange(topic, queueID); ok {
			lo = min(lo, first)
		}
	}
	return lo
}
