package tier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/golang/snappy"
	"github.com/stratamq/strata/broker/message"
)

// Segment-object format constants (FORMAT.md).
const (
	// FormatVersion is the version byte written in every segment object's footer.
	FormatVersion byte = 1
	// FooterBytes is the fixed size of a segment object's footer.
	FooterBytes = 48
	// DefaultBlockBytes is the uncompressed size at which a block is cut.
	DefaultBlockBytes = 1 << 20
	// DefaultOwnObjectBytes is the queue-run size (uncompressed) from which a run is written
	// to an object of its own.
	DefaultOwnObjectBytes = 128 << 20
	// maxBlockRawBytes bounds what a decoder accepts for one block, so a corrupt size cannot
	// make it allocate without limit.
	maxBlockRawBytes = 64 << 20
)

var footerMagic = [8]byte{'S', 'T', 'R', 'A', 'T', 'S', 'E', 'G'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// ErrCorrupt is wrapped by every error about tier bytes that fail a checksum or do not
// decode. Such bytes are never served.
var ErrCorrupt = errors.New("corrupt tier object")

// BlockRef locates one compressed block of a queue run.
type BlockRef struct {
	Offset      int64 // byte offset of the block frame in its object
	Size        int64 // frame size: compressed bytes plus the 4-byte CRC32C
	RawSize     int64 // uncompressed size: the records back to back
	FirstOffset int64 // queue offset of the block's first record
	Count       int64 // number of records
	FirstTime   int64 // store time (ms) of the first record
	MaxTime     int64 // largest store time (ms) in the block
}

// QueueRun is one (topic, queue id)'s records of a segment, as the index describes them.
type QueueRun struct {
	Topic       string
	QueueID     int32
	FirstOffset int64
	LastOffset  int64
	FirstTime   int64 // smallest store time, ms
	LastTime    int64 // largest store time, ms
	Count       int64
	RawBytes    int64 // uncompressed record bytes
	// Object is the name of the object holding the run's blocks when the run has an object
	// of its own, or "" when the blocks are in the segment object itself.
	Object string
	Blocks []BlockRef
}

// KeyEntry maps a message key or unique key to the queue offset of its message.
type KeyEntry struct {
	Key         string
	QueueOffset int64
}

// QueueKeys holds the keys of one queue run, in the same order as SegmentIndex.Queues.
type QueueKeys struct {
	Keys     []KeyEntry
	UniqKeys []KeyEntry
}

// SegmentIndex is the decoded index section of a segment object.
type SegmentIndex struct {
	Base, End int64 // commit-log range [Base, End) the object holds
	Queues    []QueueRun
}

// Footer is the decoded fixed-size tail of a segment object.
type Footer struct {
	IndexOffset, IndexLength int64
	IndexCRC                 uint32
	KeysOffset, KeysLength   int64
	KeysCRC                  uint32
}

// EncodedObject is one object an encoder produced.
type EncodedObject struct {
	Name string
	Data []byte
}

// EncodedSegment is the output of EncodeSegment: the segment object and the objects of the
// runs large enough to have their own.
type EncodedSegment struct {
	Main       EncodedObject
	Footer     Footer
	Index      SegmentIndex
	Companions []EncodedObject
}

// SegmentEncoder regroups a sealed segment's records by queue. Feed records in commit-log
// order with Add, then call Finish. Memory use is the compressed size of the segment plus
// each queue's open block: up to blockBytes a queue, so up to the raw segment when it is
// spread over many queues too small to fill a block.
type SegmentEncoder struct {
	prefix         string
	epoch          int64
	base, end      int64
	blockBytes     int
	ownObjectBytes int64
	queues         map[queueKey]*runBuilder
	// sizes, when not nil, holds what each queue took in the previous segment encoded with
	// the same sizes; Add sizes a queue's buffers from it and Finish replaces it.
	sizes *sizeHints
	prev  map[queueKey]queueSize
	// prevGuessed is set when prev comes from the segment before, not from this one: a
	// queue's block then gets half as much again, so that one that grew a little does not
	// copy its block into a new one twice its size (with 1,000 topics that copy was two
	// fifths of the encoder's time). Room never written costs no memory off the heap.
	prevGuessed bool
	// scratch is what blocks are compressed into before they are copied, at their exact
	// size, behind the queue's earlier blocks: compressing in place would need room for
	// snappy's worst case in every queue's buffer.
	scratch []byte
	// mem, when not nil, holds the frames and the objects, and blocks the open blocks,
	// freed once Finish has cut them all (offHeap); otherwise all are on the Go heap.
	mem, blocks *offHeap
}

type queueKey struct {
	topic string
	queue int32
}

// sizeHints remembers, from one segment to the next, how many bytes and keys each queue
// held, so the next segment's encoder sizes each queue's open block and key lists once
// instead of growing them: with tens of thousands of small queues, growing them was a
// third of the encoder's time. Safe for concurrent use.
type sizeHints struct {
	last atomic.Pointer[map[queueKey]queueSize]
}

type queueSize struct{ raw, keys, uniqKeys int32 }

// sizeFrom has the encoder size its queues from s and leave this segment's sizes there.
func (e *SegmentEncoder) sizeFrom(s *sizeHints) {
	e.sizes = s
	if m := s.last.Load(); m != nil {
		e.prev, e.prevGuessed = *m, true
	}
}

type runBuilder struct {
	run    QueueRun
	keys   QueueKeys
	frames [][]byte // closed block frames, each at its exact size
	size   int      // their total bytes: block offsets are relative to the run start
	raw    []byte   // the open block
	cur    BlockRef
}

// NewSegmentEncoder starts encoding the segment [base, end) whose objects are named under
// prefix for the writer of epoch (SegmentObjectName). blockBytes and ownObjectBytes take
// defaults when 0.
func NewSegmentEncoder(prefix string, epoch, base, end int64, blockBytes int, ownObjectBytes int64) *SegmentEncoder {
	if blockBytes <= 0 {
		blockBytes = DefaultBlockBytes
	}
	if ownObjectBytes <= 0 {
		ownObjectBytes = DefaultOwnObjectBytes
	}
	return &SegmentEncoder{prefix: prefix, epoch: epoch, base: base, end: end, blockBytes: blockBytes,
		ownObjectBytes: ownObjectBytes, queues: make(map[queueKey]*runBuilder)}
}

// Add appends one stored record (broker/message layout). Records of a queue must arrive in
// increasing queue-offset order, as they do in a commit log.
func (e *SegmentEncoder) Add(rec []byte) error {
	h, err := message.ParseRecordHeader(rec)
	if err != nil {
		return fmt.Errorf("encode segment %d: %w", e.base, err)
	}
	rec = rec[:h.TotalSize]
	k := queueKey{h.Topic, h.QueueID}
	b := e.queues[k]
	if b == nil {
		b = &runBuilder{run: QueueRun{Topic: h.Topic, QueueID: h.QueueID, FirstOffset: h.QueueOffset,
			FirstTime: h.StoreTimestamp, LastTime: h.StoreTimestamp}}
		if sz, ok := e.prev[k]; ok {
			n := int(sz.raw)
			if e.prevGuessed {
				n += n / 2
			}
			b.raw = e.blocks.bytes(min(n, e.blockBytes))
			b.keys.Keys = make([]KeyEntry, 0, sz.keys)
			b.keys.UniqKeys = make([]KeyEntry, 0, sz.uniqKeys)
		}
		e.queues[k] = b
	} else if h.QueueOffset <= b.run.LastOffset {
		return fmt.Errorf("encode segment %d: %s/%d offset %d after %d: records out of order", e.base, h.Topic, h.QueueID, h.QueueOffset, b.run.LastOffset)
	}
	r := &b.run
	r.LastOffset = h.QueueOffset
	r.FirstTime = min(r.FirstTime, h.StoreTimestamp)
	r.LastTime = max(r.LastTime, h.StoreTimestamp)
	r.Count++
	r.RawBytes += int64(len(rec))
	for _, key := range h.Keys {
		b.keys.Keys = append(b.keys.Keys, KeyEntry{key, h.QueueOffset})
	}
	if h.UniqKey != "" {
		b.keys.UniqKeys = append(b.keys.UniqKeys, KeyEntry{h.UniqKey, h.QueueOffset})
	}
	if len(b.raw) > 0 && len(b.raw)+len(rec) > e.blockBytes {
		// Cut before the block would pass its size, so a block's buffer never regrows for
		// its last record: only a record of blockBytes or more makes a larger block.
		e.scratch = b.cut(e.scratch, e.mem)
	}
	if len(b.raw) == 0 {
		b.cur = BlockRef{FirstOffset: h.QueueOffset, FirstTime: h.StoreTimestamp, MaxTime: h.StoreTimestamp}
	}
	b.cur.Count++
	b.cur.MaxTime = max(b.cur.MaxTime, h.StoreTimestamp)
	b.raw = growRaw(b.raw, len(rec), e.blockBytes, e.blocks)
	b.raw = append(b.raw, rec...)
	if len(b.raw) >= e.blockBytes {
		e.scratch = b.cut(e.scratch, e.mem)
	}
	return nil
}

// growRaw makes room for n more bytes in an open block, doubling it (append grows a slice
// of this size by a quarter at a time, copying a queue's block a dozen times on its way to
// tens of KiB), though not past limit unless the record needs it.
func growRaw(raw []byte, n, limit int, mem *offHeap) []byte {
	if cap(raw)-len(raw) >= n {
		return raw
	}
	c := max(2*cap(raw), 4096)
	if c > limit {
		c = limit
	}
	return append(mem.bytes(max(c, len(raw)+n)), raw...)
}

// cut closes the open block into a frame of its own and returns scratch, grown to snappy's
// worst case for the block if it was smaller. Frames are copied into their object once, in
// Finish, at its final size: appending them to a growing run copied a large queue's data
// several times over, a tenth of the offload's CPU.
func (b *runBuilder) cut(scratch []byte, mem *offHeap) []byte {
	if len(b.raw) == 0 {
		return scratch
	}
	if n := snappy.MaxEncodedLen(len(b.raw)); len(scratch) < n {
		scratch = make([]byte, n)
	}
	enc := snappy.Encode(scratch, b.raw)
	frame := mem.bytes(len(enc) + 4)[:len(enc)+4]
	copy(frame, enc)
	binary.BigEndian.PutUint32(frame[len(enc):], crc32c(enc))
	b.cur.Offset = int64(b.size)
	b.cur.Size = int64(len(frame))
	b.cur.RawSize = int64(len(b.raw))
	b.run.Blocks = append(b.run.Blocks, b.cur)
	b.frames = append(b.frames, frame)
	b.size += len(frame)
	b.raw = b.raw[:0]
	return scratch
}

// DecodeBlock checks a block frame's CRC32C and returns its uncompressed records.
// rawSize is the size the index announces.
func DecodeBlock(frame []byte, rawSize int64) ([]byte, error) {
	return decodeBlockInto(frame, rawSize, func(n int) []byte { return make([]byte, n) })
}

// decodeBlockInto is DecodeBlock decoding into alloc(n), called once the frame's checksum
// and decoded length are checked. On success every byte of the buffer has been written,
// so it need not be zeroed.
func decodeBlockInto(frame []byte, rawSize int64, alloc func(n int) []byte) ([]byte, error) {
	if len(frame) < 4 {
		return nil, fmt.Errorf("%w: block frame of %d bytes", ErrCorrupt, len(frame))
	}
	body := frame[:len(frame)-4]
	if got, want := crc32c(body), binary.BigEndian.Uint32(frame[len(frame)-4:]); got != want {
		return nil, fmt.Errorf("%w: block checksum %08x, stored %08x", ErrCorrupt, got, want)
	}
	n, err := snappy.DecodedLen(body)
	if err != nil || int64(n) != rawSize || n > maxBlockRawBytes {
		return nil, fmt.Errorf("%w: block decodes to %d bytes, index says %d (%v)", ErrCorrupt, n, rawSize, err)
	}
	raw, err := snappy.Decode(alloc(n), body)
	if err != nil {
		return nil, fmt.Errorf("%w: block: %v", ErrCorrupt, err)
	}
	return raw, nil
}

// Finish closes every block and lays out the objects: each queue's run contiguous, queues in
// (topic, queue id) order, then the index section, the keys section and the footer. The same
// records and epoch always give the same bytes. The encoder is spent after Finish.
func (e *SegmentEncoder) Finish() (*EncodedSegment, error) {
	keys := make([]queueKey, 0, len(e.queues))
	for k := range e.queues {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].topic != keys[j].topic {
			return keys[i].topic < keys[j].topic
		}
		return keys[i].queue < keys[j].queue
	})
	if e.sizes != nil {
		sizes := make(map[queueKey]queueSize, len(e.queues))
		for k, b := range e.queues {
			sizes[k] = queueSize{int32(min(b.run.RawBytes, int64(e.blockBytes))), int32(len(b.keys.Keys)), int32(len(b.keys.UniqKeys))}
		}
		e.sizes.last.Store(&sizes)
	}
	out := &EncodedSegment{Index: SegmentIndex{Base: e.base, End: e.end}}
	var mainRuns []*runBuilder
	mainSize := 0
	allKeys := make([]QueueKeys, 0, len(keys))
	for i, k := range keys {
		b := e.queues[k]
		e.scratch = b.cut(e.scratch, e.mem)
		b.raw = nil
		run := b.run
		if b.run.RawBytes >= e.ownObjectBytes {
			name := CompanionObjectName(e.prefix, e.base, e.epoch, i)
			one := SegmentIndex{Base: e.base, End: e.end, Queues: []QueueRun{run}}
			obj, _ := layoutRuns([]*runBuilder{b}, one, []QueueKeys{b.keys}, e.mem)
			out.Companions = append(out.Companions, EncodedObject{Name: name, Data: obj})
			run.Object = name
		} else {
			// The main object holds the small runs back to back.
			for j := range run.Blocks {
				run.Blocks[j].Offset += int64(mainSize)
			}
			mainSize += b.size
			mainRuns = append(mainRuns, b)
		}
		out.Index.Queues = append(out.Index.Queues, run)
		allKeys = append(allKeys, b.keys)
	}
	e.blocks.free() // every block is cut: what remains is frames
	obj, f := layoutRuns(mainRuns, out.Index, allKeys, e.mem)
	out.Main = EncodedObject{Name: SegmentObjectName(e.prefix, e.base, e.epoch), Data: obj}
	out.Footer = f
	return out, nil
}

// layoutRuns writes an object of exactly its size: the runs' block frames in order, then
// the index section, the keys section and the footer. Each frame is dropped once copied.
func layoutRuns(runs []*runBuilder, idx SegmentIndex, keys []QueueKeys, mem *offHeap) ([]byte, Footer) {
	index := appendIndex(nil, &idx)
	size := len(index) + keysSize(keys) + FooterBytes
	for _, b := range runs {
		size += b.size
	}
	data := mem.bytes(size)
	for _, b := range runs {
		for i, fr := range b.frames {
			data = append(data, fr...)
			b.frames[i] = nil
		}
	}
	return appendTail(data, index, keys)
}

// layoutObject appends the index section, the keys section and the footer behind data, the
// object's block frames.
func layoutObject(data []byte, idx SegmentIndex, keys []QueueKeys) ([]byte, Footer) {
	return appendTail(data, appendIndex(nil, &idx), keys)
}

func appendTail(data, index []byte, keys []QueueKeys) ([]byte, Footer) {
	data = slices.Grow(data, len(index)+keysSize(keys)+FooterBytes)
	var f Footer
	f.IndexOffset = int64(len(data))
	data = append(data, index...)
	f.IndexLength = int64(len(index))
	f.IndexCRC = crc32c(index)
	f.KeysOffset = int64(len(data))
	data = appendKeys(data, keys)
	f.KeysLength = int64(len(data)) - f.KeysOffset
	f.KeysCRC = crc32c(data[f.KeysOffset:])
	return appendFooter(data, f), f
}

func appendFooter(dst []byte, f Footer) []byte {
	be := binary.BigEndian
	dst = be.AppendUint64(dst, uint64(f.IndexOffset))
	dst = be.AppendUint32(dst, uint32(f.IndexLength))
	dst = be.AppendUint32(dst, f.IndexCRC)
	dst = be.AppendUint64(dst, uint64(f.KeysOffset))
	dst = be.AppendUint32(dst, uint32(f.KeysLength))
	dst = be.AppendUint32(dst, f.KeysCRC)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, FormatVersion)
	return append(dst, footerMagic[:]...)
}

// DecodeFooter decodes the last FooterBytes of an object of objectSize bytes.
func DecodeFooter(b []byte, objectSize int64) (Footer, error) {
	var f Footer
	if len(b) != FooterBytes {
		return f, fmt.Errorf("%w: footer of %d bytes, want %d", ErrCorrupt, len(b), FooterBytes)
	}
	if !bytes.Equal(b[40:], footerMagic[:]) {
		return f, fmt.Errorf("%w: footer magic %q (not a Strata segment object)", ErrCorrupt, b[40:])
	}
	if v := b[39]; v != FormatVersion {
		return f, fmt.Errorf("%w: segment object version %d; this build reads version %d", ErrCorrupt, v, FormatVersion)
	}
	for _, c := range b[32:39] {
		if c != 0 {
			return f, fmt.Errorf("%w: reserved footer bytes are not zero", ErrCorrupt)
		}
	}
	be := binary.BigEndian
	f.IndexOffset = int64(be.Uint64(b[0:]))
	f.IndexLength = int64(be.Uint32(b[8:]))
	f.IndexCRC = be.Uint32(b[12:])
	f.KeysOffset = int64(be.Uint64(b[16:]))
	f.KeysLength = int64(be.Uint32(b[24:]))
	f.KeysCRC = be.Uint32(b[28:])
	limit := objectSize - FooterBytes
	if f.IndexOffset < 0 || f.IndexOffset > limit || f.IndexLength > limit-f.IndexOffset ||
		f.KeysOffset < 0 || f.KeysOffset > limit || f.KeysLength > limit-f.KeysOffset {
		return f, fmt.Errorf("%w: footer sections [%d+%d] [%d+%d] outside object of %d bytes", ErrCorrupt,
			f.IndexOffset, f.IndexLength, f.KeysOffset, f.KeysLength, objectSize)
	}
	return f, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendIndex(dst []byte, idx *SegmentIndex) []byte {
	dst = binary.AppendVarint(dst, idx.Base)
	dst = binary.AppendVarint(dst, idx.End)
	dst = binary.AppendUvarint(dst, uint64(len(idx.Queues)))
	for i := range idx.Queues {
		q := &idx.Queues[i]
		dst = appendString(dst, q.Topic)
		dst = binary.AppendVarint(dst, int64(q.QueueID))
		for _, v := range []int64{q.FirstOffset, q.LastOffset, q.FirstTime, q.LastTime, q.Count, q.RawBytes} {
			dst = binary.AppendVarint(dst, v)
		}
		dst = appendString(dst, q.Object)
		dst = binary.AppendUvarint(dst, uint64(len(q.Blocks)))
		for _, b := range q.Blocks {
			for _, v := range []int64{b.Offset, b.Size, b.RawSize, b.FirstOffset, b.Count, b.FirstTime, b.MaxTime} {
				dst = binary.AppendVarint(dst, v)
			}
		}
	}
	return dst
}

// keysSize is the length appendKeys gives keys.
func keysSize(keys []QueueKeys) int {
	n := uvarintLen(uint64(len(keys)))
	for _, qk := range keys {
		for _, list := range [][]KeyEntry{qk.Keys, qk.UniqKeys} {
			n += uvarintLen(uint64(len(list)))
			for _, k := range list {
				n += uvarintLen(uint64(len(k.Key))) + len(k.Key) + varintLen(k.QueueOffset)
			}
		}
	}
	return n
}

// uvarintLen is the length of binary.AppendUvarint's encoding of x.
func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// varintLen is the length of binary.AppendVarint's encoding of x.
func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

func appendKeys(dst []byte, keys []QueueKeys) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, qk := range keys {
		for _, list := range [][]KeyEntry{qk.Keys, qk.UniqKeys} {
			dst = binary.AppendUvarint(dst, uint64(len(list)))
			for _, k := range list {
				dst = appendString(dst, k.Key)
				dst = binary.AppendVarint(dst, k.QueueOffset)
			}
		}
	}
	return dst
}

// decoder reads varint-encoded sections with bounds checks; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || (n > 1 && d.b[n-1] == 0) {
		d.fail(what) // a padded (non-minimal) varint would let two byte strings mean one index
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a list length and checks it against the bytes left, each element taking at
// least minBytes, so a corrupt count cannot make the decoder allocate without limit.
func (d *decoder) count(what string, minBytes int) int {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || (n > 1 && d.b[n-1] == 0) || v > uint64(len(d.b)-n)/uint64(minBytes) {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return int(v)
}

func (d *decoder) str(what string) string {
	n := d.count(what, 1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// DecodeIndex decodes an index section.
func DecodeIndex(b []byte) (*SegmentIndex, error) {
	d := decoder{b: b}
	idx := &SegmentIndex{Base: d.varint("base"), End: d.varint("end")}
	n := d.count("queue count", 12)
	idx.Queues = make([]QueueRun, 0, n)
	for range n {
		q := QueueRun{Topic: d.str("topic")}
		qid := d.varint("queue id")
		if qid < math.MinInt32 || qid > math.MaxInt32 {
			d.fail("queue id")
		}
		q.QueueID = int32(qid)
		q.FirstOffset, q.LastOffset = d.varint("first offset"), d.varint("last offset")
		q.FirstTime, q.LastTime = d.varint("first time"), d.varint("last time")
		q.Count, q.RawBytes = d.varint("count"), d.varint("raw bytes")
		q.Object = d.str("object")
		nb := d.count("block count", 7)
		q.Blocks = make([]BlockRef, 0, nb)
		for range nb {
			var br BlockRef
			for _, p := range []*int64{&br.Offset, &br.Size, &br.RawSize, &br.FirstOffset, &br.Count, &br.FirstTime, &br.MaxTime} {
				*p = d.varint("block")
			}
			if br.Offset < 0 || br.Size < 4 || br.RawSize < 0 || br.RawSize > maxBlockRawBytes || br.Count <= 0 {
				d.fail("block reference")
			}
			q.Blocks = append(q.Blocks, br)
		}
		if d.err != nil {
			return nil, fmt.Errorf("index queue %d: %w", len(idx.Queues), d.err)
		}
		if q.Topic == "" || q.LastOffset < q.FirstOffset || q.Count <= 0 || len(q.Blocks) == 0 {
			return nil, fmt.Errorf("%w: index queue %q/%d: inconsistent ranges", ErrCorrupt, q.Topic, q.QueueID)
		}
		idx.Queues = append(idx.Queues, q)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("index length (trailing bytes)")
	}
	if d.err != nil {
		return nil, d.err
	}
	return idx, nil
}

// DecodeKeys decodes a keys section; it holds one QueueKeys per queue of the index.
func DecodeKeys(b []byte) ([]QueueKeys, error) {
	d := decoder{b: b}
	n := d.count("keys queue count", 2)
	out := make([]QueueKeys, 0, n)
	for range n {
		var qk QueueKeys
		for _, list := range []*[]KeyEntry{&qk.Keys, &qk.UniqKeys} {
			m := d.count("key count", 2)
			*list = make([]KeyEntry, 0, m)
			for range m {
				k := KeyEntry{Key: d.str("key")}
				k.QueueOffset = d.varint("key offset")
				*list = append(*list, k)
			}
		}
		if d.err != nil {
			return nil, d.err
		}
		out = append(out, qk)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("keys length (trailing bytes)")
	}
	if d.err != nil {
		return nil, d.err
	}
	return out, nil
}

// checkSection verifies a section against the CRC32C the footer or manifest gives.
func checkSection(b []byte, crc uint32, what string) error {
	if got := crc32c(b); got != crc {
		return fmt.Errorf("%w: %s checksum %08x, footer says %08x", ErrCorrupt, what, got, crc)
	}
	return nil
}

// DecodeSegmentObject decodes a whole segment object (footer, index and keys). It serves
// tools and tests; the cold reader fetches sections with ranged reads instead.
func DecodeSegmentObject(obj []byte) (*SegmentIndex, []QueueKeys, error) {
	if len(obj) < FooterBytes {
		return nil, nil, fmt.Errorf("%w: object of %d bytes is shorter than a footer", ErrCorrupt, len(obj))
	}
	f, err := DecodeFooter(obj[len(obj)-FooterBytes:], int64(len(obj)))
	if err != nil {
		return nil, nil, err
	}
	ib := obj[f.IndexOffset : f.IndexOffset+f.IndexLength]
	if err := checkSection(ib, f.IndexCRC, "index"); err != nil {
		return nil, nil, err
	}
	idx, err := DecodeIndex(ib)
	if err != nil {
		return nil, nil, err
	}
	kb := obj[f.KeysOffset : f.KeysOffset+f.KeysLength]
	if err := checkSection(kb, f.KeysCRC, "keys"); err != nil {
		return nil, nil, err
	}
	keys, err := DecodeKeys(kb)
	if err != nil {
		return nil, nil, err
	}
	if len(keys) != len(idx.Queues) {
		return nil, nil, fmt.Errorf("%w: keys section has %d queues, index %d", ErrCorrupt, len(keys), len(idx.Queues))
	}
	return idx, keys, nil
}

// SplitRecords walks the records of a decoded block and calls fn with each record and its
// header. A record that does not parse is reported as corrupt.
func SplitRecords(raw []byte, fn func(rec []byte, h *message.RecordHeader) (bool, error)) error {
	return splitRecordsFrom(raw, 0, true, func(rec []byte, _ message.RecordEntry, h *message.RecordHeader) (bool, error) {
		return fn(rec, h)
	})
}

// splitRecordsFrom is SplitRecords for the records at queue offset from and later, each with
// its entry: those before it are stepped over by their size alone, not parsed (the block's
// checksum was verified), so a read that starts mid-block does not pay for parsing the
// records it skips. With parse false, h is nil for every record PeekRecordEntry validates,
// so a read that needs no header fields allocates nothing per record.
func splitRecordsFrom(raw []byte, from int64, parse bool, fn func(rec []byte, e message.RecordEntry, h *message.RecordHeader) (bool, error)) error {
	for off := 0; off < len(raw); {
		if size, qo, ok := message.PeekRecord(raw[off:]); ok && qo < from {
			off += size
			continue
		}
		var e message.RecordEntry
		var h *message.RecordHeader
		ok := false
		if !parse {
			e, ok = message.PeekRecordEntry(raw[off:])
		}
		if !ok {
			ph, err := message.ParseRecordHeader(raw[off:])
			if err != nil {
				return fmt.Errorf("%w: record at block byte %d: %v", ErrCorrupt, off, err)
			}
			h = &ph
			e = message.RecordEntry{TotalSize: ph.TotalSize, QueueOffset: ph.QueueOffset, CommitLogOffset: ph.CommitLogOffset, StoreTimestamp: ph.StoreTimestamp}
		}
		rec := raw[off : off+int(e.TotalSize)]
		off += int(e.TotalSize)
		more, err := fn(rec, e, h)
		if err != nil || !more {
			return err
		}
	}
	return nil
}
