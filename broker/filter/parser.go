package filter

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Limits bound what Compile accepts, so that a hostile expression cannot exhaust memory or
// the stack. Zero fields take the defaults.
type Limits struct {
	// MaxBytes bounds the expression's length.
	MaxBytes int
	// MaxDepth bounds nesting: parentheses, NOT and unary signs, and chained comparisons
	// such as a = b = c each add a level; AND and OR chains do not.
	MaxDepth int
}

// Defaults of Limits.
const (
	DefaultMaxBytes = 16 << 10
	DefaultMaxDepth = 64
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Compile parses an SQL92 property filter with the default Limits. Errors are
// *SyntaxError values that name the column of the bad token.
func Compile(expr string) (*Expr, error) { return CompileLimits(expr, Limits{}) }

// CompileLimits is Compile with explicit limits.
//
// The grammar, type rules and evaluation are RocketMQ's (rmq: filter/parser/SelectorParser.jj,
// filter/expression/*.java); doc.go lists them. One deliberate difference: RocketMQ ignores
// whatever follows the first complete expression ("a = 1 b = 2" filters on a = 1 alone);
// Compile refuses it.
func CompileLimits(expr string, lim Limits) (*Expr, error) {
	lim = lim.withDefaults()
	if len(expr) > lim.MaxBytes {
		return nil, &SyntaxError{Expr: expr, Line: 1, Column: 1,
			Msg: fmt.Sprintf("the expression is %d bytes, more than the limit of %d", len(expr), lim.MaxBytes)}
	}
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	p := &parser{src: expr, toks: toks, lim: lim, names: map[string]int{}}
	if toks[0].kind == tEOF {
		return nil, p.errAt(toks[0], "the expression is empty; write a condition such as a > 5 (or subscribe with TAG * for every message)")
	}
	root, err := p.orExpr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, fmt.Sprintf("unexpected %s after a complete condition (join conditions with AND or OR)", t.describe()))
	}
	if root, err = p.asCondition(root, "the filter"); err != nil {
		return nil, err
	}
	return &Expr{src: expr, root: root, names: p.nameList}, nil
}

type parser struct {
	src      string
	toks     []token
	i        int
	depth    int
	lim      Limits
	names    map[string]int
	nameList []string
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, msg string) error { return errorAt(p.src, t.pos, msg) }

func (p *parser) nodeErr(n *node, msg string) error { return errorAt(p.src, n.pos, msg) }

// text is the source text of n, for error messages.
func (p *parser) text(n *node) string {
	s := strings.TrimSpace(p.src[n.pos:n.end])
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// mk builds an operation node over kids, checking the depth limit.
func (p *parser) mk(o op, kids ...*node) (*node, error) {
	n := &node{op: o, kids: kids, height: 1, pos: kids[0].pos, end: kids[len(kids)-1].end}
	for _, k := range kids {
		n.height = max(n.height, k.height+1)
		n.pos, n.end = min(n.pos, k.pos), max(n.end, k.end)
	}
	if n.height > p.lim.MaxDepth {
		return nil, p.nodeErr(n, fmt.Sprintf("the expression nests deeper than %d levels", p.lim.MaxDepth))
	}
	return n, nil
}

// enter and leave bound the parser's recursion (parentheses and unary operators).
func (p *parser) enter() error {
	p.depth++
	if p.depth > p.lim.MaxDepth {
		return p.errAt(p.peek(), fmt.Sprintf("the expression nests deeper than %d levels", p.lim.MaxDepth))
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// asCondition is RocketMQ's asBooleanExpression: a condition stays as it is, a bare property
// becomes a Boolean cast (TRUE only if the value is a Boolean, which a property string never
// is: so a present property is FALSE and a missing one null), anything else is refused.
func (p *parser) asCondition(n *node, where string) (*node, error) {
	if n.isCondition() {
		return n, nil
	}
	if n.op == opProp {
		return &node{op: opCast, prop: n.prop, name: n.name, height: 1, pos: n.pos, end: n.end}, nil
	}
	return nil, p.nodeErr(n, fmt.Sprintf("%s is a value, not a condition (%s needs a comparison such as color = 'red')", p.text(n), where))
}

// logic parses sub (OP sub)* into one n-ary node. AND and OR are associative in RocketMQ's
// three-valued, left-to-right, short-circuit evaluation, so nested chains flatten too.
func (p *parser) logic(o op, kw tokKind, sub func() (*node, error)) (*node, error) {
	first, err := sub()
	if err != nil || p.peek().kind != kw {
		return first, err
	}
	var kids []*node
	add := func(n *node, t token) error {
		c, err := p.asCondition(n, strings.ToUpper(t.text))
		if err != nil {
			return err
		}
		if c.op == o {
			kids = append(kids, c.kids...)
		} else {
			kids = append(kids, c)
		}
		return nil
	}
	if err := add(first, p.peek()); err != nil {
		return nil, err
	}
	for p.peek().kind == kw {
		t := p.next()
		n, err := sub()
		if err != nil {
			return nil, err
		}
		if err := add(n, t); err != nil {
			return nil, err
		}
	}
	return p.mk(o, kids...)
}

func (p *parser) orExpr() (*node, error) { return p.logic(opOr, tOr, p.andExpr) }

func (p *parser) andExpr() (*node, error) { return p.logic(opAnd, tAnd, p.equality) }

// equality: comparison ( = comparison | <> comparison | IS NULL | IS NOT NULL )*
func (p *parser) equality() (*node, error) {
	left, err := p.comparison()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch t.kind {
		case tEq, tNe:
			p.next()
			right, err := p.comparison()
			if err != nil {
				return nil, err
			}
			if err := p.checkEqualOperands(t, left, right); err != nil {
				return nil, err
			}
			o := opEq
			if t.kind == tNe {
				o = opNe
			}
			if left, err = p.mk(o, left, right); err != nil {
				return nil, err
			}
		case tIs:
			p.next()
			o := opIsNull
			if p.peek().kind == tNot {
				p.next()
				o = opIsNotNull
			}
			nt := p.next()
			if nt.kind != tNull {
				return nil, p.errAt(nt, fmt.Sprintf("unexpected %s (expected IS NULL or IS NOT NULL)", nt.describe()))
			}
			if left, err = p.mk(o, left); err != nil {
				return nil, err
			}
			left.end = nt.pos + len(nt.text)
		default:
			return left, nil
		}
	}
}

// checkEqualOperands holds RocketMQ's compile-time rules of = and <>: NULL is not an
// operand (IS NULL is), and a TRUE or FALSE literal on the left takes only a Boolean literal
// on the right when both sides are literals.
func (p *parser) checkEqualOperands(t token, l, r *node) error {
	for _, n := range []*node{l, r} {
		if n.op == opConst && n.val.k == kNull {
			return p.nodeErr(n, fmt.Sprintf("NULL cannot be compared with %s; use IS NULL or IS NOT NULL", t.text))
		}
	}
	if l.op == opConst && r.op == opConst && l.isCondition() && !r.isCondition() {
		return p.nodeErr(r, fmt.Sprintf("%s cannot be compared with %s", p.text(l), p.text(r)))
	}
	return nil
}

// checkOrderOperand is RocketMQ's checkLessThanOperand: <, <=, >, >= and BETWEEN take
// numbers, properties and negations, never strings, TRUE, FALSE, NULL or conditions.
func (p *parser) checkOrderOperand(t token, n *node) error {
	switch {
	case n.op == opConst && n.val.k == kString:
		return p.nodeErr(n, fmt.Sprintf("%s cannot be compared with %s: it takes numbers and properties (strings only with = and <>)", p.text(n), strings.ToUpper(t.text)))
	case n.op == opConst && !n.val.isNumber(), n.isCondition():
		return p.nodeErr(n, fmt.Sprintf("%s cannot be compared with %s: it takes numbers and properties", p.text(n), strings.ToUpper(t.text)))
	}
	return nil
}

var orderOps = map[tokKind]op{tGt: opGt, tGe: opGe, tLt: opLt, tLe: opLe}

var stringOps = map[tokKind][2]op{
	tContains: {opContains, opNotContains}, tStartsWith: {opStartsWith, opNotStartsWith},
	tEndsWith: {opEndsWith, opNotEndsWith},
}

// comparison: unary ( > unary | >= | < | <= | [NOT] CONTAINS 's' | [NOT] STARTSWITH 's' |
// [NOT] ENDSWITH 's' | [NOT] BETWEEN unary AND unary | [NOT] IN ('s', ...) )*
func (p *parser) comparison() (*node, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if o, ok := orderOps[t.kind]; ok {
			p.next()
			right, err := p.unary()
			if err != nil {
				return nil, err
			}
			if err := p.checkOrderOperand(t, left); err != nil {
				return nil, err
			}
			if err := p.checkOrderOperand(t, right); err != nil {
				return nil, err
			}
			if left, err = p.mk(o, left, right); err != nil {
				return nil, err
			}
			continue
		}
		not := false
		opTok := t
		if t.kind == tNot {
			switch p.toks[p.i+1].kind {
			case tContains, tStartsWith, tEndsWith, tBetween, tIn:
				not = true
				p.next()
				opTok = p.peek()
			default:
				nt := p.toks[p.i+1]
				return nil, p.errAt(nt, fmt.Sprintf("unexpected %s after NOT (expected BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH; to negate a condition write NOT (condition))", nt.describe()))
			}
		}
		pick := func(pair [2]op) op {
			if not {
				return pair[1]
			}
			return pair[0]
		}
		switch opTok.kind {
		case tContains, tStartsWith, tEndsWith:
			p.next()
			lit, err := p.stringLiteral(opTok)
			if err != nil {
				return nil, err
			}
			if left, err = p.mk(pick(stringOps[opTok.kind]), left); err != nil {
				return nil, err
			}
			left.lits = []string{lit.str}
			left.end = lit.pos + len(lit.text)
		case tBetween:
			p.next()
			lo, err := p.unary()
			if err != nil {
				return nil, err
			}
			if at := p.next(); at.kind != tAnd {
				return nil, p.errAt(at, fmt.Sprintf("unexpected %s (expected AND between the bounds of BETWEEN)", at.describe()))
			}
			hi, err := p.unary()
			if err != nil {
				return nil, err
			}
			for _, n := range []*node{left, lo, hi} {
				if err := p.checkOrderOperand(opTok, n); err != nil {
					return nil, err
				}
			}
			if !not && lo.op == opConst && hi.op == opConst {
				// RocketMQ checks constant bounds at compile time (createBetween).
				if c, _ := compareJava(hi.val, lo.val); c < 0 {
					return nil, p.nodeErr(lo, fmt.Sprintf("BETWEEN %s AND %s matches nothing: the lower bound must come first", p.text(lo), p.text(hi)))
				}
			}
			if left, err = p.mk(pick([2]op{opBetween, opNotBetween}), left, lo, hi); err != nil {
				return nil, err
			}
		case tIn:
			p.next()
			if left.op != opProp {
				return nil, p.nodeErr(left, fmt.Sprintf("%s IN (...) needs a property on the left, such as color IN ('red', 'blue')", p.text(left)))
			}
			lits, end, err := p.inList()
			if err != nil {
				return nil, err
			}
			if left, err = p.mk(pick([2]op{opIn, opNotIn}), left); err != nil {
				return nil, err
			}
			left.lits, left.end = lits, end
			if len(lits) >= 5 {
				left.set = make(map[string]struct{}, len(lits))
				for _, l := range lits {
					left.set[l] = struct{}{}
				}
			}
		default:
			return left, nil
		}
	}
}

func (p *parser) stringLiteral(after token) (token, error) {
	t := p.next()
	if t.kind != tString {
		return t, p.errAt(t, fmt.Sprintf("unexpected %s (%s takes a string literal such as 'abc')", t.describe(), strings.ToUpper(after.text)))
	}
	return t, nil
}

// inList parses ( 'a', 'b', ... ) and returns the strings and the end offset.
func (p *parser) inList() ([]string, int, error) {
	if t := p.next(); t.kind != tLParen {
		return nil, 0, p.errAt(t, fmt.Sprintf("unexpected %s (expected ( after IN)", t.describe()))
	}
	var lits []string
	for {
		t := p.next()
		if t.kind != tString {
			return nil, 0, p.errAt(t, fmt.Sprintf("unexpected %s (IN lists hold string literals such as 'abc')", t.describe()))
		}
		lits = append(lits, t.str)
		switch sep := p.next(); sep.kind {
		case tComma:
		case tRParen:
			return lits, sep.pos + 1, nil
		default:
			return nil, 0, p.errAt(sep, fmt.Sprintf("unexpected %s (expected , or ) in the IN list)", sep.describe()))
		}
	}
}

// unary: + unary | - unary | NOT unary | primary
func (p *parser) unary() (*node, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	t := p.peek()
	switch t.kind {
	case tPlus:
		p.next()
		return p.unary()
	case tMinus, tNot:
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.kind == tNot {
			if x, err = p.asCondition(x, "NOT"); err != nil {
				return nil, err
			}
		}
		o := opNeg
		if t.kind == tNot {
			o = opNot
		}
		n, err := p.mk(o, x)
		if err != nil {
			return nil, err
		}
		n.pos = t.pos
		return n, nil
	}
	return p.primary()
}

// primary: literal | property | ( orExpr )
func (p *parser) primary() (*node, error) {
	t := p.next()
	leaf := func(v value) (*node, error) {
		return &node{op: opConst, val: v, height: 1, pos: t.pos, end: t.pos + len(t.text)}, nil
	}
	switch t.kind {
	case tString:
		return leaf(value{k: kString, s: t.str})
	case tTrue:
		return leaf(trueV)
	case tFalse:
		return leaf(falseV)
	case tNull:
		return leaf(nullV)
	case tInt:
		digits := strings.TrimRight(t.text, "lL")
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return nil, p.errAt(t, fmt.Sprintf("the integer %s is out of range (at most %d)", t.text, int64(math.MaxInt64)))
		}
		if n <= math.MaxInt32 {
			return leaf(value{k: kInt, n: n})
		}
		return leaf(value{k: kLong, n: n})
	case tFloat:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, p.errAt(t, fmt.Sprintf("%s is not a number", t.text))
		}
		// RocketMQ refuses what does not lie in [Double.MIN_VALUE, Double.MAX_VALUE]
		// (ConstantExpression.createFloat): infinity, and also zero.
		if math.IsInf(f, 0) {
			return nil, p.errAt(t, fmt.Sprintf("the number %s is out of range (at most %g)", t.text, math.MaxFloat64))
		}
		if f == 0 {
			return nil, p.errAt(t, fmt.Sprintf("the number %s is below 4.9E-324, the smallest floating-point literal RocketMQ accepts; write 0 (an integer) instead", t.text))
		}
		return leaf(value{k: kDouble, f: f})
	case tIdent:
		i, ok := p.names[t.text]
		if !ok {
			i = len(p.nameList)
			p.names[t.text] = i
			p.nameList = append(p.nameList, t.text)
		}
		return &node{op: opProp, prop: i, name: t.text, height: 1, pos: t.pos, end: t.pos + len(t.text)}, nil
	case tLParen:
		// unary() counted this level already.
		x, err := p.orExpr()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, p.errAt(c, fmt.Sprintf("unexpected %s (expected ) to close the ( at column %d)", c.describe(), errorAt(p.src, t.pos, "").Column))
		}
		return x, nil
	}
	return nil, p.errAt(t, fmt.Sprintf("unexpected %s (expected a value)", t.describe()))
}
