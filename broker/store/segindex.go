package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"

	"github.com/stratamq/strata/broker/message"
)

// Segment index file (FORMAT.md): one per commit-log segment, "<base>.idx". It holds, for
// every record of the segment, the consume-queue entry and the keys to index, so that a
// restart rebuilds consume queues and the key index without reading the log.
const (
	indexHeaderBytes = 8
	indexVersion     = 1
	indexExt         = ".idx"
	// indexFixedBytes is the fixed part of an entry body.
	indexFixedBytes = 8 + 4 + 4 + 8 + 8 + 8 + 4 + 1 + 2 + 2
	maxIndexEntry   = 1 << 20
)

var indexMagic = [4]byte{'S', 'I', 'D', 'X'}

func indexName(dir string, base int64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, indexExt))
}

func encodeIndexHeader() []byte {
	h := make([]byte, indexHeaderBytes)
	copy(h, indexMagic[:])
	h[4] = indexVersion
	return h
}

// indexEntry is a record's dispatch information.
type indexEntry struct {
	pos         int64
	size        int32
	queueID     int32
	queueOffset int64
	tag         int64
	storeTs     int64
	sysFlag     int32
	topic       string
	uniqKey     string
	keys        []string
}

func entryFromHeader(pos int64, h *message.RecordHeader) indexEntry {
	return indexEntry{
		pos: pos, size: h.TotalSize, queueID: h.QueueID, queueOffset: h.QueueOffset,
		tag: message.TagHashCode(h.Tags), storeTs: h.StoreTimestamp, sysFlag: h.SysFlag,
		topic: h.Topic, uniqKey: h.UniqKey, keys: h.Keys,
	}
}

// appendIndexEntry appends the framed entry: uint32 body length, body, uint32 CRC32C(body).
// Keys or a unique key too long for the format are dropped from the entry (not indexed).
func appendIndexEntry(dst []byte, e *indexEntry) []byte {
	be := binary.BigEndian
	start := len(dst)
	dst = be.AppendUint32(dst, 0)
	dst = be.AppendUint64(dst, uint64(e.pos))
	dst = be.AppendUint32(dst, uint32(e.size))
	dst = be.AppendUint32(dst, uint32(e.queueID))
	dst = be.AppendUint64(dst, uint64(e.queueOffset))
	dst = be.AppendUint64(dst, uint64(e.tag))
	dst = be.AppendUint64(dst, uint64(e.storeTs))
	dst = be.AppendUint32(dst, uint32(e.sysFlag))
	topic := e.topic
	if len(topic) > 255 {
		topic = topic[:255] // cannot happen for V1 records (127 bytes max)
	}
	dst = append(dst, byte(len(topic)))
	dst = append(dst, topic...)
	uniq := e.uniqKey
	if len(uniq) > 0xFFFF {
		uniq = ""
	}
	dst = be.AppendUint16(dst, uint16(len(uniq)))
	dst = append(dst, uniq...)
	var keys []string
	for _, k := range e.keys {
		if k != "" && len(k) <= 0xFFFF && len(keys) < 0xFFFF {
			keys = append(keys, k)
		}
	}
	dst = be.AppendUint16(dst, uint16(len(keys)))
	for _, k := range keys {
		dst = be.AppendUint16(dst, uint16(len(k)))
		dst = append(dst, k...)
	}
	body := dst[start+4:]
	be.PutUint32(dst[start:], uint32(len(body)))
	return be.AppendUint32(dst, crc32c(body))
}

// decodeIndexEntry decodes the framed entry at the start of b and returns the bytes used.
func decodeIndexEntry(b []byte) (indexEntry, int, error) {
	var e indexEntry
	be := binary.BigEndian
	if len(b) < 4 {
		return e, 0, fmt.Errorf("%w: torn index entry", ErrCorrupt)
	}
	n := int(be.Uint32(b))
	if n < indexFixedBytes || n > maxIndexEntry || len(b) < 4+n+4 {
		return e, 0, fmt.Errorf("%w: index entry length %d", ErrCorrupt, n)
	}
	body := b[4 : 4+n]
	if crc32c(body) != be.Uint32(b[4+n:]) {
		return e, 0, fmt.Errorf("%w: index entry checksum mismatch", ErrCorrupt)
	}
	e.pos = int64(be.Uint64(body))
	e.size = int32(be.Uint32(body[8:]))
	e.queueID = int32(be.Uint32(body[12:]))
	e.queueOffset = int64(be.Uint64(body[16:]))
	e.tag = int64(be.Uint64(body[24:]))
	e.storeTs = int64(be.Uint64(body[32:]))
	e.sysFlag = int32(be.Uint32(body[40:]))
	p := 44
	bad := func(what string) (indexEntry, int, error) {
		return indexEntry{}, 0, fmt.Errorf("%w: index entry %s overruns its length", ErrCorrupt, what)
	}
	tl := int(body[p])
	p++
	if p+tl+2 > n {
		return bad("topic")
	}
	e.topic = string(body[p : p+tl])
	p += tl
	ul := int(be.Uint16(body[p:]))
	p += 2
	if p+ul+2 > n {
		return bad("unique key")
	}
	e.uniqKey = string(body[p : p+ul])
	p += ul
	nk := int(be.Uint16(body[p:]))
	p += 2
	for i := 0; i < nk; i++ {
		if p+2 > n {
			return bad("key length")
		}
		kl := int(be.Uint16(body[p:]))
		p += 2
		if p+kl > n {
			return bad("key")
		}
		e.keys = append(e.keys, string(body[p:p+kl]))
		p += kl
	}
	if p != n {
		return e, 0, fmt.Errorf("%w: index entry has %d trailing bytes", ErrCorrupt, n-p)
	}
	if e.pos < 0 || e.size < message.MinRecordBytes || e.queueOffset < 0 || e.topic == "" {
		return indexEntry{}, 0, fmt.Errorf("%w: index entry fields out of range", ErrCorrupt)
	}
	return e, 4 + n + 4, nil
}

// loadIndexFile returns the valid entries of an index file that lie inside [base, validEnd)
// and the file length they occupy (header included); 0 if the header is bad.
func loadIndexFile(path string, validEnd int64) ([]indexEntry, int64, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read segment index %s: %w", path, err)
	}
	if len(b) < indexHeaderBytes || [4]byte(b[:4]) != indexMagic || b[4] != indexVersion {
		return nil, 0, nil
	}
	var out []indexEntry
	off := indexHeaderBytes
	for off < len(b) {
		e, n, err := decodeIndexEntry(b[off:])
		if err != nil || e.pos+int64(e.size)+frameTrailerBytes > validEnd {
			break
		}
		if len(out) > 0 && e.pos <= out[len(out)-1].pos {
			break
		}
		out = append(out, e)
		off += n
	}
	return out, int64(off), nil
}

// keyRef is one key-index hit candidate; the key itself is checked against the record.
type keyRef struct {
	pos     int64
	size    int32
	queueID int32
	qoff    int64
	storeTs int64
}

// keyHash hashes topic and key into the key-index map (RocketMQ indexes topic + "#" + key).
func keyHash(topic, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(topic))
	h.Write([]byte{'#'})
	h.Write([]byte(key))
	return h.Sum64()
}
