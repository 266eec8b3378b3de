package remoting

import (
	"sort"
	"strconv"
	"unicode/utf8"
)

// A hand-written path for the JSON headers every client sends: a flat object of integers and
// strings plus the extFields object of strings. It is a quarter of the broker's CPU when done
// with encoding/json. Strings may hold escapes (RocketMQ's properties are separated by
// \u0001 and \u0002, which every client writes escaped) and valid UTF-8; the scanner decodes
// them as encoding/json does. Anything else — invalid UTF-8, lone or paired surrogate
// escapes, numbers written as strings, nulls, unknown value types — makes it give up, and
// the general decoder, which accepts every quirk, takes over. FuzzJSONHeaderFastPath checks
// the two agree, FuzzAppendJSONString that the writer matches encoding/json byte for byte.

type jsonScanner struct {
	b          []byte
	pos        int
	pooledMaps bool // extFields go into a PooledExtFields map
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

func (s *jsonScanner) consume(c byte) bool {
	s.skipSpace()
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// knownString returns, as a constant, the header and extFields names and values clients
// send with every request, so reading them allocates nothing. A switch rather than a map:
// most values looked up are not here (groups, topics, timestamps), and the compiler's
// search by length turns them away without hashing them.
func knownString(b []byte) (string, bool) {
	switch string(b) {
	case "code":
		return "code", true
	case "language":
		return "language", true
	case "version":
		return "version", true
	case "opaque":
		return "opaque", true
	case "flag":
		return "flag", true
	case "remark":
		return "remark", true
	case "extFields":
		return "extFields", true
	case "serializeTypeCurrentRPC":
		return "serializeTypeCurrentRPC", true
	case "producerGroup":
		return "producerGroup", true
	case "topic":
		return "topic", true
	case "queueId":
		return "queueId", true
	case "sysFlag":
		return "sysFlag", true
	case "bornTimestamp":
		return "bornTimestamp", true
	case "properties":
		return "properties", true
	case "reconsumeTimes":
		return "reconsumeTimes", true
	case "unitMode":
		return "unitMode", true
	case "maxReconsumeTimes":
		return "maxReconsumeTimes", true
	case "batch":
		return "batch", true
	case "defaultTopic":
		return "defaultTopic", true
	case "defaultTopicQueueNums":
		return "defaultTopicQueueNums", true
	case "consumerGroup":
		return "consumerGroup", true
	case "queueOffset":
		return "queueOffset", true
	case "maxMsgNums":
		return "maxMsgNums", true
	case "commitOffset":
		return "commitOffset", true
	case "suspendTimeoutMillis":
		return "suspendTimeoutMillis", true
	case "subscription":
		return "subscription", true
	case "subVersion":
		return "subVersion", true
	case "expressionType":
		return "expressionType", true
	case "bname":
		return "bname", true
	case "JAVA":
		return "JAVA", true
	case "TBW102":
		return "TBW102", true
	case "TAG":
		return "TAG", true
	case "true":
		return "true", true
	case "false":
		return "false", true
	case "GO":
		return "GO", true
	}
	return "", false
}

// maxKnownString is the length of the longest of knownString's strings.
const maxKnownString = len("serializeTypeCurrentRPC")

// oneByteStrings holds every one-byte ASCII string.
var oneByteStrings = func() (t [utf8.RuneSelf]string) {
	for i := range t {
		t[i] = string(rune(i))
	}
	return t
}()

// plainInterned is plainString for names and small values that repeat on every frame.
func (s *jsonScanner) plainInterned() (string, bool) {
	v, ok := s.plainBytes()
	if !ok {
		return "", false
	}
	if len(v) == 1 && v[0] < utf8.RuneSelf { // V2 headers' keys, digits: no map lookup
		return oneByteStrings[v[0]], true
	}
	if len(v) > maxKnownString { // properties, a long topic or group
		return string(v), true
	}
	if k, hit := knownString(v); hit {
		return k, true
	}
	return string(v), true
}

// plainBytes reads a string. Without escapes it returns the bytes in place, without copying;
// with escapes it returns them decoded into a new slice.
func (s *jsonScanner) plainBytes() ([]byte, bool) {
	s.skipSpace()
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return nil, false
	}
	start := s.pos + 1
	ascii := true
	for i := start; i < len(s.b); i++ {
		c := s.b[i]
		if plainInString[c] {
			continue
		}
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(s.b[start:i]) {
				return nil, false // encoding/json would replace the bad bytes with U+FFFD
			}
			s.pos = i + 1
			return s.b[start:i], true
		case c == '\\':
			return s.escapedBytes(start, i)
		case c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false
}

// escapedBytes decodes the string that began at start and whose first escape is at esc.
func (s *jsonScanner) escapedBytes(start, esc int) ([]byte, bool) {
	out := make([]byte, esc-start, esc-start+16)
	copy(out, s.b[start:esc])
	for i := esc; i < len(s.b); {
		c := s.b[i]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return nil, false
			}
			s.pos = i + 1
			return out, true
		case c < 0x20:
			return nil, false
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(s.b) {
			return nil, false
		}
		switch e := s.b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if i+6 > len(s.b) {
				return nil, false
			}
			r, err := strconv.ParseUint(string(s.b[i+2:i+6]), 16, 16)
			if err != nil || (r >= 0xd800 && r < 0xe000) {
				return nil, false // surrogates: the general decoder pairs them
			}
			out = utf8.AppendRune(out, rune(r))
			i += 6
			continue
		default:
			return nil, false
		}
		i += 2
	}
	return nil, false
}

// plainString reads a string.
func (s *jsonScanner) plainString() (string, bool) {
	b, ok := s.plainBytes()
	return string(b), ok
}

func (s *jsonScanner) integer(bits int) (int64, bool) {
	s.skipSpace()
	start := s.pos
	if s.pos < len(s.b) && s.b[s.pos] == '-' {
		s.pos++
	}
	digits := s.pos
	for s.pos < len(s.b) && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
		s.pos++
	}
	if s.pos-digits > 1 && s.b[digits] == '0' {
		return 0, false // JSON forbids leading zeros
	}
	n, err := strconv.ParseInt(string(s.b[start:s.pos]), 10, bits)
	return n, err == nil
}

// decodeJSONHeaderFast returns ok=false whenever the header is not in the common shape.
// pooledMaps takes the extFields map from PooledExtFields (see decodeFrameBody).
func decodeJSONHeaderFast(h []byte, pooledMaps bool) (cmd *Command, ok bool) {
	s := jsonScanner{b: h, pooledMaps: pooledMaps}
	if !s.consume('{') {
		return nil, false
	}
	cmd = &Command{}
	seen := 0
	if s.consume('}') {
		return nil, false // the general decoder decides what an empty header means
	}
	for {
		key, ok := s.plainInterned()
		if !ok || !s.consume(':') {
			return nil, false
		}
		bit := 0
		switch key {
		case "code":
			n, ok := s.integer(16)
			if !ok {
				return nil, false
			}
			cmd.Code, bit = int16(n), 1
		case "version":
			n, ok := s.integer(16)
			if !ok {
				return nil, false
			}
			cmd.Version, bit = int16(n), 2
		case "opaque":
			n, ok := s.integer(32)
			if !ok {
				return nil, false
			}
			cmd.Opaque, bit = int32(n), 4
		case "flag":
			n, ok := s.integer(32)
			if !ok {
				return nil, false
			}
			cmd.Flag, bit = int32(n), 8
		case "language":
			if cmd.Language, ok = s.plainInterned(); !ok {
				return nil, false
			}
			bit = 16
		case "remark":
			if cmd.Remark, ok = s.plainString(); !ok {
				return nil, false
			}
			bit = 32
		case "serializeTypeCurrentRPC":
			if _, ok := s.plainString(); !ok {
				return nil, false
			}
			bit = 64
		case "extFields":
			if cmd.ExtFields, ok = s.plainStringMap(); !ok {
				return nil, false
			}
			bit = 128
		default:
			return nil, false
		}
		if seen&bit != 0 {
			return nil, false // duplicate keys: let encoding/json's rule apply
		}
		seen |= bit
		if s.consume(',') {
			continue
		}
		if !s.consume('}') {
			return nil, false
		}
		s.skipSpace()
		if s.pos != len(s.b) {
			return nil, false
		}
		if cmd.ExtFields == nil {
			cmd.ExtFields = ExtFields{}
		}
		return cmd, true
	}
}

func (s *jsonScanner) plainStringMap() (ExtFields, bool) {
	if !s.consume('{') {
		return nil, false
	}
	if s.consume('}') {
		return ExtFields{}, true
	}
	// Pairs are collected first so the map is made once at its final size: a size hint above
	// what a request carries costs a larger table on every frame.
	var stack [24][2]string
	pairs := stack[:0]
	for {
		k, ok := s.plainInterned()
		if !ok || !s.consume(':') {
			return nil, false
		}
		v, ok := s.plainInterned()
		if !ok {
			return nil, false
		}
		pairs = append(pairs, [2]string{k, v})
		if s.consume(',') {
			continue
		}
		if !s.consume('}') {
			return nil, false
		}
		var m ExtFields
		if s.pooledMaps {
			m = PooledExtFields(len(pairs))
		} else {
			m = make(ExtFields, len(pairs))
		}
		for _, p := range pairs {
			m[p[0]] = p[1]
		}
		if len(m) != len(pairs) {
			ReleaseExtFields(m)
			return nil, false // a duplicate key: let encoding/json's rule apply
		}
		return m, true
	}
}

const hexDigits = "0123456789abcdef"

// plainInString and plainOutString are the bytes a JSON string carries as they are, when
// read (not a quote, a backslash, a control character or part of a multi-byte rune) and when
// written as encoding/json writes them (nor <, > and &): one table load a byte where the
// scanners tested half a dozen conditions.
var plainInString, plainOutString = func() (in, out [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		in[c] = c != '"' && c != '\\'
		out[c] = in[c] && c != '<' && c != '>' && c != '&'
	}
	return in, out
}()

// appendJSONString writes s as a JSON string exactly as encoding/json.Marshal does: <, > and
// & as \u escapes, control characters short where JSON has a short form, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainOutString[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONHeaderFast writes the header in the Go client's key order, extFields sorted (or
// in ExtOrdered's order).
func appendJSONHeaderFast(dst []byte, cmd *Command, lang string) []byte {
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendInt(dst, int64(cmd.Code), 10)
	dst = append(dst, `,"language":`...)
	dst = appendJSONString(dst, lang)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, int64(cmd.Version), 10)
	dst = append(dst, `,"opaque":`...)
	dst = strconv.AppendInt(dst, int64(cmd.Opaque), 10)
	dst = append(dst, `,"flag":`...)
	dst = strconv.AppendInt(dst, int64(cmd.Flag), 10)
	dst = append(dst, `,"remark":`...)
	dst = appendJSONString(dst, cmd.Remark)
	dst = append(dst, `,"extFields":{`...)
	if cmd.ExtOrdered != nil {
		for i := 0; i+1 < len(cmd.ExtOrdered); i += 2 {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, cmd.ExtOrdered[i])
			dst = append(dst, ':')
			dst = appendJSONString(dst, cmd.ExtOrdered[i+1])
		}
		return append(dst, `},"serializeTypeCurrentRPC":"JSON"}`...)
	}
	var stack [24]string // a response's fields fit: no allocation for the sort
	keys := stack[:0]
	for k := range cmd.ExtFields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, cmd.ExtFields[k])
	}
	return append(dst, `},"serializeTypeCurrentRPC":"JSON"}`...)
}
