package store

import (
	"encoding/binary"
	"fmt"
)

// Consume-queue formats (FORMAT.md): a 28-byte entry per queue offset; 4 KiB pages of 145
// entries of one queue in <segment>.cqp; and the map log <segment>.cqm that records where
// each page is, plus fragments (entries of a queue's unfinished page that had to be made
// durable) and queue resets.
const (
	cqEntryBytes      = 28
	cqPageBytes       = blockBytes
	cqPageHeaderBytes = 32
	cqPageEntries     = (cqPageBytes - cqPageHeaderBytes) / cqEntryBytes // 145
	cqPageVersion     = 1
	cqMapVersion      = 1
	cqMapHeaderBytes  = 16
	queueTableVersion = 1
	queueTableHeader  = 8

	cqRecordPage     = 1
	cqRecordFragment = 2
	cqRecordReset    = 3

	cqPageRecordBytes = 1 + 4 + 8 + 4 + 8 + 8 + 8
	maxFramedBody     = 1 << 20
)

var (
	cqMapMagic      = [4]byte{'S', 'C', 'Q', 'M'}
	queueTableMagic = [4]byte{'S', 'Q', 'T', 'B'}
)

// cqEntry is one consume-queue entry: where a queue offset's record sits in the commit log,
// its tag hash code (tag filtering without reading the log) and its store time (time lookup
// without reading the log).
type cqEntry struct {
	pos     int64
	size    int32
	tag     int64
	storeTs int64
}

func putCQEntry(b []byte, e cqEntry) {
	be := binary.BigEndian
	be.PutUint64(b, uint64(e.pos))
	be.PutUint32(b[8:], uint32(e.size))
	be.PutUint64(b[12:], uint64(e.tag))
	be.PutUint64(b[20:], uint64(e.storeTs))
}

func getCQEntry(b []byte) cqEntry {
	be := binary.BigEndian
	return cqEntry{pos: int64(be.Uint64(b)), size: int32(be.Uint32(b[8:])), tag: int64(be.Uint64(b[12:])), storeTs: int64(be.Uint64(b[20:]))}
}

// encodeCQPage fills page (cqPageBytes) with a full page of queue's entries from first.
func encodeCQPage(page []byte, queue uint32, first int64, entries []cqEntry) {
	be := binary.BigEndian
	clear(page[:cqPageHeaderBytes])
	page[4] = cqPageVersion
	be.PutUint16(page[6:], uint16(len(entries)))
	be.PutUint32(page[8:], queue)
	be.PutUint64(page[12:], uint64(first))
	for i, e := range entries {
		putCQEntry(page[cqPageHeaderBytes+i*cqEntryBytes:], e)
	}
	clear(page[cqPageHeaderBytes+len(entries)*cqEntryBytes:])
	be.PutUint32(page, crc32c(page[4:]))
}

// checkCQPage validates a page read from disk against the queue and first offset the page
// map says it holds.
func checkCQPage(page []byte, queue uint32, first int64) error {
	be := binary.BigEndian
	if len(page) != cqPageBytes {
		return fmt.Errorf("%w: consume-queue page of %d bytes", ErrCorrupt, len(page))
	}
	if crc32c(page[4:]) != be.Uint32(page) {
		return fmt.Errorf("%w: consume-queue page checksum mismatch", ErrCorrupt)
	}
	if page[4] != cqPageVersion {
		return fmt.Errorf("%w: consume-queue page version %d, this build reads %d", ErrCorrupt, page[4], cqPageVersion)
	}
	if n := be.Uint16(page[6:]); n != cqPageEntries {
		return fmt.Errorf("%w: consume-queue page holds %d entries, want %d", ErrCorrupt, n, cqPageEntries)
	}
	if q, f := be.Uint32(page[8:]), int64(be.Uint64(page[12:])); q != queue || f != first {
		return fmt.Errorf("%w: consume-queue page is queue %d offset %d, the page map says queue %d offset %d", ErrCorrupt, q, f, queue, first)
	}
	return nil
}

// appendFramed appends a framed record: uint32 body length, body, uint32 CRC32C(body). The
// body is written by fill into the bytes after the length.
func appendFramed(dst []byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	dst = append(dst, body...)
	return binary.BigEndian.AppendUint32(dst, crc32c(body))
}

// readFramed decodes the framed record at the start of b: its body and the bytes used.
func readFramed(b []byte) ([]byte, int, error) {
	if len(b) < 8 {
		return nil, 0, fmt.Errorf("%w: torn record of %d bytes", ErrCorrupt, len(b))
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 1 || n > maxFramedBody || len(b) < 8+n {
		return nil, 0, fmt.Errorf("%w: record length %d", ErrCorrupt, n)
	}
	body := b[4 : 4+n]
	if crc32c(body) != binary.BigEndian.Uint32(b[4+n:]) {
		return nil, 0, fmt.Errorf("%w: record checksum mismatch", ErrCorrupt)
	}
	return body, 8 + n, nil
}

// cqRecord is one record of a page map (.cqm).
type cqRecord struct {
	kind    byte
	queue   uint32
	first   int64 // first queue offset (page, fragment) or the new offset (reset)
	page    uint32
	firstTs int64
	firstP  int64 // commit-log positions of a page's first and last entries
	lastP   int64
	entries []cqEntry // fragment
}

func encodeCQMapHeader(segBase int64) []byte {
	h := make([]byte, cqMapHeaderBytes)
	copy(h, cqMapMagic[:])
	h[4] = cqMapVersion
	binary.BigEndian.PutUint64(h[8:], uint64(segBase))
	return h
}

func checkCQMapHeader(h []byte, segBase int64) error {
	if len(h) < cqMapHeaderBytes || [4]byte(h[:4]) != cqMapMagic {
		return fmt.Errorf("%w: page map header", ErrCorrupt)
	}
	if h[4] != cqMapVersion {
		return fmt.Errorf("%w: page map version %d, this build reads %d", ErrCorrupt, h[4], cqMapVersion)
	}
	if b := int64(binary.BigEndian.Uint64(h[8:])); b != segBase {
		return fmt.Errorf("%w: page map names segment %d, file name says %d", ErrCorrupt, b, segBase)
	}
	return nil
}

// appendCQRecord appends r framed. scratch is reused for the body.
func appendCQRecord(dst, scratch []byte, r *cqRecord) ([]byte, []byte) {
	be := binary.BigEndian
	b := append(scratch[:0], r.kind)
	b = be.AppendUint32(b, r.queue)
	b = be.AppendUint64(b, uint64(r.first))
	switch r.kind {
	case cqRecordPage:
		b = be.AppendUint32(b, r.page)
		b = be.AppendUint64(b, uint64(r.firstTs))
		b = be.AppendUint64(b, uint64(r.firstP))
		b = be.AppendUint64(b, uint64(r.lastP))
	case cqRecordFragment:
		b = be.AppendUint16(b, uint16(len(r.entries)))
		for _, e := range r.entries {
			var x [cqEntryBytes]byte
			putCQEntry(x[:], e)
			b = append(b, x[:]...)
		}
	}
	return appendFramed(dst, b), b
}

// decodeCQRecord decodes the framed page-map record at the start of b.
func decodeCQRecord(b []byte) (cqRecord, int, error) {
	var r cqRecord
	body, n, err := readFramed(b)
	if err != nil {
		return r, 0, err
	}
	be := binary.BigEndian
	if len(body) < 13 {
		return r, 0, fmt.Errorf("%w: page map record of %d bytes", ErrCorrupt, len(body))
	}
	r.kind, r.queue, r.first = body[0], be.Uint32(body[1:]), int64(be.Uint64(body[5:]))
	if r.queue == 0 || r.first < 0 {
		return cqRecord{}, 0, fmt.Errorf("%w: page map record names queue %d offset %d", ErrCorrupt, r.queue, r.first)
	}
	rest := body[13:]
	switch r.kind {
	case cqRecordPage:
		if len(rest) != cqPageRecordBytes-13 {
			return cqRecord{}, 0, fmt.Errorf("%w: page record of %d bytes", ErrCorrupt, len(body))
		}
		r.page = be.Uint32(rest)
		r.firstTs = int64(be.Uint64(rest[4:]))
		r.firstP = int64(be.Uint64(rest[12:]))
		r.lastP = int64(be.Uint64(rest[20:]))
		if r.firstP < 0 || r.lastP < r.firstP {
			return cqRecord{}, 0, fmt.Errorf("%w: page record positions %d..%d", ErrCorrupt, r.firstP, r.lastP)
		}
	case cqRecordFragment:
		if len(rest) < 2 {
			return cqRecord{}, 0, fmt.Errorf("%w: fragment record of %d bytes", ErrCorrupt, len(body))
		}
		k := int(be.Uint16(rest))
		rest = rest[2:]
		if k == 0 || k >= cqPageEntries || len(rest) != k*cqEntryBytes {
			return cqRecord{}, 0, fmt.Errorf("%w: fragment of %d entries in %d bytes", ErrCorrupt, k, len(rest))
		}
		r.entries = make([]cqEntry, k)
		for i := range r.entries {
			r.entries[i] = getCQEntry(rest[i*cqEntryBytes:])
		}
	case cqRecordReset:
		if len(rest) != 0 {
			return cqRecord{}, 0, fmt.Errorf("%w: reset record of %d bytes", ErrCorrupt, len(body))
		}
	default:
		return cqRecord{}, 0, fmt.Errorf("%w: page map record kind %d", ErrCorrupt, r.kind)
	}
	return r, n, nil
}

// queueRecord is one record of the queue table: the number the page map uses for a queue.
type queueRecord struct {
	num        uint32
	queueID    int32
	createdPos int64 // commit-log end when the queue was created (topic tombstones below it kill it)
	topic      string
}

func encodeQueueTableHeader() []byte {
	return []byte{queueTableMagic[0], queueTableMagic[1], queueTableMagic[2], queueTableMagic[3], queueTableVersion, 0, 0, 0}
}

func checkQueueTableHeader(h []byte) error {
	if len(h) < queueTableHeader || [4]byte(h[:4]) != queueTableMagic {
		return fmt.Errorf("%w: queue table header", ErrCorrupt)
	}
	if h[4] != queueTableVersion {
		return fmt.Errorf("%w: queue table version %d, this build reads %d", ErrCorrupt, h[4], queueTableVersion)
	}
	return nil
}

func appendQueueRecord(dst []byte, r *queueRecord) []byte {
	be := binary.BigEndian
	b := be.AppendUint32(nil, r.num)
	b = be.AppendUint32(b, uint32(r.queueID))
	b = be.AppendUint64(b, uint64(r.createdPos))
	b = append(b, r.topic...)
	return appendFramed(dst, b)
}

func decodeQueueRecord(b []byte) (queueRecord, int, error) {
	var r queueRecord
	body, n, err := readFramed(b)
	if err != nil {
		return r, 0, err
	}
	if len(body) < 17 || len(body) > 16+255 {
		return r, 0, fmt.Errorf("%w: queue record of %d bytes", ErrCorrupt, len(body))
	}
	be := binary.BigEndian
	r = queueRecord{num: be.Uint32(body), queueID: int32(be.Uint32(body[4:])), createdPos: int64(be.Uint64(body[8:])), topic: string(body[16:])}
	if r.num == 0 || r.queueID < 0 || r.createdPos < 0 {
		return queueRecord{}, 0, fmt.Errorf("%w: queue record fields out of range", ErrCorrupt)
	}
	return r, n, nil
}
