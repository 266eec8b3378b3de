package filter

import (
	"strconv"
	"strings"
)

// Expr is a compiled SQL92 property filter. It is immutable and safe for concurrent use.
type Expr struct {
	src   string
	root  *node
	names []string // the properties it reads; node.prop indexes them
}

// Properties gives a message's properties by name, as strings (RocketMQ's
// MessageEvaluationContext). *message.PropertyList and MapProperties implement it.
type Properties interface {
	Get(key string) (value string, ok bool)
}

// MapProperties adapts a decoded property map.
type MapProperties map[string]string

// Get returns the property key.
func (m MapProperties) Get(key string) (string, bool) {
	v, ok := m[key]
	return v, ok
}

type op uint8

const (
	opConst op = iota
	opProp
	opCast // a property where a condition is expected: TRUE only for a Boolean, so never
	opNeg
	opNot
	opAnd
	opOr
	opEq
	opNe
	opIsNull
	opIsNotNull
	opGt
	opGe
	opLt
	opLe
	opBetween
	opNotBetween
	opIn
	opNotIn
	opContains
	opNotContains
	opStartsWith
	opNotStartsWith
	opEndsWith
	opNotEndsWith
)

var opSymbol = [...]string{
	opEq: "=", opNe: "<>", opGt: ">", opGe: ">=", opLt: "<", opLe: "<=",
	opIn: "IN", opNotIn: "NOT IN", opContains: "CONTAINS", opNotContains: "NOT CONTAINS",
	opStartsWith: "STARTSWITH", opNotStartsWith: "NOT STARTSWITH", opEndsWith: "ENDSWITH",
	opNotEndsWith: "NOT ENDSWITH", opBetween: "BETWEEN", opNotBetween: "NOT BETWEEN",
}

// node is one operation of the tree. AND and OR are n-ary: a chain is one node, so a long
// chain costs no depth.
type node struct {
	op     op
	kids   []*node
	val    value    // opConst
	prop   int      // opProp, opCast: index into Expr.names
	name   string   // opProp, opCast
	lits   []string // opIn (the list), the string operators (one literal)
	set    map[string]struct{}
	height int // 1 for a leaf
	pos    int // byte offset of its first token, for errors
	end    int // byte offset after its last token
}

// isCondition reports whether n yields TRUE, FALSE or null (a BooleanExpression in
// RocketMQ). TRUE, FALSE and NULL literals are conditions; other literals are not.
func (n *node) isCondition() bool {
	switch n.op {
	case opConst:
		return n.val.k == kBool || n.val.k == kNull
	case opProp, opNeg:
		return false
	}
	return true
}

// String renders the expression as it was understood: keywords in upper case, every
// operation in parentheses. It compiles back to an equivalent expression.
func (x *Expr) String() string {
	if x == nil {
		return "TRUE"
	}
	var b strings.Builder
	x.root.format(&b, true)
	return b.String()
}

// Source is the expression as given to Compile.
func (x *Expr) Source() string { return x.src }

// Properties lists the property names the expression reads.
func (x *Expr) Properties() []string { return append([]string(nil), x.names...) }

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func (n *node) format(b *strings.Builder, top bool) {
	open := func() {
		if !top {
			b.WriteByte('(')
		}
	}
	closeP := func() {
		if !top {
			b.WriteByte(')')
		}
	}
	switch n.op {
	case opConst:
		b.WriteString(formatLiteral(n.val))
	case opProp, opCast:
		b.WriteString(n.name)
	case opNeg:
		if k := n.kids[0]; k.op == opConst && k.val.isNumber() {
			b.WriteByte('-')
			b.WriteString(formatLiteral(k.val))
			return
		}
		b.WriteString("-(")
		n.kids[0].format(b, true)
		b.WriteByte(')')
	case opNot:
		open()
		b.WriteString("NOT ")
		n.kids[0].format(b, false)
		closeP()
	case opAnd, opOr:
		open()
		for i, k := range n.kids {
			if i > 0 {
				if n.op == opAnd {
					b.WriteString(" AND ")
				} else {
					b.WriteString(" OR ")
				}
			}
			k.format(b, false)
		}
		closeP()
	case opIsNull, opIsNotNull:
		open()
		n.kids[0].format(b, false)
		if n.op == opIsNull {
			b.WriteString(" IS NULL")
		} else {
			b.WriteString(" IS NOT NULL")
		}
		closeP()
	case opBetween, opNotBetween:
		open()
		n.kids[0].format(b, false)
		b.WriteString(" " + opSymbol[n.op] + " ")
		n.kids[1].format(b, false)
		b.WriteString(" AND ")
		n.kids[2].format(b, false)
		closeP()
	case opIn, opNotIn:
		open()
		n.kids[0].format(b, false)
		b.WriteString(" " + opSymbol[n.op] + " (")
		for i, l := range n.lits {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quote(l))
		}
		b.WriteByte(')')
		closeP()
	case opContains, opNotContains, opStartsWith, opNotStartsWith, opEndsWith, opNotEndsWith:
		open()
		n.kids[0].format(b, false)
		b.WriteString(" " + opSymbol[n.op] + " ")
		b.WriteString(quote(n.lits[0]))
		closeP()
	default: // the binary comparisons
		open()
		n.kids[0].format(b, false)
		b.WriteString(" " + opSymbol[n.op] + " ")
		n.kids[1].format(b, false)
		closeP()
	}
}

func formatLiteral(v value) string {
	switch v.k {
	case kNull:
		return "NULL"
	case kBool:
		if v.b {
			return "TRUE"
		}
		return "FALSE"
	case kInt, kLong:
		return strconv.FormatInt(v.n, 10)
	case kDouble:
		s := strconv.FormatFloat(v.f, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0" // stay a floating-point literal
		}
		return s
	}
	return quote(v.s)
}
