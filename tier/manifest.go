package tier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/stratamq/strata/tier/objstore"
)

// ManifestVersion is the "version" field of manifest objects this build writes and reads.
// A manifest that lists compacted objects is written as ManifestVersionCompacted, so a build
// that does not know compaction refuses it instead of missing the compacted data.
const ManifestVersion = 1

// ManifestVersionCompacted is the "version" of a manifest with a non-empty "compacted" list
// (FORMAT.md); this build reads both.
const ManifestVersionCompacted = 2

// maxManifestBytes bounds a manifest read from the bucket.
const maxManifestBytes = 1 << 30

// Manifest lists a broker group's segment objects with the per-queue ranges they hold. Each
// version is a new immutable object (FORMAT.md).
type Manifest struct {
	Version   int               `json:"version"`
	Seq       int64             `json:"seq"`
	Watermark int64             `json:"watermark"`
	Segments  []ManifestSegment `json:"segments"`
	// Tombstones hide the records of deleted topics (tombstone.go); carried forward by
	// every later version.
	Tombstones []Tombstone `json:"tombstones,omitempty"`
	// Compacted lists the per-queue compacted objects (compact.go), each described like a
	// segment with exactly one queue run; Base and End span the segments it merged. Queue
	// runs merged into one are marked with its name in their segment (ManifestQueue.Compacted).
	Compacted []ManifestSegment `json:"compacted,omitempty"`
}

// ManifestSegment is one offloaded commit-log segment.
type ManifestSegment struct {
	Base        int64           `json:"base"`
	End         int64           `json:"end"`
	Object      string          `json:"object"`
	Size        int64           `json:"size"`
	IndexOffset int64           `json:"index_offset"`
	IndexLength int64           `json:"index_length"`
	IndexCRC    uint32          `json:"index_crc"`
	KeysOffset  int64           `json:"keys_offset"`
	KeysLength  int64           `json:"keys_length"`
	KeysCRC     uint32          `json:"keys_crc"`
	Queues      []ManifestQueue `json:"queues"`
	// ObjectDeleted marks a segment whose object compaction deleted because every run in
	// it was compacted (or dropped, or hidden by a tombstone); the entry stays so the
	// queues' ranges remain known.
	ObjectDeleted bool `json:"object_deleted,omitempty"`
}

// ManifestQueue is one queue's range inside a segment object.
type ManifestQueue struct {
	Topic       string `json:"topic"`
	QueueID     int32  `json:"queue"`
	FirstOffset int64  `json:"first"`
	LastOffset  int64  `json:"last"`
	FirstTime   int64  `json:"first_time"`
	LastTime    int64  `json:"last_time"`
	Count       int64  `json:"count"`
	// RawBytes is the run's uncompressed size (0 in manifests written before compaction).
	RawBytes int64 `json:"raw_bytes,omitempty"`
	// Object is the run's own object, if it has one.
	Object string `json:"object,omitempty"`
	// Dropped marks a run whose own object tier retention deleted while the segment
	// object stays.
	Dropped bool `json:"dropped,omitempty"`
	// Compacted names the compacted object that now holds this run's records; readers
	// use that object instead of this run.
	Compacted string `json:"compacted,omitempty"`
}

func manifestSegment(obj string, size int64, f Footer, idx *SegmentIndex) ManifestSegment {
	s := ManifestSegment{Base: idx.Base, End: idx.End, Object: obj, Size: size,
		IndexOffset: f.IndexOffset, IndexLength: f.IndexLength, IndexCRC: f.IndexCRC,
		KeysOffset: f.KeysOffset, KeysLength: f.KeysLength, KeysCRC: f.KeysCRC}
	for _, q := range idx.Queues {
		s.Queues = append(s.Queues, ManifestQueue{Topic: q.Topic, QueueID: q.QueueID,
			FirstOffset: q.FirstOffset, LastOffset: q.LastOffset, FirstTime: q.FirstTime,
			LastTime: q.LastTime, Count: q.Count, RawBytes: q.RawBytes, Object: q.Object})
	}
	return s
}

// EncodeManifest returns the manifest's object bytes.
func EncodeManifest(m *Manifest) ([]byte, error) {
	if len(m.Compacted) > 0 {
		m.Version = ManifestVersionCompacted
	} else {
		m.Version = ManifestVersion
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest %d: %w", m.Seq, err)
	}
	return b, nil
}

// DecodeManifest decodes and checks a manifest object.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	if m.Version != ManifestVersion && m.Version != ManifestVersionCompacted {
		return nil, fmt.Errorf("%w: manifest version %d; this build reads versions %d and %d", ErrCorrupt, m.Version, ManifestVersion, ManifestVersionCompacted)
	}
	for i, c := range m.Compacted {
		if c.End < c.Base || c.Object == "" || len(c.Queues) != 1 {
			return nil, fmt.Errorf("%w: manifest compacted object %d (%q) needs a range and exactly one queue", ErrCorrupt, i, c.Object)
		}
	}
	for i, s := range m.Segments {
		if s.End < s.Base || s.Object == "" || (i > 0 && s.Base < m.Segments[i-1].End) {
			return nil, fmt.Errorf("%w: manifest segment %d [%d,%d) out of order", ErrCorrupt, i, s.Base, s.End)
		}
	}
	return &m, nil
}

func readAll(ctx context.Context, b objstore.Bucket, name string, limit int64) ([]byte, error) {
	rc, err := b.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: larger than %d bytes", name, limit)
	}
	return data, nil
}

func readRange(ctx context.Context, b objstore.Bucket, name string, off, n int64) ([]byte, error) {
	rc, err := b.GetRange(ctx, name, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("read %s [%d+%d]: %w", name, off, n, err)
	}
	return buf, nil
}

// admits reports whether RebuildManifest may use an object of epoch for a pointer of
// maxEpoch: objects of a newer term than the pointer's were never committed (0: no limit,
// for a pointer written before epochs or none at all).
func admits(maxEpoch, epoch int64) bool { return maxEpoch == 0 || epoch <= maxEpoch }

// rebuildCompacted reads the compacted objects under prefix of epoch at most maxEpoch and
// keeps, per queue, a set that does not overlap (a pass that crashed before publishing, or a
// deposed writer, may have left a second cover of the same offsets; either holds the same
// records): the cover starting lowest, then the longest, then the newest epoch wins. The
// result is ordered by base.
func rebuildCompacted(ctx context.Context, b objstore.Bucket, prefix string, maxEpoch int64) ([]ManifestSegment, error) {
	var names []string
	err := b.List(ctx, prefix+"/compacted/", func(name string) error {
		if strings.HasSuffix(name, ".seg") && admits(maxEpoch, ObjectEpoch(name)) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list compacted objects of %s: %w", prefix, err)
	}
	var all []ManifestSegment
	for _, name := range names {
		f, idx, size, err := ReadSegmentIndex(ctx, b, name)
		if err != nil {
			return nil, err
		}
		if len(idx.Queues) != 1 {
			return nil, fmt.Errorf("%w: compacted object %s holds %d queues, want 1", ErrCorrupt, name, len(idx.Queues))
		}
		all = append(all, manifestSegment(name, size, f, idx))
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].Queues[0], all[j].Queues[0]
		if a.Topic != b.Topic {
			return a.Topic < b.Topic
		}
		if a.QueueID != b.QueueID {
			return a.QueueID < b.QueueID
		}
		if a.FirstOffset != b.FirstOffset {
			return a.FirstOffset < b.FirstOffset
		}
		if a.LastOffset != b.LastOffset {
			return a.LastOffset > b.LastOffset
		}
		return ObjectEpoch(all[i].Object) > ObjectEpoch(all[j].Object)
	})
	var out []ManifestSegment
	for _, c := range all {
		if n := len(out); n > 0 {
			p, q := out[n-1].Queues[0], c.Queues[0]
			if p.Topic == q.Topic && p.QueueID == q.QueueID && q.FirstOffset <= p.LastOffset {
				continue
			}
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Base < out[j].Base })
	return out, nil
}

// LoadManifest reads the manifest object name from the bucket.
func LoadManifest(ctx context.Context, b objstore.Bucket, name string) (*Manifest, error) {
	data, err := readAll(ctx, b, name, maxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("load manifest: %w", err)
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return nil, fmt.Errorf("load manifest %s: %w", name, err)
	}
	return m, nil
}

// ReadSegmentIndex reads a segment object's footer and index section with ranged reads.
func ReadSegmentIndex(ctx context.Context, b objstore.Bucket, name string) (Footer, *SegmentIndex, int64, error) {
	attrs, err := b.Attributes(ctx, name)
	if err != nil {
		return Footer{}, nil, 0, fmt.Errorf("read segment index: %w", err)
	}
	if attrs.Size < FooterBytes {
		return Footer{}, nil, 0, fmt.Errorf("read segment index %s: %w: %d bytes", name, ErrCorrupt, attrs.Size)
	}
	fb, err := readRange(ctx, b, name, attrs.Size-FooterBytes, FooterBytes)
	if err != nil {
		return Footer{}, nil, 0, fmt.Errorf("read segment index: %w", err)
	}
	f, err := DecodeFooter(fb, attrs.Size)
	if err != nil {
		return f, nil, 0, fmt.Errorf("read segment index %s: %w", name, err)
	}
	ib, err := readRange(ctx, b, name, f.IndexOffset, f.IndexLength)
	if err != nil {
		return f, nil, 0, fmt.Errorf("read segment index: %w", err)
	}
	if err := checkSection(ib, f.IndexCRC, "index"); err != nil {
		return f, nil, 0, fmt.Errorf("read segment index %s: %w", name, err)
	}
	idx, err := DecodeIndex(ib)
	if err != nil {
		return f, nil, 0, fmt.Errorf("read segment index %s: %w", name, err)
	}
	return f, idx, attrs.Size, nil
}

// RebuildManifest reconstructs a manifest from the objects under prefix alone, for a lost or
// corrupt manifest; ptr is the group's tier pointer (the zero pointer if unknown). The rule,
// for a bucket where several terms may have written objects for the same segment:
//
//   - only objects of an epoch up to ptr.Epoch count (a newer term has committed nothing);
//     a pointer without an epoch (written before fencing, or unknown) admits every epoch;
//   - per segment base, the object of the newest admitted epoch is taken; where two taken
//     segments overlap (writers whose logs differed), the newer epoch wins: a later writer
//     only ever published what its own log held;
//   - segments ending at or below ptr's watermark are kept, gaps left by tier retention
//     included. Above it, a pointer with an epoch keeps nothing (nothing there was committed;
//     the writer offloads it again), while one without keeps segments as long as they are
//     contiguous, as builds before fencing did;
//   - compacted objects are chosen likewise (rebuildCompacted) and mark the runs they cover.
//
// Dropped companion runs are marked as such. An object a retention or compaction pass
// already deleted can resurface here only as an older leftover that the orphan sweep has not
// removed yet; the next retention pass drops it again.
func RebuildManifest(ctx context.Context, b objstore.Bucket, prefix string, ptr TierPointer) (*Manifest, error) {
	maxEpoch := ptr.Epoch
	best := map[int64]string{} // base -> segment object of the newest admitted epoch
	companions := map[string]bool{}
	err := b.List(ctx, prefix+"/segments/", func(name string) error {
		sn, ok := parseSegmentName(name)
		if !ok || !admits(maxEpoch, sn.epoch) {
			return nil
		}
		if sn.companion {
			companions[name] = true
		} else if cur, ok := best[sn.base]; !ok || ObjectEpoch(cur) < sn.epoch {
			best[sn.base] = name
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rebuild manifest: list %s: %w", prefix, err)
	}
	m := &Manifest{Version: ManifestVersion}
	if m.Tombstones, err = loadTombstoneObjects(ctx, b, prefix); err != nil {
		return nil, fmt.Errorf("rebuild manifest: %w", err)
	}
	var segs []ManifestSegment
	for _, name := range best {
		f, idx, size, err := ReadSegmentIndex(ctx, b, name)
		if err != nil {
			return nil, fmt.Errorf("rebuild manifest: %w", err)
		}
		s := manifestSegment(name, size, f, idx)
		for i := range s.Queues {
			if o := s.Queues[i].Object; o != "" && !companions[o] {
				s.Queues[i].Dropped = true
			}
		}
		segs = append(segs, s)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Base < segs[j].Base })
	for _, s := range segs {
		keep := true
		for n := len(m.Segments); keep && n > 0 && s.Base < m.Segments[n-1].End; n = len(m.Segments) {
			if ObjectEpoch(m.Segments[n-1].Object) >= ObjectEpoch(s.Object) {
				keep = false // overlaps a newer (or equal) writer's segment
			} else {
				m.Segments = m.Segments[:n-1]
			}
		}
		if keep {
			m.Segments = append(m.Segments, s)
		}
	}
	watermarkHint := ptr.OffloadWatermark
	comps, err := rebuildCompacted(ctx, b, prefix, maxEpoch)
	if err != nil {
		return nil, fmt.Errorf("rebuild manifest: %w", err)
	}
	if maxEpoch == 0 {
		for _, c := range comps {
			// Compaction only merges committed segments: a compacted object proves its
			// range was below the watermark, and segment objects it replaced may be gone.
			watermarkHint = max(watermarkHint, c.End)
		}
	}
	m.Watermark = watermarkHint
	for i, s := range m.Segments {
		if s.End <= watermarkHint {
			continue
		}
		if maxEpoch > 0 || (s.Base != m.Watermark && (i > 0 || watermarkHint != 0)) {
			// Objects past the watermark (or past a gap) were uploaded but never
			// committed; they are dropped and will be uploaded again.
			m.Segments = m.Segments[:i]
			break
		}
		m.Watermark = s.End
	}
	byQueue := map[queueKey][]*ManifestSegment{}
	for i := range comps {
		q := comps[i].Queues[0]
		byQueue[queueKey{q.Topic, q.QueueID}] = append(byQueue[queueKey{q.Topic, q.QueueID}], &comps[i])
	}
	for si := range m.Segments {
		for qi := range m.Segments[si].Queues {
			q := &m.Segments[si].Queues[qi]
			if q.Object != "" {
				continue
			}
			for _, c := range byQueue[queueKey{q.Topic, q.QueueID}] {
				if c.Queues[0].FirstOffset <= q.FirstOffset && q.LastOffset <= c.Queues[0].LastOffset {
					q.Compacted = c.Object
					break
				}
			}
		}
	}
	m.Compacted = comps
	return m, nil
}
