package filter

import (
	"fmt"
	"strings"

	"github.com/stratamq/strata/broker/message"
)

// Expression types of a subscription (RocketMQ's ExpressionType).
const (
	TypeTag   = "TAG"
	TypeSQL92 = "SQL92"
)

// Filter is a compiled subscription: a TAG expression or an SQL92 expression. The broker's
// pull path, the cold tier's reads and exports all filter through it. A nil *Filter keeps
// every message. A Filter is immutable and safe for concurrent use.
type Filter struct {
	typ  string
	tags *Tags // TAG
	sql  *Expr // SQL92
}

// New compiles an expression of the given type: "" or TAG (any case) for a tag expression,
// SQL92 (any case) for a property filter, compiled with lim. Errors say what to fix; an
// SQL92 error is a *SyntaxError.
func New(exprType, expr string, lim Limits) (*Filter, error) {
	switch {
	case exprType == "" || strings.EqualFold(exprType, TypeTag):
		return &Filter{typ: TypeTag, tags: ParseTags(expr)}, nil
	case strings.EqualFold(exprType, TypeSQL92):
		x, err := CompileLimits(expr, lim)
		if err != nil {
			return nil, err
		}
		return &Filter{typ: TypeSQL92, sql: x}, nil
	}
	return nil, fmt.Errorf("expression type %q is not supported; use TAG (tags such as \"TagA || TagB\") or SQL92 (conditions on properties such as \"a > 5\")", exprType)
}

// Type is TypeTag or TypeSQL92.
func (f *Filter) Type() string {
	if f == nil {
		return TypeTag
	}
	return f.typ
}

// Expression is the expression as given ("*" for a nil Filter).
func (f *Filter) Expression() string {
	switch {
	case f == nil:
		return "*"
	case f.sql != nil:
		return f.sql.Source()
	}
	return f.tags.expr
}

// String names the filter for logs: its type and how it was understood.
func (f *Filter) String() string {
	if f != nil && f.sql != nil {
		return "SQL92 " + f.sql.String()
	}
	return "TAG " + f.Tags().String()
}

// SQL is the compiled SQL92 expression, nil for a TAG filter.
func (f *Filter) SQL() *Expr {
	if f == nil {
		return nil
	}
	return f.sql
}

// Tags is the tag expression, nil for an SQL92 filter; a nil Filter has the Tags of "*".
func (f *Filter) Tags() *Tags {
	if f == nil {
		return nil
	}
	return f.tags
}

// MatchesAll reports whether every message passes.
func (f *Filter) MatchesAll() bool { return f == nil || f.sql == nil && f.tags.All() }

// TagCodes returns the consume-queue pre-filter: the tag hash codes a message may have to
// pass, nil when the tag code says nothing (every message, or an SQL92 filter).
func (f *Filter) TagCodes() []int64 {
	if f == nil || f.sql != nil {
		return nil
	}
	return f.tags.Codes()
}

// MatchTagCode is the pre-filter on a consume-queue tag code.
func (f *Filter) MatchTagCode(code int64) bool {
	if f == nil || f.sql != nil {
		return true
	}
	return f.tags.MatchCode(code)
}

// MatchRecord decides on a stored record from its parsed header: the exact TAGS for a tag
// filter, the encoded properties for SQL92. It allocates nothing.
func (f *Filter) MatchRecord(h *message.RecordHeader) bool {
	switch {
	case f == nil:
		return true
	case f.sql != nil:
		return f.sql.MatchEncoded(h.Properties)
	}
	return f.tags.Match(h.Tags)
}

// MatchStoredRecord decides on a stored record (broker/message layout) without parsing its
// header or copying anything for SQL92: it reads the properties in place. A record that
// does not parse does not match.
func (f *Filter) MatchStoredRecord(rec []byte) bool {
	switch {
	case f == nil:
		return true
	case f.sql != nil:
		props, err := message.RecordProperties(rec)
		return err == nil && f.sql.MatchEncodedBytes(props)
	case f.tags.All():
		return true
	}
	h, err := message.ParseRecordHeader(rec)
	return err == nil && f.tags.Match(h.Tags)
}

// Match decides on a message's properties.
func (f *Filter) Match(p Properties) bool {
	switch {
	case f == nil:
		return true
	case f.sql != nil:
		return f.sql.Match(p)
	case f.tags.All():
		return true
	}
	tag, _ := p.Get(message.PropertyTags)
	return f.tags.Match(tag)
}
