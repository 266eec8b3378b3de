package timer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The byte formats of the timer (FORMAT.md). Integers are big-endian; CRC32C is Castagnoli.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ErrCorrupt reports timer index or checkpoint bytes that fail their checks.
var ErrCorrupt = errors.New("timer data corrupt")

// entry is one pending timer in the index: when it is due and where its parked record is.
// Entries order by (due, qoff); qoff, the record's offset in ParkTopic's queue, is unique.
type entry struct {
	due  int64 // ms since the epoch
	pos  int64 // commit-log position of the parked record
	qoff int64 // queue offset in ParkTopic/0
	size int32 // record size
}

func (e entry) less(o entry) bool { return e.due < o.due || e.due == o.due && e.qoff < o.qoff }

// entryBytes is the size of an encoded entry: due, pos, qoff, size, CRC32C of the first 28.
const entryBytes = 32

func appendEntry(dst []byte, e entry) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.due))
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.pos))
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.qoff))
	dst = binary.BigEndian.AppendUint32(dst, uint32(e.size))
	return binary.BigEndian.AppendUint32(dst, crc32c(dst[start:]))
}

func decodeEntry(b []byte) (entry, error) {
	if len(b) < entryBytes {
		return entry{}, fmt.Errorf("%w: index entry of %d bytes, want %d", ErrCorrupt, len(b), entryBytes)
	}
	if crc32c(b[:28]) != binary.BigEndian.Uint32(b[28:32]) {
		return entry{}, fmt.Errorf("%w: index entry fails its checksum", ErrCorrupt)
	}
	e := entry{
		due:  int64(binary.BigEndian.Uint64(b)),
		pos:  int64(binary.BigEndian.Uint64(b[8:])),
		qoff: int64(binary.BigEndian.Uint64(b[16:])),
		size: int32(binary.BigEndian.Uint32(b[24:])),
	}
	if e.pos < 0 || e.qoff < 0 || e.size < 0 {
		return entry{}, fmt.Errorf("%w: index entry has a negative position, offset or size", ErrCorrupt)
	}
	return e, nil
}

// Run file header: magic "STMR", version, 3 reserved, seq, count, min/max due, min/max
// qoff, CRC32C of the preceding 56 bytes, 4 reserved.
const (
	runVersion     = 1
	runHeaderBytes = 64
)

var runMagic = [4]byte{'S', 'T', 'M', 'R'}

// runHeader describes a run: a file of entries sorted by (due, qoff).
type runHeader struct {
	seq              uint64
	count            int64
	minDue, maxDue   int64
	minQoff, maxQoff int64
}

func encodeRunHeader(h runHeader) []byte {
	b := make([]byte, 0, runHeaderBytes)
	b = append(b, runMagic[:]...)
	b = append(b, runVersion, 0, 0, 0)
	for _, v := range []uint64{h.seq, uint64(h.count), uint64(h.minDue), uint64(h.maxDue), uint64(h.minQoff), uint64(h.maxQoff)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	b = binary.BigEndian.AppendUint32(b, crc32c(b))
	return append(b, 0, 0, 0, 0)
}

func decodeRunHeader(b []byte) (runHeader, error) {
	var h runHeader
	if len(b) < runHeaderBytes {
		return h, fmt.Errorf("%w: run header of %d bytes, want %d", ErrCorrupt, len(b), runHeaderBytes)
	}
	if [4]byte(b[:4]) != runMagic {
		return h, fmt.Errorf("%w: run file has a bad magic", ErrCorrupt)
	}
	if b[4] != runVersion {
		return h, fmt.Errorf("%w: run file version %d, this broker reads %d", ErrCorrupt, b[4], runVersion)
	}
	if crc32c(b[:56]) != binary.BigEndian.Uint32(b[56:60]) {
		return h, fmt.Errorf("%w: run header fails its checksum", ErrCorrupt)
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[8+8*i:]) }
	h = runHeader{seq: u(0), count: int64(u(1)), minDue: int64(u(2)), maxDue: int64(u(3)), minQoff: int64(u(4)), maxQoff: int64(u(5))}
	if h.count < 0 || h.count > 1<<40 || h.minQoff < 0 || h.minQoff > h.maxQoff || h.minDue > h.maxDue {
		return h, fmt.Errorf("%w: run header has impossible bounds", ErrCorrupt)
	}
	return h, nil
}

// Manifest: magic "STMF", version, 3 reserved, indexedBelow, nextSeq, run count; per run
// its seq and entry count; CRC32C of everything before it.
const manifestVersion = 1

var manifestMagic = [4]byte{'S', 'T', 'M', 'F'}

// manifest is the commit point of the index: the runs that hold every entry of a parked
// record below indexedBelow.
type manifest struct {
	indexedBelow int64
	nextSeq      uint64
	runs         []manifestRun
}

type manifestRun struct {
	seq   uint64
	count int64
}

// maxManifestRuns bounds what a manifest may list (compaction keeps far fewer).
const maxManifestRuns = 1 << 16

func encodeManifest(m manifest) []byte {
	b := make([]byte, 0, 28+16*len(m.runs)+4)
	b = append(b, manifestMagic[:]...)
	b = append(b, manifestVersion, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(m.indexedBelow))
	b = binary.BigEndian.AppendUint64(b, m.nextSeq)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.runs)))
	for _, r := range m.runs {
		b = binary.BigEndian.AppendUint64(b, r.seq)
		b = binary.BigEndian.AppendUint64(b, uint64(r.count))
	}
	return binary.BigEndian.AppendUint32(b, crc32c(b))
}

func decodeManifest(b []byte) (manifest, error) {
	var m manifest
	if len(b) < 32 {
		return m, fmt.Errorf("%w: manifest of %d bytes is truncated", ErrCorrupt, len(b))
	}
	if [4]byte(b[:4]) != manifestMagic {
		return m, fmt.Errorf("%w: manifest has a bad magic", ErrCorrupt)
	}
	if b[4] != manifestVersion {
		return m, fmt.Errorf("%w: manifest version %d, this broker reads %d", ErrCorrupt, b[4], manifestVersion)
	}
	n := binary.BigEndian.Uint32(b[24:])
	if n > maxManifestRuns || len(b) != 28+16*int(n)+4 {
		return m, fmt.Errorf("%w: manifest lists %d runs in %d bytes", ErrCorrupt, n, len(b))
	}
	if crc32c(b[:len(b)-4]) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return m, fmt.Errorf("%w: manifest fails its checksum", ErrCorrupt)
	}
	m.indexedBelow = int64(binary.BigEndian.Uint64(b[8:]))
	m.nextSeq = binary.BigEndian.Uint64(b[16:])
	if m.indexedBelow < 0 {
		return m, fmt.Errorf("%w: manifest has a negative indexed offset", ErrCorrupt)
	}
	seen := map[uint64]bool{}
	for i := 0; i < int(n); i++ {
		p := 28 + 16*i
		r := manifestRun{seq: binary.BigEndian.Uint64(b[p:]), count: int64(binary.BigEndian.Uint64(b[p+8:]))}
		if r.count < 0 || r.count > 1<<40 || r.seq >= m.nextSeq || seen[r.seq] {
			return m, fmt.Errorf("%w: manifest run %d is impossible", ErrCorrupt, r.seq)
		}
		seen[r.seq] = true
		m.runs = append(m.runs, r)
	}
	return m, nil
}

// checkpoint is the fired state, as a record in CheckpointTopic: every parked record at a
// queue offset below indexedBelow whose due time is at or before firedThrough has been
// delivered (its copy is in the log before this record), and every parked record below
// lowOffset has been delivered. Body: magic "STCK", version, 3 reserved, indexedBelow,
// firedThrough, lowOffset, CRC32C of the preceding 32 bytes.
type checkpoint struct {
	indexedBelow int64
	firedThrough int64 // ms
	lowOffset    int64
}

const (
	checkpointVersion = 1
	checkpointBytes   = 36
)

var checkpointMagic = [4]byte{'S', 'T', 'C', 'K'}

// covers reports whether the entry is known delivered by this checkpoint.
func (c checkpoint) covers(e entry) bool {
	return e.qoff < c.lowOffset || e.qoff < c.indexedBelow && e.due <= c.firedThrough
}

func encodeCheckpoint(c checkpoint) []byte {
	b := make([]byte, 0, checkpointBytes)
	b = append(b, checkpointMagic[:]...)
	b = append(b, checkpointVersion, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(c.indexedBelow))
	b = binary.BigEndian.AppendUint64(b, uint64(c.firedThrough))
	b = binary.BigEndian.AppendUint64(b, uint64(c.lowOffset))
	return binary.BigEndian.AppendUint32(b, crc32c(b))
}

func decodeCheckpoint(b []byte) (checkpoint, error) {
	var c checkpoint
	if len(b) != checkpointBytes {
		return c, fmt.Errorf("%w: checkpoint of %d bytes, want %d", ErrCorrupt, len(b), checkpointBytes)
	}
	if [4]byte(b[:4]) != checkpointMagic {
		return c, fmt.Errorf("%w: checkpoint has a bad magic", ErrCorrupt)
	}
	if b[4] != checkpointVersion {
		return c, fmt.Errorf("%w: checkpoint version %d, this broker reads %d", ErrCorrupt, b[4], checkpointVersion)
	}
	if crc32c(b[:32]) != binary.BigEndian.Uint32(b[32:]) {
		return c, fmt.Errorf("%w: checkpoint fails its checksum", ErrCorrupt)
	}
	c = checkpoint{indexedBelow: int64(binary.BigEndian.Uint64(b[8:])), firedThrough: int64(binary.BigEndian.Uint64(b[16:])),
		lowOffset: int64(binary.BigEndian.Uint64(b[24:]))}
	if c.indexedBelow < 0 || c.lowOffset < 0 || c.lowOffset > c.indexedBelow {
		return c, fmt.Errorf("%w: checkpoint has impossible offsets", ErrCorrupt)
	}
	return c, nil
}
