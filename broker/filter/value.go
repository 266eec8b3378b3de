package filter

import (
	"strings"
)

// kind is the Java type of a value during evaluation. Literals are Integer (an integer that
// fits 32 bits), Long (a larger one), Double, String or Boolean; properties are Strings;
// NULL and missing properties are null.
type kind uint8

const (
	kNull kind = iota
	kBool
	kInt // java.lang.Integer
	kLong
	kDouble
	kString
)

// value is one Java value; n holds Integer and Long values.
type value struct {
	k kind
	b bool
	n int64
	f float64
	s string
}

var (
	nullV  = value{}
	trueV  = value{k: kBool, b: true}
	falseV = value{k: kBool}
)

func (v value) isNumber() bool { return v.k == kInt || v.k == kLong || v.k == kDouble }

// compareJava is ComparisonExpression.__compare with string conversion on, which is how
// RocketMQ compiles every filter (SelectorParser.parse sets CONVERT_STRING_EXPRESSIONS). Two
// values of one type compare naturally. Otherwise the left operand decides: a number meets a
// number by widening (Integer → Long → Double); a number meets a String by parsing the String
// as the number's type (Integer.valueOf for an Integer literal, so "3000000000" against 5 is
// an error, not a comparison); a String meets a Boolean by Boolean.valueOf (only "true", in
// any case, is true); a Boolean meets a String by a ClassCastException in RocketMQ, an error
// here too. Any other pair is unequal (-1). ok is false where Java throws: the whole
// evaluation then fails and the message does not match.
//
// Strings never need an order: '<' and friends convert two strings to doubles before they
// get here, so for two strings only equality matters.
func compareJava(l, r value) (c int, ok bool) {
	if l.k == r.k {
		switch l.k {
		case kBool:
			return compareBool(l.b, r.b), true
		case kInt, kLong:
			return compareInt(l.n, r.n), true
		case kDouble:
			return compareJavaDouble(l.f, r.f), true
		case kString:
			if l.s == r.s {
				return 0, true
			}
			return 1, true // only equality is ever asked of two strings (and Compare would leak them)
		}
		return 0, true
	}
	switch l.k {
	case kBool:
		if r.k == kString {
			return 0, false
		}
	case kInt, kLong:
		switch r.k {
		case kInt, kLong:
			return compareInt(l.n, r.n), true
		case kDouble:
			return compareJavaDouble(float64(l.n), r.f), true
		case kString:
			n, ok := parseJavaInt(r.s, intBits(l.k))
			if !ok {
				return 0, false
			}
			return compareInt(l.n, n), true
		}
	case kDouble:
		switch r.k {
		case kInt, kLong:
			return compareJavaDouble(l.f, float64(r.n)), true
		case kString:
			f, ok := parseJavaDouble(r.s)
			if !ok {
				return 0, false
			}
			return compareJavaDouble(l.f, f), true
		}
	case kString:
		switch r.k {
		case kBool:
			return compareBool(strings.EqualFold(l.s, "true"), r.b), true
		case kInt, kLong:
			n, ok := parseJavaInt(l.s, intBits(r.k))
			if !ok {
				return 0, false
			}
			return compareInt(n, r.n), true
		case kDouble:
			f, ok := parseJavaDouble(l.s)
			if !ok {
				return 0, false
			}
			return compareJavaDouble(f, r.f), true
		}
	}
	return -1, true
}

func intBits(k kind) int {
	if k == kInt {
		return 32
	}
	return 64
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case b:
		return -1
	}
	return 1
}
