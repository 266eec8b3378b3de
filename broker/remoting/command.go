package remoting

import (
	"fmt"
	"maps"
)

// SerializeType says how a frame's header is encoded (PROTOCOL.md §1.2).
type SerializeType byte

const (
	// SerializeJSON is the JSON header the Go client always sends.
	SerializeJSON SerializeType = 0
	// SerializeRocketMQ is the compact binary header Java clients may use.
	SerializeRocketMQ SerializeType = 1
)

func (t SerializeType) String() string {
	switch t {
	case SerializeJSON:
		return "JSON"
	case SerializeRocketMQ:
		return "ROCKETMQ"
	default:
		return fmt.Sprintf("SerializeType(%d)", byte(t))
	}
}

// Command is one remoting request or response: a header (code, opaque, flag,
// remark, extFields) and an opaque body.
//
// A Command is not safe for concurrent mutation; Invoke writes the opaque it
// chooses into the request it sends.
type Command struct {
	// Code is a request code (CodeXxx) in a request, a response code
	// (RespXxx) in a response.
	Code int16
	// Language names the sender's client language ("GO", "JAVA", …).
	Language string
	// Version is the sender's protocol version.
	Version int16
	// Opaque identifies a request; its response carries the same value.
	Opaque int32
	// Flag holds FlagResponse and FlagOneway.
	Flag int32
	// Remark is free text, the error message in a failed response.
	Remark string
	// ExtFields are the request or response header fields, all strings.
	// Commands built by this package and decoded from the wire never hold a
	// nil map, until ReleaseExtFields.
	ExtFields ExtFields
	// ExtOrdered, when not nil on a command this side sends, holds its header fields as key,
	// value, key, value…, written in that order in place of ExtFields: a sender whose header
	// is fixed (a producer's send, the broker's answer to it) builds, sorts and clears no map.
	// Keys must be distinct.
	// Signing (Credentials.Sign) moves them into ExtFields. Decoded commands never have it.
	ExtOrdered []string
	// Body is the payload: a message, JSON, or a batch. It may be nil.
	Body []byte
	// BodyParts, when Body is nil, is the payload in pieces, sent back to back. A connection
	// writes the large pieces from where they are, in one writev with the frame's header, so
	// a body gathered from several buffers (a cold pull's records, still in the blocks they
	// were decoded into) is not copied into one. The pieces must not change until the
	// command is written. Decoded commands never have BodyParts.
	BodyParts [][]byte
	// Written, when set on a command a connection sends, is called once the connection
	// has written the command's frame, from the goroutine that wrote it: from then on the
	// connection no longer reads Body or BodyParts, so their buffers may be reused. It is
	// not called for a frame the connection could not queue or write (an encoding error, a
	// closed connection); the buffers are then simply left to the garbage collector.
	Written func()
	// SerializeType is the header encoding used on the wire. A response is
	// sent in its request's serialize type.
	SerializeType SerializeType

	// frame is the recycled buffer Body aliases, on a command a Client read (framebuf.go);
	// Release hands it back.
	frame []byte
}

// Release declares that nothing uses the command's Body any more, nor anything sliced
// from it, so that the buffer a Client read the frame into may take a later frame. Body is
// nil afterwards. Releasing is optional: a command that is never released keeps its
// buffer until the garbage collector frees it. Release is a no-op on a command that holds
// no recycled buffer, and on one released already.
func (c *Command) Release() {
	if c.frame == nil {
		return
	}
	frame := c.frame
	c.frame, c.Body = nil, nil
	putFrameBuf(frame)
}

// BodyLen is the length of the body: Body's, or else the sum of BodyParts'.
func (c *Command) BodyLen() int {
	if c.Body != nil {
		return len(c.Body)
	}
	n := 0
	for _, p := range c.BodyParts {
		n += len(p)
	}
	return n
}

// IsResponse reports whether c is a response (flag bit 0).
func (c *Command) IsResponse() bool { return c.Flag&FlagResponse != 0 }

// IsOneway reports whether c is a request that wants no response (flag bit 1).
func (c *Command) IsOneway() bool { return c.Flag&FlagOneway != 0 }

// String summarises c for logs and test failures; the body is given by length. Secrets
// (an ACL request's secretKey, a Signature, a SecurityToken) are redacted.
func (c *Command) String() string {
	kind := "request"
	if c.IsResponse() {
		kind = "response"
	}
	return fmt.Sprintf("%s code=%d opaque=%d flag=%d remark=%q ext=%v body=%dB",
		kind, c.Code, c.Opaque, c.Flag, c.Remark, redacted(c.ExtFields), c.BodyLen())
}

// secretFields are extFields whose values never go into a log line.
var secretFields = []string{"secretKey", ExtSignature, ExtSecurityToken}

func redacted(ext ExtFields) map[string]string {
	var out map[string]string
	for _, k := range secretFields {
		if _, ok := ext[k]; ok {
			if out == nil {
				out = maps.Clone(map[string]string(ext))
			}
			out[k] = "(redacted)"
		}
	}
	if out == nil {
		return ext
	}
	return out
}

// NewRequest builds a request with the given code, header fields and body.
// ext may be nil. The opaque is chosen when the request is sent.
func NewRequest(code int16, ext ExtFields, body []byte) *Command {
	if ext == nil {
		ext = ExtFields{}
	}
	return &Command{
		Code:      code,
		Language:  DefaultLanguage,
		Version:   DefaultVersion,
		ExtFields: ext,
		Body:      body,
	}
}

// ReleaseExtFields hands the command's header map back for reuse (ReleaseExtFields) and
// leaves the command without one: for a caller that reads a few fields of an answer and drops
// it. The strings read from the map stay valid.
func (c *Command) ReleaseExtFields() {
	ReleaseExtFields(c.ExtFields)
	c.ExtFields = nil
}

// NewResponse builds the response to req with the given response code and
// remark. It echoes req's opaque and serialize type and sets FlagResponse.
func NewResponse(req *Command, code int16, remark string) *Command {
	return &Command{
		Code:          code,
		Language:      DefaultLanguage,
		Version:       DefaultVersion,
		Opaque:        req.Opaque,
		Flag:          FlagResponse,
		Remark:        remark,
		ExtFields:     PooledExtFields(8),
		SerializeType: req.SerializeType,
	}
}

// NewNotSupportedResponse answers a request whose code the handler does not
// serve: REQUEST_CODE_NOT_SUPPORTED (3) with a remark naming the code, as
// the Java broker does. The connection stays up.
func NewNotSupportedResponse(req *Command) *Command {
	return NewResponse(req, RespRequestCodeNotSupported,
		fmt.Sprintf("request code %d not supported", req.Code))
}

// NewErrorResponse answers req with code and a remark built from err, for
// example RespInvalidParameter with an error from an ExtFields getter.
func NewErrorResponse(req *Command, code int16, err error) *Command {
	return NewResponse(req, code, err.Error())
}
