package tier

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Object names (FORMAT.md, "Object names").
//
// Every object a writer puts carries the writer's epoch (its election term, meta.Leadership)
// as 16 hex digits before the extension, so two writers of one group — a deposed master that
// has not noticed yet and its successor — never overwrite each other's objects, even when
// they write the same segment. Within one epoch names stay deterministic, so a retried
// upload of the same bytes is harmless. Names written before epochs (no epoch part) stay
// readable: the manifest names every object explicitly, and they parse as epoch 0.

// epochDigits is the width of the epoch in object names.
const epochDigits = 16

// SegmentObjectName is the name of the object the writer of epoch writes for the commit-log
// segment that starts at base: "<prefix>/segments/<20-digit base>-<16-hex epoch>.seg".
func SegmentObjectName(prefix string, base, epoch int64) string {
	return fmt.Sprintf("%s/segments/%020d-%016x.seg", prefix, base, epoch)
}

// CompanionObjectName names the own object of the i-th queue run (in index order) of the
// segment at base, written at epoch: "<prefix>/segments/<20-digit base>-<16-hex epoch>.q<i>.seg".
func CompanionObjectName(prefix string, base, epoch int64, i int) string {
	return fmt.Sprintf("%s/segments/%020d-%016x.q%d.seg", prefix, base, epoch, i)
}

// CompactedObjectName is the name of the compacted object holding queue offsets [first,
// last] of topic/queue, written at epoch: "<prefix>/compacted/<hex topic>/<queue>/<20-digit
// first>-<20-digit last>-<16-hex epoch>.seg".
func CompactedObjectName(prefix, topic string, queueID int32, first, last, epoch int64) string {
	return fmt.Sprintf("%s/compacted/%s/%d/%020d-%020d-%016x.seg", prefix, hex.EncodeToString([]byte(topic)), queueID, first, last, epoch)
}

// ManifestObjectName is the name of manifest version seq written at epoch:
// "<prefix>/manifest/<20-digit seq>-<16-hex epoch>.json".
func ManifestObjectName(prefix string, seq, epoch int64) string {
	return fmt.Sprintf("%s/manifest/%020d-%016x.json", prefix, seq, epoch)
}

// TombstoneObjectName is the name of the object that keeps a tombstone apart from the
// manifest, so a rebuilt manifest keeps it: "<prefix>/tombstones/<20-digit position>-<hex
// topic>-<16-hex epoch>.json". Tombstone objects are read by content, never parsed by name.
func TombstoneObjectName(prefix string, ts Tombstone, epoch int64) string {
	return fmt.Sprintf("%s/tombstones/%020d-%s-%016x.json", prefix, ts.Position, hex.EncodeToString([]byte(ts.Topic)), epoch)
}

// objectStem returns an object name's last path element without its extension and, for a
// companion object, without its ".q<i>" part.
func objectStem(name string) string {
	stem := name[strings.LastIndexByte(name, '/')+1:]
	if i := strings.IndexByte(stem, '.'); i >= 0 {
		stem = stem[:i]
	}
	return stem
}

// ObjectEpoch returns the epoch of the writer that named an object (SegmentObjectName and
// its siblings), or 0 for a name written before epochs, or one this package did not make.
func ObjectEpoch(name string) int64 {
	stem := objectStem(name)
	i := strings.LastIndexByte(stem, '-')
	if i < 0 {
		return 0
	}
	e, _ := parseEpoch(stem[i+1:])
	return e
}

// parseEpoch parses the epoch part of a name: exactly epochDigits lower-case hex digits.
func parseEpoch(s string) (int64, bool) {
	if len(s) != epochDigits || strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }) >= 0 {
		return 0, false
	}
	e, err := strconv.ParseUint(s, 16, 63)
	if err != nil {
		return 0, false
	}
	return int64(e), true
}

// segmentName is a parsed name under "<prefix>/segments/".
type segmentName struct {
	base      int64
	epoch     int64
	companion bool
}

// parseSegmentName parses the last element of a segment or companion object's name, with or
// without an epoch; ok is false for anything else.
func parseSegmentName(name string) (segmentName, bool) {
	last := name[strings.LastIndexByte(name, '/')+1:]
	if !strings.HasSuffix(last, ".seg") {
		return segmentName{}, false
	}
	last = strings.TrimSuffix(last, ".seg")
	var sn segmentName
	if i := strings.Index(last, ".q"); i >= 0 {
		if _, err := strconv.ParseUint(last[i+2:], 10, 31); err != nil {
			return segmentName{}, false
		}
		sn.companion = true
		last = last[:i]
	}
	digits := last
	if i := strings.IndexByte(last, '-'); i >= 0 {
		digits = last[:i]
		e, ok := parseEpoch(last[i+1:])
		if !ok {
			return segmentName{}, false
		}
		sn.epoch = e
	}
	if len(digits) != 20 {
		return segmentName{}, false
	}
	b, err := strconv.ParseUint(digits, 10, 63)
	if err != nil {
		return segmentName{}, false
	}
	sn.base = int64(b)
	return sn, true
}

// manifestSeq is the sequence number in a manifest object's name (0 if it has none).
func manifestSeq(name string) int64 {
	stem := objectStem(name)
	if i := strings.IndexByte(stem, '-'); i >= 0 {
		stem = stem[:i]
	}
	seq, err := strconv.ParseInt(stem, 10, 64)
	if err != nil || seq < 0 {
		return 0
	}
	return seq
}
