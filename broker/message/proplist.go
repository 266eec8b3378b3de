package message

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strings"
)

// MaxPropertyListLen is how many distinct keys a PropertyList holds. Producers send a handful
// (UNIQ_KEY, WAIT, TAGS, KEYS, ...); more than this takes the map path.
const MaxPropertyListLen = 16

// PropertyList is a small property set kept as substrings of the encoded string it was parsed
// from, sorted by key. It has the semantics of the map DecodeProperties builds (pieces without
// a separator or with an empty key are skipped; a repeated key keeps its last value) and
// encodes to exactly the bytes EncodeProperties writes for that map, without building the map:
// the send path uses it to store a message's properties with no per-key allocation. The zero
// value is empty and ready to use; it is meant to live on the stack.
type PropertyList struct {
	n     int
	items [MaxPropertyListLen]propItem
}

type propItem struct{ key, value string }

// ParsePropertyList parses an encoded properties string. ok is false when s has more than
// MaxPropertyListLen distinct keys; use DecodeProperties then.
func ParsePropertyList(s string) (l PropertyList, ok bool) {
	for len(s) > 0 {
		var piece string
		piece, s = nextProperty(s)
		if i := strings.IndexByte(piece, nameValueSeparator); i > 0 {
			if !l.Set(piece[:i], piece[i+1:]) {
				return l, false
			}
		}
	}
	return l, true
}

// Len is the number of properties.
func (l *PropertyList) Len() int { return l.n }

// search returns the index of key, or where it would be inserted, and whether it is present.
func (l *PropertyList) search(key string) (int, bool) {
	for i := 0; i < l.n; i++ {
		if c := strings.Compare(l.items[i].key, key); c >= 0 {
			return i, c == 0
		}
	}
	return l.n, false
}

// Get returns the value of key.
func (l *PropertyList) Get(key string) (string, bool) {
	if i, ok := l.search(key); ok {
		return l.items[i].value, true
	}
	return "", false
}

// Set sets key (non-empty) to value. It reports false, changing nothing, when the list is full.
func (l *PropertyList) Set(key, value string) bool {
	i, ok := l.search(key)
	if ok {
		l.items[i].value = value
		return true
	}
	if l.n == len(l.items) {
		return false
	}
	copy(l.items[i+1:l.n+1], l.items[i:l.n])
	l.items[i] = propItem{key, value}
	l.n++
	return true
}

// EncodedLen is the length of the encoded string.
func (l *PropertyList) EncodedLen() int {
	n := 0
	for i := 0; i < l.n; i++ {
		n += len(l.items[i].key) + len(l.items[i].value) + 2
	}
	return n
}

// AppendEncoded appends the encoded string (EncodeProperties layout, keys sorted) to dst.
func (l *PropertyList) AppendEncoded(dst []byte) []byte {
	for i := 0; i < l.n; i++ {
		dst = append(dst, l.items[i].key...)
		dst = append(dst, nameValueSeparator)
		dst = append(dst, l.items[i].value...)
		dst = append(dst, propertySeparator)
	}
	return dst
}

// Map returns the properties as a map, as DecodeProperties would.
func (l *PropertyList) Map() map[string]string {
	m := make(map[string]string, l.n)
	for i := 0; i < l.n; i++ {
		m[l.items[i].key] = l.items[i].value
	}
	return m
}

// AppendEncodedList is AppendEncoded with the properties taken from props instead of
// m.Properties (which is ignored): the output is byte for byte what AppendEncoded writes when
// m.Properties holds props' map. dst grows at most once.
func (m *Message) AppendEncodedList(dst []byte, props *PropertyList) ([]byte, error) {
	propLen := props.EncodedLen()
	size, err := m.encodedSize(propLen)
	if err != nil {
		return dst, err
	}
	dst = m.appendFixed(slices.Grow(dst, size), size)
	dst = binary.BigEndian.AppendUint16(dst, uint16(propLen))
	return props.AppendEncoded(dst), nil
}

// appendFixed appends every field of the record but the properties (length and bytes).
func (m *Message) appendFixed(dst []byte, size int) []byte {
	sys := m.SysFlag &^ (FlagBornHostV6 | FlagStoreHostV6)
	if hostBytes(m.BornHost) == 16 {
		sys |= FlagBornHostV6
	}
	if hostBytes(m.StoreHost) == 16 {
		sys |= FlagStoreHostV6
	}
	be := binary.BigEndian
	dst = be.AppendUint32(dst, uint32(size))
	dst = be.AppendUint32(dst, 0xDAA320A7) // MagicCodeV1
	dst = be.AppendUint32(dst, crc32.ChecksumIEEE(m.Body))
	dst = be.AppendUint32(dst, uint32(m.QueueID))
	dst = be.AppendUint32(dst, uint32(m.Flag))
	dst = be.AppendUint64(dst, uint64(m.QueueOffset))
	dst = be.AppendUint64(dst, uint64(m.CommitLogOffset))
	dst = be.AppendUint32(dst, uint32(sys))
	dst = be.AppendUint64(dst, uint64(m.BornTimestamp))
	dst = appendHost(dst, m.BornHost)
	dst = be.AppendUint64(dst, uint64(m.StoreTimestamp))
	dst = appendHost(dst, m.StoreHost)
	dst = be.AppendUint32(dst, uint32(m.ReconsumeTimes))
	dst = be.AppendUint64(dst, uint64(m.PreparedTransactionOffset))
	dst = be.AppendUint32(dst, uint32(len(m.Body)))
	dst = append(dst, m.Body...)
	dst = append(dst, byte(len(m.Topic)))
	return append(dst, m.Topic...)
}
