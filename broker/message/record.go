package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"slices"
)

// Magic codes of the stored record. Strata writes only V1: the official Go client cannot
// parse V2 (PROTOCOL.md §4.2).
const (
	MagicCodeV1    int32 = -626843481 // 0xDAA320A7
	MagicCodeV2    int32 = -626843477 // 0xDAA320AB, read only
	BlankMagicCode int32 = -875286124 // 0xCBD43194, end-of-file padding in RocketMQ's log
)

// System flag bits (PROTOCOL.md §4.4).
const (
	FlagCompressed          int32 = 0x1
	FlagMultiTags           int32 = 0x2
	FlagTransactionPrepared int32 = 0x4
	FlagTransactionCommit   int32 = 0x8
	FlagTransactionRollback int32 = 0xC
	FlagTransactionMask     int32 = 0xC
	FlagBornHostV6          int32 = 0x10
	FlagStoreHostV6         int32 = 0x20
)

// Limits of the V1 layout.
const (
	MaxTopicBytes      = 127
	MaxPropertiesBytes = 32767
	// MinRecordBytes is the size of a V1 record with IPv4 hosts and empty body, topic and
	// properties.
	MinRecordBytes = 91
)

// Field positions that do not depend on the host sizes.
const (
	posTotalSize   = 0
	posMagic       = 4
	posBodyCRC     = 8
	posQueueID     = 12
	posFlag        = 16
	posQueueOffset = 20
	posCommitLog   = 28
	posSysFlag     = 36
	posBornTime    = 40
	posBornHost    = 48
)

// ErrMalformed is wrapped by every decoding error, so callers can tell bad bytes from I/O.
var ErrMalformed = errors.New("malformed message record")

// Message is one RocketMQ message with the fields the stored record carries.
type Message struct {
	Topic                     string
	QueueID                   int32
	Flag                      int32
	QueueOffset               int64
	CommitLogOffset           int64
	SysFlag                   int32
	BornTimestamp             int64
	BornHost                  netip.AddrPort
	StoreTimestamp            int64
	StoreHost                 netip.AddrPort
	ReconsumeTimes            int32
	PreparedTransactionOffset int64
	Body                      []byte
	Properties                map[string]string
}

// Tags is the message's TAGS property.
func (m *Message) Tags() string { return m.Properties[PropertyTags] }

// Keys are the message's space-separated KEYS.
func (m *Message) Keys() []string { return SplitKeys(m.Properties[PropertyKeys]) }

// UniqKey is the client-assigned message id (UNIQ_KEY), or "".
func (m *Message) UniqKey() string { return m.Properties[PropertyUniqKey] }

// OffsetMsgID is the broker-assigned id: store host and commit-log offset.
func (m *Message) OffsetMsgID() string { return OffsetMsgID(m.StoreHost, m.CommitLogOffset) }

func hostBytes(h netip.AddrPort) int {
	if a := h.Addr(); a.IsValid() && !a.Is4() && !a.Is4In6() {
		return 16
	}
	return 4
}

func appendHost(dst []byte, h netip.AddrPort) []byte {
	a := h.Addr()
	switch {
	case !a.IsValid():
		dst = append(dst, 0, 0, 0, 0)
	case a.Is4() || a.Is4In6():
		b := a.Unmap().As4()
		dst = append(dst, b[:]...)
	default:
		b := a.As16()
		dst = append(dst, b[:]...)
	}
	return binary.BigEndian.AppendUint32(dst, uint32(h.Port()))
}

// EncodedSize is the number of bytes AppendEncoded writes for m, or an error if m does not
// fit the V1 layout.
func (m *Message) EncodedSize() (int, error) {
	props := EncodeProperties(m.Properties)
	return m.encodedSize(len(props))
}

func (m *Message) encodedSize(propLen int) (int, error) {
	if len(m.Topic) == 0 || len(m.Topic) > MaxTopicBytes {
		return 0, fmt.Errorf("topic %q: length %d not in 1..%d", m.Topic, len(m.Topic), MaxTopicBytes)
	}
	if propLen > MaxPropertiesBytes {
		return 0, fmt.Errorf("properties of %d bytes exceed the %d-byte limit of the record layout", propLen, MaxPropertiesBytes)
	}
	return MinRecordBytes - 8 + hostBytes(m.BornHost) + hostBytes(m.StoreHost) + len(m.Body) + len(m.Topic) + propLen, nil
}

// AppendEncoded appends m in the stored record layout (V1, FORMAT.md) to dst. The body CRC
// and the host-family bits of SysFlag are computed here; everything else is taken from m.
func (m *Message) AppendEncoded(dst []byte) ([]byte, error) {
	props := EncodeProperties(m.Properties)
	size, err := m.encodedSize(len(props))
	if err != nil {
		return dst, err
	}
	dst = m.appendFixed(slices.Grow(dst, size), size)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(props)))
	dst = append(dst, props...)
	return dst, nil
}

// Encode returns m in the stored record layout.
func (m *Message) Encode() ([]byte, error) { return m.AppendEncoded(nil) }

// recordReader walks a record's fields with bounds checks.
type recordReader struct {
	b   []byte
	pos int
	err error
}

func (r *recordReader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.pos+n > len(r.b) {
		r.err = fmt.Errorf("%w: %s at byte %d needs %d bytes, record has %d", ErrMalformed, field, r.pos, n, len(r.b))
		return nil
	}
	v := r.b[r.pos : r.pos+n]
	r.pos += n
	return v
}

func (r *recordReader) u32(field string) uint32 {
	if v := r.take(4, field); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *recordReader) u64(field string) uint64 {
	if v := r.take(8, field); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *recordReader) host(v6 bool, field, portField string) netip.AddrPort {
	n := 4
	if v6 {
		n = 16
	}
	ip := r.take(n, field)
	port := r.u32(portField)
	if r.err != nil {
		return netip.AddrPort{}
	}
	addr, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(addr, uint16(port))
}

// RecordHeader is what an index needs from a stored record, read without copying the body.
type RecordHeader struct {
	TotalSize       int32
	QueueID         int32
	SysFlag         int32
	QueueOffset     int64
	CommitLogOffset int64
	BornTimestamp   int64
	StoreTimestamp  int64
	BodyCRC         uint32
	Topic           string
	Tags            string
	Keys            []string
	UniqKey         string
	// Properties is the record's encoded properties string ("k\x01v\x02...", see
	// properties.go), shared with Topic's allocation: property filters read it in place.
	Properties string
	// BodyOffset and BodyLen locate the body inside the record.
	BodyOffset, BodyLen int
}

// ParseRecordHeader validates the record at the start of rec (every length against the
// record's total size) and returns its indexable fields. Topic, Tags, UniqKey and Properties
// share one allocation (a copy of the topic and properties bytes).
func ParseRecordHeader(rec []byte) (RecordHeader, error) {
	if h, ok := parseRecordHeaderFast(rec); ok {
		return h, nil
	}
	return parseRecordHeaderSlow(rec)
}

// PeekRecord reads the total size and queue offset at the start of a stored record without
// checking anything else, for skipping records of a block whose checksum was verified. ok
// is false when rec is too short for them or the size is not one of a record that fits rec.
func PeekRecord(rec []byte) (size int, queueOffset int64, ok bool) {
	if len(rec) < MinRecordBytes {
		return 0, 0, false
	}
	size = int(int32(binary.BigEndian.Uint32(rec)))
	if size < MinRecordBytes || size > len(rec) {
		return 0, 0, false
	}
	return size, int64(binary.BigEndian.Uint64(rec[posQueueOffset:])), true
}

// RecordEntry holds the fields of a stored record that its consume-queue entry holds, less
// the tag code: what a reader of a queue needs to place the record.
type RecordEntry struct {
	TotalSize       int32
	QueueOffset     int64
	CommitLogOffset int64
	StoreTimestamp  int64
}

// PeekRecordEntry validates the record at the start of rec as ParseRecordHeader does (every
// length against the record's total size) and returns its entry, without allocating. ok is
// false for anything ParseRecordHeader refuses and for V2 records, which the caller parses
// with ParseRecordHeader.
func PeekRecordEntry(rec []byte) (e RecordEntry, ok bool) {
	if _, ok := recordPropertiesFast(rec); !ok {
		return e, false
	}
	be := binary.BigEndian
	sys := int32(be.Uint32(rec[posSysFlag:]))
	return RecordEntry{
		TotalSize: int32(be.Uint32(rec)), QueueOffset: int64(be.Uint64(rec[posQueueOffset:])),
		CommitLogOffset: int64(be.Uint64(rec[posCommitLog:])),
		StoreTimestamp:  int64(be.Uint64(rec[posBornHost+hostLen(sys&FlagBornHostV6 != 0):])),
	}, true
}

// RecordProperties returns the encoded properties of the record at the start of rec, as a
// slice of rec: property filters read it in place, with no copy. It accepts exactly the
// records ParseRecordHeader accepts.
func RecordProperties(rec []byte) ([]byte, error) {
	if props, ok := recordPropertiesFast(rec); ok {
		return props, nil
	}
	_, props, n, err := decode(rec, false) // V2 and every error
	if err != nil {
		return nil, err
	}
	return rec[n-len(props) : n], nil
}

// recordPropertiesFast is parseRecordHeaderFast's walk, without the header.
func recordPropertiesFast(rec []byte) ([]byte, bool) {
	total, topicOff, topicLen, ok := locateTopic(rec)
	if !ok {
		return nil, false
	}
	return rec[topicOff+topicLen+2 : total : total], true
}

// locateTopic finds the topic of the V1 record at the start of rec, checking every length
// against the record's total size as ParseRecordHeader does; ok is false for anything it
// refuses and for V2 records.
func locateTopic(rec []byte) (total, topicOff, topicLen int, ok bool) {
	if len(rec) < MinRecordBytes {
		return 0, 0, 0, false
	}
	be := binary.BigEndian
	total = int(int32(be.Uint32(rec)))
	if total < MinRecordBytes || total > len(rec) || int32(be.Uint32(rec[posMagic:])) != MagicCodeV1 {
		return 0, 0, 0, false
	}
	sys := int32(be.Uint32(rec[posSysFlag:]))
	posBodyLen := posBornHost + hostLen(sys&FlagBornHostV6 != 0) + 8 + hostLen(sys&FlagStoreHostV6 != 0) + 4 + 8
	if posBodyLen+4 > total {
		return 0, 0, 0, false
	}
	bodyLen := int(int32(be.Uint32(rec[posBodyLen:])))
	bodyOff := posBodyLen + 4
	if bodyLen < 0 || bodyLen > total-bodyOff-1 {
		return 0, 0, 0, false
	}
	topicOff = bodyOff + bodyLen + 1
	topicLen = int(rec[topicOff-1])
	propLenOff := topicOff + topicLen
	if topicLen == 0 || propLenOff+2 > total {
		return 0, 0, 0, false
	}
	propLen := int(int16(be.Uint16(rec[propLenOff:])))
	if propLen < 0 || propLenOff+2+propLen != total {
		return 0, 0, 0, false
	}
	return total, topicOff, topicLen, true
}

// PeekRecordQueue returns the topic (a slice of rec), queue id and total size of the record
// at the start of rec without allocating, checking it as PeekRecordEntry does; ok is false
// for anything ParseRecordHeader refuses and for V2 records.
func PeekRecordQueue(rec []byte) (topic []byte, queueID int32, size int, ok bool) {
	total, topicOff, topicLen, ok := locateTopic(rec)
	if !ok {
		return nil, 0, 0, false
	}
	return rec[topicOff : topicOff+topicLen], int32(binary.BigEndian.Uint32(rec[posQueueID:])), total, true
}

// parseRecordHeaderFast reads the header in place, without building a Message. It accepts
// exactly the records decode accepts (FuzzParseRecordHeader checks this); on anything it
// would refuse it reports !ok and parseRecordHeaderSlow produces the error.
func parseRecordHeaderFast(rec []byte) (RecordHeader, bool) {
	var h RecordHeader
	if len(rec) < MinRecordBytes {
		return h, false
	}
	be := binary.BigEndian
	total := int(int32(be.Uint32(rec)))
	if total < MinRecordBytes || total > len(rec) || int32(be.Uint32(rec[posMagic:])) != MagicCodeV1 {
		return h, false // V2 and every error take the slow path
	}
	rec = rec[:total]
	sys := int32(be.Uint32(rec[posSysFlag:]))
	posStoreTime := posBornHost + hostLen(sys&FlagBornHostV6 != 0)
	posBodyLen := posStoreTime + 8 + hostLen(sys&FlagStoreHostV6 != 0) + 4 + 8
	if posBodyLen+4 > total {
		return h, false
	}
	bodyLen := int(int32(be.Uint32(rec[posBodyLen:])))
	bodyOff := posBodyLen + 4
	if bodyLen < 0 || bodyLen > total-bodyOff-1 { // room for the topic length byte
		return h, false
	}
	topicOff := bodyOff + bodyLen + 1
	topicLen := int(rec[topicOff-1])
	propLenOff := topicOff + topicLen
	if topicLen == 0 || propLenOff+2 > total {
		return h, false
	}
	propLen := int(int16(be.Uint16(rec[propLenOff:])))
	if propLen < 0 || propLenOff+2+propLen != total {
		return h, false
	}
	strs := string(rec[topicOff:total])
	props := strs[topicLen+2:]
	h = RecordHeader{
		TotalSize: int32(total), QueueID: int32(be.Uint32(rec[posQueueID:])), SysFlag: sys,
		QueueOffset: int64(be.Uint64(rec[posQueueOffset:])), CommitLogOffset: int64(be.Uint64(rec[posCommitLog:])),
		BornTimestamp: int64(be.Uint64(rec[posBornTime:])), StoreTimestamp: int64(be.Uint64(rec[posStoreTime:])),
		BodyCRC: be.Uint32(rec[posBodyCRC:]), Topic: strs[:topicLen], Properties: props, BodyOffset: bodyOff, BodyLen: bodyLen,
	}
	h.Tags, _ = propertyValue(props, PropertyTags)
	if keys, ok := propertyValue(props, PropertyKeys); ok {
		h.Keys = SplitKeys(keys)
	}
	h.UniqKey, _ = propertyValue(props, PropertyUniqKey)
	return h, true
}

// parseRecordHeaderSlow is ParseRecordHeader by way of the full decoder.
func parseRecordHeaderSlow(rec []byte) (RecordHeader, error) {
	var h RecordHeader
	m, props, n, err := decode(rec, false)
	if err != nil {
		return h, err
	}
	h = RecordHeader{
		TotalSize: int32(n), QueueID: m.QueueID, SysFlag: m.SysFlag, QueueOffset: m.QueueOffset,
		CommitLogOffset: m.CommitLogOffset, BornTimestamp: m.BornTimestamp, StoreTimestamp: m.StoreTimestamp,
		BodyCRC: binary.BigEndian.Uint32(rec[posBodyCRC:]), Topic: m.Topic, Properties: props,
	}
	h.BodyOffset, h.BodyLen = bodyPos(rec, m.SysFlag)
	h.Tags, _ = propertyValue(props, PropertyTags)
	if keys, ok := propertyValue(props, PropertyKeys); ok {
		h.Keys = SplitKeys(keys)
	}
	h.UniqKey, _ = propertyValue(props, PropertyUniqKey)
	return h, nil
}

func bodyPos(rec []byte, sys int32) (int, int) {
	p := posBornHost + hostLen(sys&FlagBornHostV6 != 0) + 8 + hostLen(sys&FlagStoreHostV6 != 0) + 4 + 8
	return p + 4, int(binary.BigEndian.Uint32(rec[p:]))
}

func hostLen(v6 bool) int {
	if v6 {
		return 20
	}
	return 8
}

// Decode decodes the record at the start of rec and returns it with the bytes it used.
// The message's Body aliases rec.
func Decode(rec []byte) (*Message, int, error) {
	m, _, n, err := decode(rec, true)
	return m, n, err
}

// DecodeAll decodes records placed back to back, as in a pull response body.
// The messages share one allocation, and messages of one topic share its string: a pull of
// 256 records is three allocations plus the properties, not one per message and field.
func DecodeAll(buf []byte) ([]*Message, error) {
	var d Decoder
	return d.DecodeAll(buf)
}

// A Decoder decodes pull bodies as DecodeAll does, into arrays it keeps from one call to the
// next: each DecodeAll overwrites the messages the one before returned, their properties
// maps included, so it is for a caller that is done with those by then (a consumer that
// handles one pull at a time). The zero Decoder is ready for use.
type Decoder struct {
	msgs []Message
	ptrs []*Message
}

// DecodeAll decodes buf's records, reusing the messages of the previous call.
func (d *Decoder) DecodeAll(buf []byte) ([]*Message, error) {
	n := countRecords(buf)
	if cap(d.msgs) < n || d.ptrs == nil {
		d.msgs, d.ptrs = make([]Message, n), make([]*Message, 0, n)
	}
	slab, out := d.msgs[:cap(d.msgs)], d.ptrs[:0]
	var topic string
	for off := 0; off < len(buf); {
		var m *Message
		if len(out) < len(slab) {
			m = &slab[len(out)]
			*m = Message{Properties: m.Properties} // the previous message's map, refilled
		} else {
			m = &Message{}
		}
		_, k, err := decodeInto(m, buf[off:], true, topic)
		if err != nil {
			d.ptrs = out[:0]
			return out, fmt.Errorf("record at byte %d: %w", off, err)
		}
		topic = m.Topic
		out = append(out, m)
		off += k
	}
	d.ptrs = out[:0]
	return out, nil
}

// countRecords counts the records of buf by their total-size fields, up to the first that
// does not fit; decoding checks them properly.
func countRecords(buf []byte) int {
	n := 0
	for off := 0; len(buf)-off >= 4; n++ {
		total := int(int32(binary.BigEndian.Uint32(buf[off:])))
		if total < MinRecordBytes || total > len(buf)-off {
			return n + 1
		}
		off += total
	}
	return n
}

func decode(rec []byte, withProps bool) (*Message, string, int, error) {
	m := &Message{}
	props, n, err := decodeInto(m, rec, withProps, "")
	if err != nil {
		return nil, "", 0, err
	}
	return m, props, n, nil
}

// decodeInto decodes the record at the start of rec into m. topicHint is a topic the caller
// already holds as a string (the previous record's); an equal topic reuses it. A properties
// map m already holds is cleared and refilled.
func decodeInto(m *Message, rec []byte, withProps bool, topicHint string) (string, int, error) {
	if len(rec) < 8 {
		return "", 0, fmt.Errorf("%w: %d bytes, shorter than a record header", ErrMalformed, len(rec))
	}
	total := int(int32(binary.BigEndian.Uint32(rec)))
	if total < MinRecordBytes || total > len(rec) {
		return "", 0, fmt.Errorf("%w: total size %d outside %d..%d", ErrMalformed, total, MinRecordBytes, len(rec))
	}
	magic := int32(binary.BigEndian.Uint32(rec[posMagic:]))
	if magic != MagicCodeV1 && magic != MagicCodeV2 {
		return "", 0, fmt.Errorf("%w: magic code %#x", ErrMalformed, uint32(magic))
	}
	r := recordReader{b: rec[:total], pos: posBodyCRC}
	r.u32("body crc")
	m.QueueID = int32(r.u32("queue id"))
	m.Flag = int32(r.u32("flag"))
	m.QueueOffset = int64(r.u64("queue offset"))
	m.CommitLogOffset = int64(r.u64("commit-log offset"))
	m.SysFlag = int32(r.u32("sys flag"))
	m.BornTimestamp = int64(r.u64("born timestamp"))
	m.BornHost = r.host(m.SysFlag&FlagBornHostV6 != 0, "born host", "born host port")
	m.StoreTimestamp = int64(r.u64("store timestamp"))
	m.StoreHost = r.host(m.SysFlag&FlagStoreHostV6 != 0, "store host", "store host port")
	m.ReconsumeTimes = int32(r.u32("reconsume times"))
	m.PreparedTransactionOffset = int64(r.u64("prepared transaction offset"))
	bodyLen := int(int32(r.u32("body length")))
	m.Body = r.take(bodyLen, "body")
	var topicLen int
	if magic == MagicCodeV2 {
		if v := r.take(2, "topic length"); v != nil {
			topicLen = int(binary.BigEndian.Uint16(v))
		}
	} else if v := r.take(1, "topic length"); v != nil {
		topicLen = int(v[0])
	}
	if t := r.take(topicLen, "topic"); string(t) == topicHint {
		m.Topic = topicHint
	} else {
		m.Topic = string(t)
	}
	var propLen int
	if v := r.take(2, "properties length"); v != nil {
		propLen = int(int16(binary.BigEndian.Uint16(v)))
	}
	props := string(r.take(propLen, "properties"))
	if r.err != nil {
		return "", 0, r.err
	}
	if r.pos != total {
		return "", 0, fmt.Errorf("%w: fields end at byte %d but total size is %d", ErrMalformed, r.pos, total)
	}
	if m.Topic == "" {
		return "", 0, fmt.Errorf("%w: empty topic", ErrMalformed)
	}
	if withProps {
		m.Properties = decodePropertiesInto(m.Properties, props)
	}
	return props, total, nil
}

// PatchAppendFields writes the fields a store assigns at append time into an encoded record,
// in place.
func PatchAppendFields(rec []byte, queueOffset, commitLogOffset, storeTimestamp int64) error {
	if len(rec) < MinRecordBytes {
		return fmt.Errorf("%w: %d bytes, shorter than a record", ErrMalformed, len(rec))
	}
	sys := int32(binary.BigEndian.Uint32(rec[posSysFlag:]))
	posStoreTime := posBornHost + hostLen(sys&FlagBornHostV6 != 0)
	if posStoreTime+8 > len(rec) {
		return fmt.Errorf("%w: store timestamp beyond record end", ErrMalformed)
	}
	be := binary.BigEndian
	be.PutUint64(rec[posQueueOffset:], uint64(queueOffset))
	be.PutUint64(rec[posCommitLog:], uint64(commitLogOffset))
	be.PutUint64(rec[posStoreTime:], uint64(storeTimestamp))
	return nil
}

// VerifyBodyCRC reports whether the body CRC field matches the body.
func VerifyBodyCRC(rec []byte) error {
	h, err := ParseRecordHeader(rec)
	if err != nil {
		return err
	}
	if got := crc32.ChecksumIEEE(rec[h.BodyOffset : h.BodyOffset+h.BodyLen]); got != h.BodyCRC {
		return fmt.Errorf("%w: body crc %08x, stored %08x", ErrMalformed, got, h.BodyCRC)
	}
	return nil
}
