package remoting

// Frame format (RocketMQ's, not Strata's; PROTOCOL.md §1.2–§1.4). Every
// integer is big-endian. There is no version byte: the layout is fixed by
// RocketMQ and selected per frame by the serialize-type byte.
//
//	offset  size          field
//	0       4             length: bytes that follow (4 + header + body)
//	4       1             serializeType: 0 JSON, 1 ROCKETMQ
//	5       3             headerLength (24 bits)
//	8       headerLength  header
//	...     rest          body
//
// JSON header: an object with code, language, version, opaque, flag, remark,
// extFields (string → string) and serializeTypeCurrentRPC. We write exactly
// those keys with extFields values as strings; when reading we accept
// numbers written as strings and extFields values that are numbers or
// booleans, and ignore unknown keys.
//
// ROCKETMQ header: code int16, language byte, version int16, opaque int32,
// flag int32, remark (int32 length + bytes), extFields (int32 length of the
// block, then entries of int16 key length + key + int32 value length +
// value).

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// DefaultMaxFrameBytes is the largest frame accepted unless configured
// otherwise: 16 MiB, as the Java broker (NettyDecoder frameMaxLength).
const DefaultMaxFrameBytes = 16 << 20

const maxHeaderBytes = 1<<24 - 1

var (
	// ErrMalformedFrame is wrapped by every decoding error of a frame whose
	// bytes do not follow the protocol. The connection cannot continue.
	ErrMalformedFrame = errors.New("malformed remoting frame")
	// ErrFrameTooLarge is returned by ReadFrame when the length prefix
	// exceeds the configured maximum.
	ErrFrameTooLarge = errors.New("remoting frame too large")
)

func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedFrame, fmt.Sprintf(format, args...))
}

// EncodeFrame returns cmd as one complete frame, length prefix included,
// with its header in cmd.SerializeType.
func EncodeFrame(cmd *Command) ([]byte, error) {
	return AppendFrame(nil, cmd)
}

// AppendFrame appends the frame of cmd to dst and returns the extended slice.
func AppendFrame(dst []byte, cmd *Command) ([]byte, error) {
	dst, err := appendFrameHead(dst, cmd, cmd.BodyLen())
	if err != nil {
		return dst, err
	}
	if cmd.Body != nil {
		return append(dst, cmd.Body...), nil
	}
	for _, p := range cmd.BodyParts {
		dst = append(dst, p...)
	}
	return dst, nil
}

// appendFrameHead appends what comes before the body in cmd's frame, a body of bodyLen
// bytes; on error it returns dst unchanged.
func appendFrameHead(dst []byte, cmd *Command, bodyLen int) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(cmd.SerializeType), 0, 0, 0)
	var err error
	switch cmd.SerializeType {
	case SerializeJSON:
		dst, err = appendJSONHeader(dst, cmd)
	case SerializeRocketMQ:
		dst, err = appendBinaryHeader(dst, cmd)
	default:
		err = fmt.Errorf("unknown serialize type %d", cmd.SerializeType)
	}
	if err != nil {
		return dst[:start], fmt.Errorf("encode command code %d: %w", cmd.Code, err)
	}
	headerLen := len(dst) - start - 8
	if headerLen > maxHeaderBytes {
		return dst[:start], fmt.Errorf("encode command code %d: header of %d bytes exceeds the 24-bit limit", cmd.Code, headerLen)
	}
	total := len(dst) - start - 4 + bodyLen
	if total > math.MaxInt32 {
		return dst[:start], fmt.Errorf("encode command code %d: frame of %d bytes exceeds the 32-bit length", cmd.Code, total)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(total))
	dst[start+5] = byte(headerLen >> 16)
	dst[start+6] = byte(headerLen >> 8)
	dst[start+7] = byte(headerLen)
	return dst, nil
}

// WriteFrame encodes cmd and writes it to w in one Write call.
func WriteFrame(w io.Writer, cmd *Command) error {
	frame, err := EncodeFrame(cmd)
	if err != nil {
		return err
	}
	_, err = w.Write(frame)
	return err
}

// ReadFrame reads one frame from r and decodes it. maxFrameBytes bounds the
// length prefix (DefaultMaxFrameBytes when ≤ 0). Errors wrap
// ErrFrameTooLarge, ErrMalformedFrame, or the reader's error (io.EOF when r
// ends cleanly between frames, io.ErrUnexpectedEOF inside one). Memory grows
// with the bytes that arrive, not with the length the prefix declares
// (readFrameBody).
func ReadFrame(r io.Reader, maxFrameBytes int) (*Command, error) {
	length, err := readFrameLength(r, maxFrameBytes)
	if err != nil {
		return nil, err
	}
	buf, err := readFrameBody(r, length, defaultChunks, nil, false)
	if err != nil {
		return nil, err
	}
	return decodeFrameBody(buf, false)
}

// readFrameLength reads and checks a frame's length prefix.
func readFrameLength(r io.Reader, maxFrameBytes int) (int, error) {
	if maxFrameBytes <= 0 {
		maxFrameBytes = DefaultMaxFrameBytes
	}
	var prefix [4]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return 0, err
	}
	length := binary.BigEndian.Uint32(prefix[:])
	if length < 4 {
		return 0, malformedf("frame length %d is below the 4-byte minimum", length)
	}
	if uint64(length) > uint64(maxFrameBytes) {
		return 0, fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d bytes", ErrFrameTooLarge, length, maxFrameBytes)
	}
	return int(length), nil
}

// A frame's body is allocated as its bytes arrive, not as its length prefix
// declares. Read through a bufio.Reader of at least bodyChunks.first bytes
// (every connection's reader), a frame waits for its first chunk, or the whole
// of a shorter frame, inside the reader's own buffer, and only then gets one
// allocation of its exact size: a peer that declares 16 MiB and sends ten
// bytes costs nothing beyond its connection's read buffer. On a server that is
// also the moment the frame reserves its length from the frame budget
// (budget.go), which bounds what frames that have started to arrive hold.
// Through any other reader the buffer starts at bodyChunks.min (or what the
// reader holds) and doubles as it fills, so a frame that stalls holds at most
// twice what it sent.
type bodyChunks struct {
	min   int // first buffer of the doubling path
	first int // bytes that must arrive before a frame reserves its length
}

// defaultChunks are the sizes in use; tests shrink them to reach every path
// with small inputs.
var defaultChunks = bodyChunks{min: 4 << 10, first: 64 << 10}

// decodeHeaderOnly decodes a frame of length bytes that has no body (most answers to sends,
// every pull request) where it lies in r's buffer, when r is a bufio.Reader large enough to
// hold it: decoding copies every header string, so nothing keeps the frame's bytes, and the
// frame costs no buffer of its own. ok is false, with nothing read, for any other frame.
// pooledMaps is decodeFrameBody's.
func decodeHeaderOnly(r io.Reader, length int, pooledMaps bool) (cmd *Command, ok bool, err error) {
	br, isBuffered := r.(*bufio.Reader)
	if !isBuffered || length < 4 || length > br.Size() {
		return nil, false, nil
	}
	head, err := br.Peek(4)
	if err != nil {
		return nil, true, bodyReadError(length, err)
	}
	if int(head[1])<<16|int(head[2])<<8|int(head[3]) != length-4 {
		return nil, false, nil
	}
	frame, err := br.Peek(length)
	if err != nil {
		return nil, true, bodyReadError(length, err)
	}
	cmd, err = decodeFrameBody(frame, pooledMaps)
	_, _ = br.Discard(length)
	return cmd, true, err
}

// readFrameBody reads the length bytes after a frame's prefix. If reserve is
// not nil it is called once with length, when the first ch.first bytes (or the
// whole of a shorter frame) have arrived; it may wait, and its error ends the
// read. recycled reads a frame that arrives through a large enough
// bufio.Reader into a buffer of frameBufs (framebuf.go), which the caller
// hands back with putFrameBuf once nothing references it.
func readFrameBody(r io.Reader, length int, ch bodyChunks, reserve func(n int) error, recycled bool) ([]byte, error) {
	first := min(length, ch.first)
	if br, ok := r.(*bufio.Reader); ok && br.Size() >= first {
		head, err := br.Peek(first)
		if err != nil {
			return nil, bodyReadError(length, err)
		}
		if reserve != nil {
			if err := reserve(length); err != nil {
				return nil, err
			}
		}
		var buf []byte
		if recycled {
			buf = getFrameBuf(length) // every byte is written below
		} else {
			buf = make([]byte, length)
		}
		n := copy(buf, head) // head stays valid: nothing has read from br since Peek
		_, _ = br.Discard(n)
		if err := readBodyPart(br, buf[n:], length); err != nil {
			return nil, err
		}
		return buf, nil
	}
	size := ch.min
	if br, ok := r.(interface{ Buffered() int }); ok {
		size = max(size, br.Buffered())
	}
	buf := make([]byte, min(size, length))
	if err := readBodyPart(r, buf, length); err != nil {
		return nil, err
	}
	if reserve == nil {
		return readUpTo(r, buf, length, length)
	}
	buf, err := readUpTo(r, buf, first, length)
	if err != nil {
		return nil, err
	}
	if err := reserve(length); err != nil {
		return nil, err
	}
	return readUpTo(r, buf, length, length)
}

// readUpTo grows buf, doubling its size each time it fills, and reads into it
// until it holds upTo bytes of the length-byte frame.
func readUpTo(r io.Reader, buf []byte, upTo, length int) ([]byte, error) {
	for got := len(buf); got < upTo; got = len(buf) {
		grown := make([]byte, min(2*got, upTo))
		copy(grown, buf)
		buf = grown
		if err := readBodyPart(r, buf[got:], length); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

func readBodyPart(r io.Reader, p []byte, length int) error {
	if _, err := io.ReadFull(r, p); err != nil {
		return bodyReadError(length, err)
	}
	return nil
}

func bodyReadError(length int, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read frame of %d bytes: %w", length, err)
}

// DecodeFrame decodes one complete frame, length prefix included, as
// produced by EncodeFrame. The returned Body aliases frame.
func DecodeFrame(frame []byte) (*Command, error) {
	if len(frame) < 8 {
		return nil, malformedf("frame of %d bytes is shorter than the 8-byte minimum", len(frame))
	}
	length := binary.BigEndian.Uint32(frame)
	if uint64(length) != uint64(len(frame)-4) {
		return nil, malformedf("length prefix %d does not match the %d bytes that follow", length, len(frame)-4)
	}
	return decodeFrameBody(frame[4:], false)
}

// decodeFrameBody decodes the bytes after the length prefix. pooledMaps decodes a JSON
// header's extFields into a PooledExtFields map, for a connection whose handlers and
// callers may hand the maps back (Command.ReleaseExtFields).
func decodeFrameBody(b []byte, pooledMaps bool) (*Command, error) {
	if len(b) < 4 {
		return nil, malformedf("frame length %d is below the 4-byte minimum", len(b))
	}
	st := SerializeType(b[0])
	headerLen := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if headerLen > len(b)-4 {
		return nil, malformedf("header length %d exceeds the %d bytes left in the frame", headerLen, len(b)-4)
	}
	header := b[4 : 4+headerLen]
	var (
		cmd *Command
		err error
	)
	switch st {
	case SerializeJSON:
		cmd, err = decodeJSONHeader(header, pooledMaps)
	case SerializeRocketMQ:
		cmd, err = decodeBinaryHeader(header)
	default:
		return nil, malformedf("unknown serialize type %d", b[0])
	}
	if err != nil {
		return nil, err
	}
	cmd.SerializeType = st
	if body := b[4+headerLen:]; len(body) > 0 {
		cmd.Body = body
	}
	return cmd, nil
}

// appendJSONHeader writes the header as the Go client does (jsonfast.go); extFields is always
// an object of strings, never null.
func appendJSONHeader(dst []byte, cmd *Command) ([]byte, error) {
	lang := cmd.Language
	if lang == "" {
		lang = DefaultLanguage
	}
	return appendJSONHeaderFast(dst, cmd, lang), nil
}

// jsonHeaderIn is the JSON header as we read it: every field raw, so that
// numbers written as strings and other quirks can be accepted.
type jsonHeaderIn struct {
	Code      json.RawMessage            `json:"code"`
	Language  json.RawMessage            `json:"language"`
	Version   json.RawMessage            `json:"version"`
	Opaque    json.RawMessage            `json:"opaque"`
	Flag      json.RawMessage            `json:"flag"`
	Remark    json.RawMessage            `json:"remark"`
	ExtFields map[string]json.RawMessage `json:"extFields"`
}

func decodeJSONHeader(h []byte, pooledMaps bool) (*Command, error) {
	trimmed := bytes.TrimLeft(h, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, malformedf("JSON header is not an object: %.40q", h)
	}
	if cmd, ok := decodeJSONHeaderFast(h, pooledMaps); ok {
		return cmd, nil
	}
	return decodeJSONHeaderGeneral(h)
}

// decodeJSONHeaderGeneral accepts every quirk senders are known for.
func decodeJSONHeaderGeneral(h []byte) (*Command, error) {
	var in jsonHeaderIn
	if err := json.Unmarshal(h, &in); err != nil {
		return nil, malformedf("JSON header: %v", err)
	}
	cmd := &Command{ExtFields: make(ExtFields, len(in.ExtFields))}
	code, err := jsonInt(in.Code, "code", 16)
	if err != nil {
		return nil, err
	}
	version, err := jsonInt(in.Version, "version", 16)
	if err != nil {
		return nil, err
	}
	opaque, err := jsonInt(in.Opaque, "opaque", 32)
	if err != nil {
		return nil, err
	}
	flag, err := jsonInt(in.Flag, "flag", 32)
	if err != nil {
		return nil, err
	}
	cmd.Code, cmd.Version, cmd.Opaque, cmd.Flag = int16(code), int16(version), int32(opaque), int32(flag)
	if cmd.Language, err = jsonLanguage(in.Language); err != nil {
		return nil, err
	}
	if cmd.Remark, err = jsonString(in.Remark, "remark"); err != nil {
		return nil, err
	}
	for k, raw := range in.ExtFields {
		v, present, err := jsonExtValue(raw)
		if err != nil {
			return nil, malformedf("JSON header extFields[%q]: %v", k, err)
		}
		if present {
			cmd.ExtFields[k] = v
		}
	}
	return cmd, nil
}

// jsonInt accepts a JSON integer, an integer written as a JSON string, or null
// (zero), and checks it fits in bits.
func jsonInt(raw json.RawMessage, field string, bits int) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	text := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &text); err != nil {
			return 0, malformedf("JSON header %s: %v", field, err)
		}
	}
	n, err := strconv.ParseInt(text, 10, bits)
	if err != nil {
		return 0, malformedf("JSON header %s=%.40s is not an int%d", field, raw, bits)
	}
	return n, nil
}

func jsonString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", malformedf("JSON header %s=%.40s is not a string", field, raw)
	}
	return s, nil
}

// jsonLanguage accepts the language's name, or its numeric code.
func jsonLanguage(raw json.RawMessage) (string, error) {
	if len(raw) > 0 && raw[0] != '"' && string(raw) != "null" {
		n, err := strconv.ParseUint(string(raw), 10, 8)
		if err != nil {
			return "", malformedf("JSON header language=%.40s is neither a name nor a code", raw)
		}
		return languageName(byte(n)), nil
	}
	return jsonString(raw, "language")
}

// jsonExtValue turns one extFields value into its string form. Strings pass
// through; numbers and booleans keep their JSON text; null means absent.
func jsonExtValue(raw json.RawMessage) (v string, present bool, err error) {
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", false, nil
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", false, err
		}
		return v, true, nil
	case string(raw) == "true" || string(raw) == "false":
		return string(raw), true, nil
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		return string(raw), true, nil
	default:
		return "", false, fmt.Errorf("want a string, got %.40s", raw)
	}
}

func appendBinaryHeader(dst []byte, cmd *Command) ([]byte, error) {
	dst = binary.BigEndian.AppendUint16(dst, uint16(cmd.Code))
	lang := cmd.Language
	if lang == "" {
		lang = DefaultLanguage
	}
	dst = append(dst, languageByte(lang))
	dst = binary.BigEndian.AppendUint16(dst, uint16(cmd.Version))
	dst = binary.BigEndian.AppendUint32(dst, uint32(cmd.Opaque))
	dst = binary.BigEndian.AppendUint32(dst, uint32(cmd.Flag))
	if len(cmd.Remark) > maxHeaderBytes {
		return dst, fmt.Errorf("remark of %d bytes is too long", len(cmd.Remark))
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(cmd.Remark)))
	dst = append(dst, cmd.Remark...)

	lenAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	var err error
	if cmd.ExtOrdered != nil {
		for i := 0; i+1 < len(cmd.ExtOrdered) && err == nil; i += 2 {
			dst, err = appendBinaryField(dst, cmd.ExtOrdered[i], cmd.ExtOrdered[i+1])
		}
	} else {
		var stack [24]string // a response's fields fit: no allocation for the sort
		keys := stack[:0]
		for k := range cmd.ExtFields {
			keys = append(keys, k)
		}
		slices.Sort(keys) // deterministic bytes
		for _, k := range keys {
			if dst, err = appendBinaryField(dst, k, cmd.ExtFields[k]); err != nil {
				break
			}
		}
	}
	if err != nil {
		return dst, err
	}
	binary.BigEndian.PutUint32(dst[lenAt:], uint32(len(dst)-lenAt-4))
	return dst, nil
}

func appendBinaryField(dst []byte, k, v string) ([]byte, error) {
	if len(k) > math.MaxInt16 {
		return dst, fmt.Errorf("extFields key of %d bytes is too long", len(k))
	}
	if len(v) > maxHeaderBytes {
		return dst, fmt.Errorf("extFields[%q] value of %d bytes is too long", k, len(v))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(k)))
	dst = append(dst, k...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...), nil
}

// binReader reads a ROCKETMQ header; the first failure sticks.
type binReader struct {
	b   []byte
	err error
}

func (r *binReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = malformedf("binary header %s needs %d bytes, %d left", what, n, len(r.b))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *binReader) u16(what string) uint16 {
	if p := r.take(2, what); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *binReader) u32(what string) uint32 {
	if p := r.take(4, what); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *binReader) length32(what string) int {
	n := int32(r.u32(what + " length"))
	if r.err == nil && n < 0 {
		r.err = malformedf("binary header %s length %d is negative", what, n)
	}
	return int(n)
}

func decodeBinaryHeader(h []byte) (*Command, error) {
	r := &binReader{b: h}
	cmd := &Command{ExtFields: ExtFields{}}
	cmd.Code = int16(r.u16("code"))
	if p := r.take(1, "language"); p != nil {
		cmd.Language = languageName(p[0])
	}
	cmd.Version = int16(r.u16("version"))
	cmd.Opaque = int32(r.u32("opaque"))
	cmd.Flag = int32(r.u32("flag"))
	cmd.Remark = string(r.take(r.length32("remark"), "remark"))
	ext := &binReader{b: r.take(r.length32("extFields"), "extFields")}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, malformedf("binary header has %d trailing bytes", len(r.b))
	}
	for len(ext.b) > 0 {
		kl := int16(ext.u16("extFields key length"))
		if ext.err == nil && kl < 0 {
			return nil, malformedf("binary header extFields key length %d is negative", kl)
		}
		k := ext.take(int(kl), "extFields key")
		v := ext.take(ext.length32("extFields value"), "extFields value")
		if ext.err != nil {
			return nil, ext.err
		}
		cmd.ExtFields[string(k)] = string(v)
	}
	return cmd, nil
}
