package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/stratamq/strata/broker/message"
)

// Commit-log segment layout (FORMAT.md): a 16-byte header then frames; a frame is one
// stored record (RocketMQ V1 layout, TOTALSIZE first) followed by a CRC32C of the record.
const (
	segmentHeaderBytes = 16
	frameTrailerBytes  = 4
	segmentVersion     = 1
	segmentExt         = ".log"
)

var segmentMagic = [4]byte{'S', 'C', 'L', 'G'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// SealedSegment describes a commit-log segment that will receive no more records.
type SealedSegment struct {
	BaseOffset     int64 // commit-log position of the segment's first byte (its header)
	EndOffset      int64 // exclusive
	Path           string
	FirstStoreTime int64 // ms; 0 if the segment holds no record
	LastStoreTime  int64
}

type segment struct {
	base int64
	path string
	f    *os.File
	// size is the number of valid bytes, header included; written by the writer goroutine.
	size                atomic.Int64
	sealed              bool // guarded by Store.segMu
	firstTime, lastTime atomic.Int64
}

func (g *segment) info() SealedSegment {
	return SealedSegment{BaseOffset: g.base, EndOffset: g.base + g.size.Load(), Path: g.path,
		FirstStoreTime: g.firstTime.Load(), LastStoreTime: g.lastTime.Load()}
}

func segmentName(dir string, base int64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, segmentExt))
}

func encodeSegmentHeader(base int64) []byte {
	h := make([]byte, segmentHeaderBytes)
	copy(h, segmentMagic[:])
	h[4] = segmentVersion
	binary.BigEndian.PutUint64(h[8:], uint64(base))
	return h
}

func decodeSegmentHeader(h []byte, wantBase int64) error {
	if len(h) < segmentHeaderBytes {
		return fmt.Errorf("%w: segment header is %d bytes", ErrCorrupt, len(h))
	}
	if [4]byte(h[:4]) != segmentMagic {
		return fmt.Errorf("%w: segment magic %q", ErrCorrupt, h[:4])
	}
	if h[4] != segmentVersion {
		return fmt.Errorf("%w: segment version %d, this build reads %d", ErrCorrupt, h[4], segmentVersion)
	}
	if b := int64(binary.BigEndian.Uint64(h[8:])); b != wantBase {
		return fmt.Errorf("%w: segment header says base %d, file name says %d", ErrCorrupt, b, wantBase)
	}
	return nil
}

// listSegments returns the bases of the segment files in dir, ascending.
func listSegments(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list commit log %s: %w", dir, err)
	}
	var bases []int64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segmentExt) {
			continue
		}
		b, err := strconv.ParseInt(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil {
			continue
		}
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

// checkFrame validates the frame at the start of b, which is stored at commit-log position
// pos: size bounds, CRC32C trailer, record layout, and that the record names pos as its
// commit-log offset. It returns the record's parsed header.
func checkFrame(b []byte, pos int64, maxRecord int) (message.RecordHeader, error) {
	var h message.RecordHeader
	n, err := checkFrameCRC(b, pos, maxRecord)
	if err != nil {
		return h, err
	}
	return checkRecordHeader(b[:n], pos)
}

// checkRecordHeader parses the header of rec, a whole record stored at pos, and checks that
// it spans rec and names pos.
func checkRecordHeader(rec []byte, pos int64) (message.RecordHeader, error) {
	h, err := message.ParseRecordHeader(rec)
	if err != nil {
		return h, fmt.Errorf("%w: record at %d: %v", ErrCorrupt, pos, err)
	}
	if int(h.TotalSize) != len(rec) || h.CommitLogOffset != pos {
		return h, fmt.Errorf("%w: record at %d names position %d", ErrCorrupt, pos, h.CommitLogOffset)
	}
	return h, nil
}

// verifyFrame is checkFrame for callers that do not need the header: it validates the same
// and returns the record's length, without decoding properties or allocating.
func verifyFrame(b []byte, pos int64, maxRecord int) (int, error) {
	n, err := checkFrameCRC(b, pos, maxRecord)
	if err != nil {
		return 0, err
	}
	e, ok := message.PeekRecordEntry(b[:n])
	if !ok { // V2 records and every error: the full parse says what is wrong
		_, err := checkRecordHeader(b[:n], pos)
		return n, err
	}
	if int(e.TotalSize) != n || e.CommitLogOffset != pos {
		return 0, fmt.Errorf("%w: record at %d names position %d", ErrCorrupt, pos, e.CommitLogOffset)
	}
	return n, nil
}

// checkFrameCRC checks the frame's size bounds and CRC32C trailer and returns the record's
// length.
func checkFrameCRC(b []byte, pos int64, maxRecord int) (int, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("%w: torn frame at %d", ErrCorrupt, pos)
	}
	n := int(int32(binary.BigEndian.Uint32(b)))
	if n < message.MinRecordBytes || n > maxRecord {
		return 0, fmt.Errorf("%w: record size %d at %d", ErrCorrupt, n, pos)
	}
	if len(b) < n+frameTrailerBytes {
		return 0, fmt.Errorf("%w: torn frame at %d", ErrCorrupt, pos)
	}
	if crc32c(b[:n]) != binary.BigEndian.Uint32(b[n:]) {
		return 0, fmt.Errorf("%w: checksum mismatch at %d", ErrCorrupt, pos)
	}
	return n, nil
}

// SegmentIterator reads a segment's records in order. It is not safe for concurrent use.
type SegmentIterator struct {
	f         *os.File
	r         *bufio.Reader
	pos, end  int64
	maxRecord int
	buf       []byte
	err       error
}

// Next returns the next record's commit-log position and its stored bytes (valid until the
// next call), or io.EOF after the last record.
func (it *SegmentIterator) Next() (int64, []byte, error) {
	if it.err != nil {
		return 0, nil, it.err
	}
	if it.pos >= it.end {
		it.err = io.EOF
		return 0, nil, io.EOF
	}
	sz, err := it.r.Peek(4)
	if err != nil {
		it.err = fmt.Errorf("read record at %d: %w", it.pos, err)
		return 0, nil, it.err
	}
	n := int(int32(binary.BigEndian.Uint32(sz)))
	if n < message.MinRecordBytes || n > it.maxRecord || it.pos+int64(n)+frameTrailerBytes > it.end {
		it.err = fmt.Errorf("%w: record size %d at %d", ErrCorrupt, n, it.pos)
		return 0, nil, it.err
	}
	var b []byte
	if size := n + frameTrailerBytes; size <= it.r.Size() {
		// In the reader's buffer, not copied: the bytes stay valid until the next read.
		if b, err = it.r.Peek(size); err == nil {
			_, err = it.r.Discard(size)
		}
	} else {
		if cap(it.buf) < size {
			it.buf = make([]byte, size)
		}
		b = it.buf[:size]
		_, err = io.ReadFull(it.r, b)
	}
	if err != nil {
		it.err = fmt.Errorf("read record at %d: %w", it.pos, err)
		return 0, nil, it.err
	}
	if _, err := verifyFrame(b, it.pos, it.maxRecord); err != nil {
		it.err = err
		return 0, nil, err
	}
	pos := it.pos
	it.pos += int64(n + frameTrailerBytes)
	return pos, b[:n], nil
}

// Close releases the iterator's file.
func (it *SegmentIterator) Close() error { return it.f.Close() }

func openSegmentIterator(path string, base, end int64, maxRecord int) (*SegmentIterator, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open segment %d: %w", base, err)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	h := make([]byte, segmentHeaderBytes)
	if _, err := io.ReadFull(r, h); err != nil {
		f.Close()
		return nil, fmt.Errorf("read segment %d header: %w", base, err)
	}
	if err := decodeSegmentHeader(h, base); err != nil {
		f.Close()
		return nil, fmt.Errorf("segment %d: %w", base, err)
	}
	return &SegmentIterator{f: f, r: r, pos: base + segmentHeaderBytes, end: end, maxRecord: maxRecord}, nil
}

// scanSegment validates the records of a segment file from file offset start (0 = from the
// header) and calls fn for each; it returns the file offset where the valid prefix ends and
// whether the scan stopped at bad bytes rather than at the end of the file. A bad header gives
// 0.
func scanSegment(f *os.File, base, start int64, maxRecord int, fn func(pos int64, rec []byte, h *message.RecordHeader)) (int64, bool, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("stat segment %d: %w", base, err)
	}
	fileLen := st.Size()
	if start < segmentHeaderBytes {
		h := make([]byte, segmentHeaderBytes)
		if _, err := f.ReadAt(h, 0); err != nil {
			return 0, true, nil
		}
		if err := decodeSegmentHeader(h, base); err != nil {
			return 0, true, nil
		}
		start = segmentHeaderBytes
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, start, fileLen-start), 1<<20)
	valid := start
	buf := make([]byte, 0, 64<<10)
	for valid < fileLen {
		var sz [4]byte
		if _, err := io.ReadFull(r, sz[:]); err != nil {
			return valid, true, nil
		}
		n := int(int32(binary.BigEndian.Uint32(sz[:])))
		if n < message.MinRecordBytes || n > maxRecord || valid+int64(n)+frameTrailerBytes > fileLen {
			return valid, true, nil
		}
		if cap(buf) < n+frameTrailerBytes {
			buf = make([]byte, n+frameTrailerBytes)
		}
		b := buf[:n+frameTrailerBytes]
		copy(b, sz[:])
		if _, err := io.ReadFull(r, b[4:]); err != nil {
			return valid, true, nil
		}
		hdr, err := checkFrame(b, base+valid, maxRecord)
		if err != nil {
			return valid, true, nil
		}
		if fn != nil {
			fn(base+valid, b[:n], &hdr)
		}
		valid += int64(n + frameTrailerBytes)
	}
	return valid, false, nil
}

// syncDir fsyncs a directory so that created, renamed or removed entries are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// Seal file (FORMAT.md): index/<base>.seal records a sealed segment's valid end and store
// time range, written and fsynced before the next segment is created, so Open sizes sealed
// segments and reports their times without scanning them.
const (
	sealExt       = ".seal"
	sealFileBytes = 48
	sealVersion   = 1
)

var sealMagic = [4]byte{'S', 'S', 'E', 'L'}

type sealInfo struct {
	base, end       int64
	firstTs, lastTs int64
}

func encodeSeal(si sealInfo) []byte {
	b := make([]byte, sealFileBytes)
	copy(b, sealMagic[:])
	b[4] = sealVersion
	be := binary.BigEndian
	be.PutUint64(b[8:], uint64(si.base))
	be.PutUint64(b[16:], uint64(si.end))
	be.PutUint64(b[24:], uint64(si.firstTs))
	be.PutUint64(b[32:], uint64(si.lastTs))
	be.PutUint32(b[40:], crc32c(b[:40]))
	return b
}

func decodeSeal(b []byte, base int64) (sealInfo, error) {
	var si sealInfo
	be := binary.BigEndian
	if len(b) != sealFileBytes || [4]byte(b[:4]) != sealMagic || crc32c(b[:40]) != be.Uint32(b[40:]) {
		return si, fmt.Errorf("%w: seal file", ErrCorrupt)
	}
	if b[4] != sealVersion {
		return si, fmt.Errorf("%w: seal file version %d, this build reads %d", ErrCorrupt, b[4], sealVersion)
	}
	si = sealInfo{base: int64(be.Uint64(b[8:])), end: int64(be.Uint64(b[16:])), firstTs: int64(be.Uint64(b[24:])), lastTs: int64(be.Uint64(b[32:]))}
	if si.base != base || si.end < base+segmentHeaderBytes || si.lastTs < si.firstTs {
		return sealInfo{}, fmt.Errorf("%w: seal file fields out of range", ErrCorrupt)
	}
	return si, nil
}

func (s *Store) sealPath(base int64) string {
	return s.indexPath(fmt.Sprintf("%020d%s", base, sealExt))
}

func (s *Store) readSeal(base int64) (sealInfo, bool) {
	b, err := os.ReadFile(s.sealPath(base))
	if err != nil {
		return sealInfo{}, false
	}
	si, err := decodeSeal(b, base)
	return si, err == nil
}

// writeSeal durably records g's end and times.
func (s *Store) writeSeal(g *segment) error {
	b := encodeSeal(sealInfo{base: g.base, end: g.base + g.size.Load(), firstTs: g.firstTime.Load(), lastTs: g.lastTime.Load()})
	path := s.sealPath(g.base)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write seal of segment %d: %w", g.base, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write seal of segment %d: %w", g.base, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync seal of segment %d: %w", g.base, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
