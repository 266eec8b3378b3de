package remoting

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"hash"
	"io"
	"slices"
	"strconv"
	"time"
)

// RocketMQ's request signature (PROTOCOL.md §1.7; rmq: acl/common/AclClientRPCHook.java,
// acl/plain/PlainAccessResource.java; go: internal/remote/interceptor.go). A signed request
// carries AccessKey, Signature and optionally SecurityToken in its extFields. The signature is
// base64(HMAC-SHA1(secretKey, content)), and content is the values (not the keys) of every
// extField but Signature, in ascending byte order of their keys, followed by the raw body.
// Fields a client adds of its own (OnsChannel, Strata's StrataCode) are part of the content.
//
// The signature covers neither the request code nor a time: a captured request can be
// replayed, or sent again under another code with the same fields. Strata's own clients close
// that gap for their requests with StrataCode and StrataSignedAt, which the broker checks when
// present (broker/acl); RocketMQ's clients do not send them, so TLS is what protects their
// requests on an untrusted network.

// ExtFields keys of a signed request.
const (
	ExtAccessKey     = "AccessKey"
	ExtSignature     = "Signature"
	ExtSecurityToken = "SecurityToken"
	// ExtUniqueKeyQuery is QUERY_MESSAGE's _UNIQUE_KEY_QUERY flag, which RocketMQ's broker
	// leaves out of the signed content (MixAll.UNIQUE_MSG_QUERY_FLAG) and newer Java clients
	// sign; the verifier accepts both.
	ExtUniqueKeyQuery = "_UNIQUE_KEY_QUERY"
	// ExtStrataCode and ExtStrataSignedAt are signed by Strata's clients: the request code
	// and the signing time in Unix milliseconds, so a broker can refuse a signature that was
	// made for another request code, or long ago.
	ExtStrataCode     = "StrataCode"
	ExtStrataSignedAt = "StrataSignedAt"
)

// Credentials sign requests as RocketMQ's ACL clients do. The zero value signs nothing.
type Credentials struct {
	AccessKey string
	SecretKey string
	// SecurityToken is optional; it is sent and signed, and Strata does not interpret it.
	SecurityToken string
	// BindRequest adds StrataCode and StrataSignedAt to each signed request (Strata's own
	// clients set it; RocketMQ brokers ignore the fields).
	BindRequest bool
}

// IsZero reports whether c signs nothing (no access key or no secret key).
func (c Credentials) IsZero() bool { return c.AccessKey == "" || c.SecretKey == "" }

// Sign adds AccessKey, SecurityToken (if set) and Signature to req, as Java's
// AclClientRPCHook does: every other extField and the body are signed. Signing again
// replaces the old signature. It does nothing when c.IsZero().
func (c Credentials) Sign(req *Command) {
	if c.IsZero() {
		return
	}
	if req.ExtFields == nil {
		req.ExtFields = ExtFields{}
	}
	for i := 0; i+1 < len(req.ExtOrdered); i += 2 { // the signature covers a map's fields
		req.ExtFields[req.ExtOrdered[i]] = req.ExtOrdered[i+1]
	}
	req.ExtOrdered = nil
	req.ExtFields[ExtAccessKey] = c.AccessKey
	if c.SecurityToken != "" {
		req.ExtFields[ExtSecurityToken] = c.SecurityToken
	}
	if c.BindRequest {
		req.ExtFields[ExtStrataCode] = strconv.Itoa(int(req.Code))
		req.ExtFields[ExtStrataSignedAt] = strconv.FormatInt(time.Now().UnixMilli(), 10)
	}
	mac := hmac.New(sha1.New, []byte(c.SecretKey))
	WriteSignedContent(mac, req.ExtFields, req.Body, SkipSignature)
	req.ExtFields[ExtSignature] = EncodeSignature(mac)
}

// SkipSignature leaves Signature and _UNIQUE_KEY_QUERY out of the signed content: what
// RocketMQ's broker verifies.
func SkipSignature(key string) bool { return key == ExtSignature || key == ExtUniqueKeyQuery }

// maxStackKeys is how many extField keys WriteSignedContent sorts without allocating.
const maxStackKeys = 32

// WriteSignedContent writes the content a signature covers to w: the values of ext whose
// keys skip does not reject, in ascending byte order of the keys, then body. Writes to a
// hash never fail, so neither does this with one.
func WriteSignedContent(w io.Writer, ext ExtFields, body []byte, skip func(key string) bool) {
	var stack [maxStackKeys]string
	keys := stack[:0]
	for k := range ext {
		if skip == nil || !skip(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	sw, _ := w.(io.StringWriter)
	for _, k := range keys {
		if sw != nil {
			_, _ = sw.WriteString(ext[k])
		} else {
			_, _ = io.WriteString(w, ext[k])
		}
	}
	_, _ = w.Write(body)
}

// SignedContent returns the bytes WriteSignedContent writes, for tests and tools.
func SignedContent(ext ExtFields, body []byte, skip func(key string) bool) []byte {
	var b sliceWriter
	WriteSignedContent(&b, ext, body, skip)
	return b
}

type sliceWriter []byte

func (s *sliceWriter) Write(p []byte) (int, error) { *s = append(*s, p...); return len(p), nil }

// EncodeSignature is the base64 of mac's sum: the Signature value.
func EncodeSignature(mac hash.Hash) string {
	var sum [sha1.Size]byte
	return base64.StdEncoding.EncodeToString(mac.Sum(sum[:0]))
}

// Signature computes the Signature of ext and body under secretKey, skipping the keys skip
// rejects (SkipSignature for RocketMQ's rule).
func Signature(secretKey []byte, ext ExtFields, body []byte, skip func(key string) bool) string {
	mac := hmac.New(sha1.New, secretKey)
	WriteSignedContent(mac, ext, body, skip)
	return EncodeSignature(mac)
}
