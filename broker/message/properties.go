package message

import (
	"sort"
	"strings"
)

// Property keys with a meaning to the broker (RocketMQ's MessageConst names).
const (
	PropertyTags              = "TAGS"
	PropertyKeys              = "KEYS"
	PropertyUniqKey           = "UNIQ_KEY"
	PropertyDelayLevel        = "DELAY"
	PropertyTransactionPrep   = "TRAN_MSG"
	PropertyProducerGroup     = "PGROUP"
	PropertyTransactionID     = "__transactionId__"
	PropertyRealTopic         = "REAL_TOPIC"
	PropertyRealQueueID       = "REAL_QID"
	PropertyRetryTopic        = "RETRY_TOPIC"
	PropertyOriginMessageID   = "ORIGIN_MESSAGE_ID"
	PropertyReconsumeTime     = "RECONSUME_TIME"
	PropertyMaxReconsumeTimes = "MAX_RECONSUME_TIMES"
	PropertyTimerDeliverMs    = "TIMER_DELIVER_MS"
	PropertyShardingKey       = "SHARDING_KEY"
)

const (
	nameValueSeparator = '\x01'
	propertySeparator  = '\x02'
)

// EncodeProperties renders properties as RocketMQ's "k\x01v\x02" string. Keys are sorted so
// the same map always encodes to the same bytes.
func EncodeProperties(props map[string]string) string {
	if len(props) == 0 {
		return ""
	}
	keys := make([]string, 0, len(props))
	n := 0
	for k, v := range props {
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	sort.Strings(keys)
	var b strings.Builder
	b.Grow(n)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(nameValueSeparator)
		b.WriteString(props[k])
		b.WriteByte(propertySeparator)
	}
	return b.String()
}

// nextProperty splits the first "key\x01value" piece off an encoded properties string.
func nextProperty(s string) (piece, rest string) {
	if i := strings.IndexByte(s, propertySeparator); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// DecodeProperties parses a properties string. Pieces without a name/value separator are
// skipped, as the Go and Java clients do; it never fails.
func DecodeProperties(s string) map[string]string {
	return decodePropertiesInto(nil, s)
}

// decodePropertiesInto is DecodeProperties into props, cleared first, or a new map when props
// is nil.
func decodePropertiesInto(props map[string]string, s string) map[string]string {
	if props == nil {
		props = make(map[string]string)
	} else {
		clear(props)
	}
	for len(s) > 0 {
		var piece string
		piece, s = nextProperty(s)
		if k, v, ok := strings.Cut(piece, string(nameValueSeparator)); ok && k != "" {
			props[k] = v
		}
	}
	return props
}

// propertyValue finds one key in an encoded properties string without building a map.
func propertyValue(s, key string) (string, bool) {
	for len(s) > 0 {
		var piece string
		piece, s = nextProperty(s)
		if len(piece) > len(key) && piece[len(key)] == nameValueSeparator && piece[:len(key)] == key {
			return piece[len(key)+1:], true
		}
	}
	return "", false
}

// SplitKeys splits a KEYS property into its space-separated keys, dropping empty ones.
func SplitKeys(keys string) []string {
	return strings.Fields(keys)
}

// TagHashCode is the consume-queue tag code: Java's String.hashCode of the tag (over UTF-16
// code units), sign-extended to 64 bits; 0 for no tag.
func TagHashCode(tag string) int64 {
	var h int32
	for _, r := range tag {
		if r >= 0x10000 {
			r -= 0x10000
			h = 31*h + int32(0xD800+(r>>10))
			h = 31*h + int32(0xDC00+(r&0x3FF))
			continue
		}
		h = 31*h + int32(r)
	}
	return int64(h)
}
