package filter

import (
	"strings"
	"unsafe"
)

// Match reports whether a message with these properties passes: the expression must
// evaluate to TRUE. Null (unknown) and evaluation errors — where RocketMQ's evaluator
// throws, e.g. a > 5 with a = 'abc' — do not match.
func (x *Expr) Match(p Properties) bool {
	if x == nil {
		return true
	}
	var buf [inlineSlots]slot
	var vbuf [inlineSlots]string
	vals := vbuf[:0]
	sl := x.slots(&buf)
	if len(x.names) > inlineSlots {
		vals = make([]string, 0, len(x.names))
	}
	// Looked up in advance: an interface call inside eval would send the slots to the heap.
	for i, name := range x.names {
		v, ok := p.Get(name)
		vals = append(vals, v)
		sl[i].state = 1
		if ok {
			sl[i].state = 2
		}
	}
	return cond(x.root, "", vals, sl) == triTrue
}

// MatchEncoded is Match on an encoded properties string (RocketMQ's "k\x01v\x02" layout, as
// in a stored record; message.RecordHeader.Properties). It reads the properties in place and
// allocates nothing when the expression reads at most 16 distinct properties. A key that
// appears twice has its last value, as message.DecodeProperties reads it.
func (x *Expr) MatchEncoded(props string) bool {
	if x == nil {
		return true
	}
	var buf [inlineSlots]slot
	return cond(x.root, props, nil, x.slots(&buf)) == triTrue
}

// MatchEncodedBytes is MatchEncoded on bytes, such as a stored record's properties
// (message.RecordProperties), without copying them. props must not change during the call.
func (x *Expr) MatchEncodedBytes(props []byte) bool {
	// A string view of props: evaluation keeps no string beyond the call (slots hold
	// offsets, values live on the stack), so nothing can see the bytes after it returns.
	return x.MatchEncoded(unsafe.String(unsafe.SliceData(props), len(props)))
}

// inlineSlots property values are memoised on the stack during one evaluation.
const inlineSlots = 16

func (x *Expr) slots(buf *[inlineSlots]slot) []slot {
	if len(x.names) <= inlineSlots {
		return buf[:len(x.names)]
	}
	return make([]slot, len(x.names))
}

// slot memoises one property for one evaluation: a property is looked up at most once, and
// only when the evaluation reaches it. It holds offsets, not a string, so that the slots
// stay on the stack.
type slot struct {
	state      uint8 // 0 not looked up, 1 missing, 2 present
	start, end int   // the value in the encoded properties
}

// get returns property i. Its value comes from vals when set (Match), else from the encoded
// raw properties. raw, vals and the slots are separate arguments all the way down eval: a
// struct holding them would go to the heap whole, because eval returns property values and
// escape analysis is coarse on recursive functions.
func get(raw string, vals []string, sl []slot, i int, name string) value {
	s := &sl[i]
	if s.state == 0 {
		start, end, ok := encodedValue(raw, name)
		s.state, s.start, s.end = 1, start, end
		if ok {
			s.state = 2
		}
	}
	switch {
	case s.state == 1:
		return nullV
	case vals != nil:
		return value{k: kString, s: vals[i]}
	}
	return value{k: kString, s: raw[s.start:s.end]}
}

// encodedValue locates the last value of key in an encoded properties string.
func encodedValue(s, key string) (start, end int, found bool) {
	for pos := 0; pos < len(s); {
		next := len(s)
		if i := strings.IndexByte(s[pos:], '\x02'); i >= 0 {
			next = pos + i
		}
		piece := s[pos:next]
		if len(piece) > len(key) && piece[len(key)] == '\x01' && piece[:len(key)] == key {
			start, end, found = pos+len(key)+1, next, true
		}
		pos = next + 1
	}
	return start, end, found
}

// tri is a condition's outcome: RocketMQ's Boolean TRUE, FALSE or null, or an error where
// its evaluator throws. An error ends the whole evaluation, whatever the operators around it
// (so "a > 5 OR b = 1" with a = 'abc' does not match even when b is 1, while
// "b = 1 OR a > 5" does: OR stops at its first TRUE).
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triNull
	triErr
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// cond evaluates a condition node (node.isCondition).
func cond(n *node, raw string, vals []string, sl []slot) tri {
	switch n.op {
	case opConst:
		switch {
		case n.val.k == kNull:
			return triNull
		case n.val.b:
			return triTrue
		}
		return triFalse
	case opCast:
		if get(raw, vals, sl, n.prop, n.name).k == kNull {
			return triNull
		}
		return triFalse // a String is not a Boolean
	case opNot:
		switch c := cond(n.kids[0], raw, vals, sl); c {
		case triTrue:
			return triFalse
		case triFalse:
			return triTrue
		default:
			return c
		}
	case opAnd, opOr:
		// LogicExpression: AND is FALSE at its first FALSE operand, OR TRUE at its first
		// TRUE; otherwise null if an operand was null.
		decides := triOf(n.op == opOr)
		sawNull := false
		for _, k := range n.kids {
			switch c := cond(k, raw, vals, sl); c {
			case decides, triErr:
				return c
			case triNull:
				sawNull = true
			}
		}
		if sawNull {
			return triNull
		}
		return triOf(n.op == opAnd)
	case opEq, opNe:
		l, ok := operand(n.kids[0], raw, vals, sl)
		if !ok {
			return triErr
		}
		r, ok := operand(n.kids[1], raw, vals, sl)
		if !ok {
			return triErr
		}
		c := equal(l, r)
		if n.op == opNe && c <= triTrue {
			c ^= 1
		}
		return c
	case opIsNull, opIsNotNull:
		v, ok := operand(n.kids[0], raw, vals, sl)
		if !ok {
			return triErr
		}
		return triOf((v.k == kNull) == (n.op == opIsNull))
	case opGt, opGe, opLt, opLe:
		return order(n.op, n.kids[0], n.kids[1], raw, vals, sl)
	case opBetween, opNotBetween:
		// createBetween: x >= lo AND x <= hi; createNotBetween: x < lo OR x > hi.
		lo, hi, decides := opGe, opLe, triFalse
		if n.op == opNotBetween {
			lo, hi, decides = opLt, opGt, triTrue
		}
		l := order(lo, n.kids[0], n.kids[1], raw, vals, sl)
		if l == decides || l == triErr {
			return l
		}
		switch r := order(hi, n.kids[0], n.kids[2], raw, vals, sl); r {
		case decides, triErr, triNull:
			return r
		}
		return l // TRUE for AND, FALSE for OR, or null
	case opIn, opNotIn:
		v, ok := operand(n.kids[0], raw, vals, sl)
		if !ok {
			return triErr
		}
		if v.k != kString {
			return triNull
		}
		var in bool
		if n.set != nil {
			_, in = n.set[v.s]
		} else {
			for _, l := range n.lits {
				if l == v.s {
					in = true
					break
				}
			}
		}
		return triOf(in != (n.op == opNotIn))
	}
	return stringOp(n, raw, vals, sl)
}

// stringOp evaluates CONTAINS, STARTSWITH, ENDSWITH and their negations: FALSE, never null,
// on anything but a string, and on an empty literal (checked before the operand).
func stringOp(n *node, raw string, vals []string, sl []slot) tri {
	lit := n.lits[0]
	if lit == "" {
		return triFalse
	}
	v, ok := operand(n.kids[0], raw, vals, sl)
	if !ok {
		return triErr
	}
	if v.k != kString {
		return triFalse
	}
	var has bool
	switch n.op {
	case opContains, opNotContains:
		has = strings.Contains(v.s, lit)
	case opStartsWith, opNotStartsWith:
		has = strings.HasPrefix(v.s, lit)
	default:
		has = strings.HasSuffix(v.s, lit)
	}
	negated := n.op == opNotContains || n.op == opNotStartsWith || n.op == opNotEndsWith
	return triOf(has != negated)
}

// operand evaluates n as a value: a literal, a property, a negation, or a condition as a
// Boolean (in "(a = 1) = (b = 1)"). ok is false on an error.
func operand(n *node, raw string, vals []string, sl []slot) (value, bool) {
	switch n.op {
	case opConst:
		return n.val, true
	case opProp:
		return get(raw, vals, sl, n.prop, n.name), true
	case opNeg:
		v, ok := operand(n.kids[0], raw, vals, sl)
		switch {
		case !ok:
			return v, false
		case v.k == kInt:
			return value{k: kInt, n: int64(-int32(v.n))}, true
		case v.k == kLong:
			return value{k: kLong, n: -v.n}, true
		case v.k == kDouble:
			return value{k: kDouble, f: -v.f}, true
		}
		return nullV, true // only numbers negate
	}
	switch cond(n, raw, vals, sl) {
	case triTrue:
		return trueV, true
	case triFalse:
		return falseV, true
	case triNull:
		return nullV, true
	}
	return nullV, false
}

// equal is ComparisonExpression.doCreateEqual: null on the left gives null, null on the
// right only FALSE, null on both sides TRUE (which is IS NULL); otherwise compareJava.
func equal(l, r value) tri {
	switch {
	case l.k == kNull && r.k == kNull:
		return triTrue
	case l.k == kNull:
		return triNull
	case r.k == kNull:
		return triFalse
	}
	c, ok := compareJava(l, r)
	if !ok {
		return triErr
	}
	return triOf(c == 0)
}

// order is ComparisonExpression.evaluate for <, <=, > and >=: null if either side is null
// (the right one is not evaluated when the left is null); two strings are compared as
// doubles, an error if either is not a number; anything else through compareJava.
func order(o op, ln, rn *node, raw string, vals []string, sl []slot) tri {
	l, ok := operand(ln, raw, vals, sl)
	if !ok {
		return triErr
	}
	if l.k == kNull {
		return triNull
	}
	r, ok := operand(rn, raw, vals, sl)
	if !ok {
		return triErr
	}
	if r.k == kNull {
		return triNull
	}
	var c int
	if l.k == kString && r.k == kString {
		lf, ok := parseJavaDouble(l.s)
		if !ok {
			return triErr
		}
		rf, ok := parseJavaDouble(r.s)
		if !ok {
			return triErr
		}
		c = compareJavaDouble(lf, rf)
	} else if c, ok = compareJava(l, r); !ok {
		return triErr
	}
	switch o {
	case opGt:
		return triOf(c > 0)
	case opGe:
		return triOf(c >= 0)
	case opLt:
		return triOf(c < 0)
	}
	return triOf(c <= 0)
}
