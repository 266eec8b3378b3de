package remoting

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// ErrBadHeaderField is wrapped by every error of the ExtFields getters: a
// required field is missing or a value does not parse. A broker answers it
// with INVALID_PARAMETER (29).
var ErrBadHeaderField = errors.New("bad request header field")

// ExtFields are a command's header fields ("extFields"). On the wire every
// value is a string: numbers in decimal, booleans as true/false.
type ExtFields map[string]string

// extFieldsPool holds cleared maps handed back with ReleaseExtFields, for headers decoded or
// built per message: a header map is most of what a client allocates for a message.
// Connections decode headers into these maps, NewResponse builds into them, and a
// connection hands a response's map back once the response is queued.
var extFieldsPool sync.Pool

// PooledExtFields returns an empty map, a released one when there is one (ReleaseExtFields),
// else a new one sized for hint fields.
func PooledExtFields(hint int) ExtFields {
	if m, ok := extFieldsPool.Get().(ExtFields); ok {
		return m
	}
	return make(ExtFields, hint)
}

// ReleaseExtFields clears m and keeps it for PooledExtFields. Its strings stay valid; the map
// itself must not be used again.
func ReleaseExtFields(m ExtFields) {
	if m == nil {
		return
	}
	clear(m)
	extFieldsPool.Put(m)
}

func missing(key string) error {
	return fmt.Errorf("%w: %q is required", ErrBadHeaderField, key)
}

func malformed(key, val, want string, err error) error {
	if ne := (*strconv.NumError)(nil); errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
		return fmt.Errorf("%w: %q=%q is out of range for %s", ErrBadHeaderField, key, val, want)
	}
	return fmt.Errorf("%w: %q=%q is not %s", ErrBadHeaderField, key, val, want)
}

// String returns the value of a required field; empty counts as missing.
func (e ExtFields) String(key string) (string, error) {
	v, ok := e[key]
	if !ok || v == "" {
		return "", missing(key)
	}
	return v, nil
}

// StringOr returns the value of key, or def when it is absent or empty.
func (e ExtFields) StringOr(key, def string) string {
	if v, ok := e[key]; ok && v != "" {
		return v
	}
	return def
}

// Int64 parses a required decimal int64 field.
func (e ExtFields) Int64(key string) (int64, error) {
	v, ok := e[key]
	if !ok || v == "" {
		return 0, missing(key)
	}
	return parseInt64(key, v)
}

// Int64Or parses an optional decimal int64 field, returning def when it is
// absent or empty and an error when it is present but malformed.
func (e ExtFields) Int64Or(key string, def int64) (int64, error) {
	v, ok := e[key]
	if !ok || v == "" {
		return def, nil
	}
	return parseInt64(key, v)
}

// Int32 parses a required decimal int32 field.
func (e ExtFields) Int32(key string) (int32, error) {
	v, ok := e[key]
	if !ok || v == "" {
		return 0, missing(key)
	}
	return parseInt32(key, v)
}

// Int32Or parses an optional decimal int32 field, returning def when it is
// absent or empty and an error when it is present but malformed.
func (e ExtFields) Int32Or(key string, def int32) (int32, error) {
	v, ok := e[key]
	if !ok || v == "" {
		return def, nil
	}
	return parseInt32(key, v)
}

// Bool parses a required boolean field: true/false in any case, or 1/0.
func (e ExtFields) Bool(key string) (bool, error) {
	v, ok := e[key]
	if !ok || v == "" {
		return false, missing(key)
	}
	return parseBool(key, v)
}

// BoolOr parses an optional boolean field, returning def when it is absent or
// empty and an error when it is present but malformed.
func (e ExtFields) BoolOr(key string, def bool) (bool, error) {
	v, ok := e[key]
	if !ok || v == "" {
		return def, nil
	}
	return parseBool(key, v)
}

// SetInt64 stores v in decimal under key.
func (e ExtFields) SetInt64(key string, v int64) { e[key] = strconv.FormatInt(v, 10) }

// SetBool stores v as true/false under key.
func (e ExtFields) SetBool(key string, v bool) { e[key] = strconv.FormatBool(v) }

func parseInt64(key, v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, malformed(key, v, "an int64", err)
	}
	return n, nil
}

func parseInt32(key, v string) (int32, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0, malformed(key, v, "an int32", err)
	}
	return int32(n), nil
}

func parseBool(key, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, malformed(key, v, "a boolean (true or false)", nil)
}
