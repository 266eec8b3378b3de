package filter

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// The tokens of RocketMQ's SelectorParser.jj (rmq: filter/parser/SelectorParser.jj): keywords
// and identifiers are ASCII and keywords are case-insensitive; numbers are decimal integers
// with an optional L suffix or floating-point literals; strings are single-quoted with ''
// for a quote; "--" comments run to the end of a line and "/* */" comments nest nothing.

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tInt
	tFloat
	tString
	// keywords
	tNot
	tAnd
	tOr
	tBetween
	tIn
	tTrue
	tFalse
	tNull
	tIs
	tContains
	tStartsWith
	tEndsWith
	// punctuation
	tEq
	tNe
	tGt
	tGe
	tLt
	tLe
	tLParen
	tRParen
	tComma
	tPlus
	tMinus
)

var keywords = map[string]tokKind{
	"NOT": tNot, "AND": tAnd, "OR": tOr, "BETWEEN": tBetween, "IN": tIn, "TRUE": tTrue,
	"FALSE": tFalse, "NULL": tNull, "IS": tIs, "CONTAINS": tContains,
	"STARTSWITH": tStartsWith, "ENDSWITH": tEndsWith,
}

// maxKeywordLen is the length of the longest keyword (STARTSWITH): longer words are
// identifiers without a map lookup.
const maxKeywordLen = 10

type token struct {
	kind tokKind
	pos  int    // byte offset in the expression
	text string // the source text of the token
	str  string // a string literal's value, quotes undone
}

// describe names a token for an error message.
func (t token) describe() string {
	if t.kind == tEOF {
		return "end of expression"
	}
	return fmt.Sprintf("%q", t.text)
}

// lex splits src into tokens, ending with tEOF. Whitespace is what the grammar skips:
// space, tab, newline, carriage return and form feed.
func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; ; {
		i = skipSpaceAndComments(src, i)
		if i >= len(src) {
			return append(toks, token{kind: tEOF, pos: len(src)}), nil
		}
		t, err := lexOne(src, i)
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		i += len(t.text)
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

func skipSpaceAndComments(src string, i int) int {
	for i < len(src) {
		switch {
		case isSpace(src[i]):
			i++
		case strings.HasPrefix(src[i:], "--"):
			// A line comment needs its line terminator; without one the grammar reads
			// two minus signs.
			end := strings.IndexAny(src[i:], "\n\r")
			if end < 0 {
				return i
			}
			i += end + 1
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return i // lexOne reports the unterminated comment
			}
			i += 2 + end + 2
		default:
			return i
		}
	}
	return i
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '$'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || isDigit(c) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func lexOne(src string, i int) (token, error) {
	c := src[i]
	tok := func(k tokKind, n int) (token, error) { return token{kind: k, pos: i, text: src[i : i+n]}, nil }
	switch {
	case isIdentStart(c):
		n := 1
		for i+n < len(src) && isIdentPart(src[i+n]) {
			n++
		}
		word := src[i : i+n]
		if n <= maxKeywordLen {
			if k, ok := keywords[strings.ToUpper(word)]; ok {
				return tok(k, n)
			}
		}
		return tok(tIdent, n)
	case isDigit(c) || c == '.' && i+1 < len(src) && isDigit(src[i+1]):
		return lexNumber(src, i)
	case c == '\'':
		var b strings.Builder
		for j := i + 1; j < len(src); j++ {
			if src[j] != '\'' {
				b.WriteByte(src[j])
				continue
			}
			if j+1 < len(src) && src[j+1] == '\'' {
				b.WriteByte('\'')
				j++
				continue
			}
			return token{kind: tString, pos: i, text: src[i : j+1], str: b.String()}, nil
		}
		return token{}, errorAt(src, i, "the string starting here has no closing quote (write '' for a quote inside a string)")
	case c == '=':
		return tok(tEq, 1)
	case c == '<':
		if i+1 < len(src) && src[i+1] == '>' {
			return tok(tNe, 2)
		}
		if i+1 < len(src) && src[i+1] == '=' {
			return tok(tLe, 2)
		}
		return tok(tLt, 1)
	case c == '>':
		if i+1 < len(src) && src[i+1] == '=' {
			return tok(tGe, 2)
		}
		return tok(tGt, 1)
	case c == '(':
		return tok(tLParen, 1)
	case c == ')':
		return tok(tRParen, 1)
	case c == ',':
		return tok(tComma, 1)
	case c == '+':
		return tok(tPlus, 1)
	case c == '-':
		return tok(tMinus, 1)
	case c == '/' && strings.HasPrefix(src[i:], "/*"):
		return token{}, errorAt(src, i, "the comment starting here has no closing */")
	}
	r, _ := utf8.DecodeRuneInString(src[i:])
	hint := ""
	switch {
	case c == '"':
		hint = " (strings take single quotes: 'text')"
	case c == '!':
		hint = " (not equal is <>)"
	case r >= utf8.RuneSelf:
		hint = " (property names are ASCII letters, digits, '_' and '$')"
	}
	return token{}, errorAt(src, i, fmt.Sprintf("unexpected character %q%s", r, hint))
}

// lexNumber reads the longest DECIMAL_LITERAL or FLOATING_POINT_LITERAL at i:
//
//	DECIMAL: "0" | [1-9][0-9]* [lL]?
//	FLOAT:   [0-9]+ "." [0-9]* EXP? | "." [0-9]+ EXP? | [0-9]+ EXP      EXP: [eE] [+-]? [0-9]+
//
// so "007" is the integer 0 followed by more tokens, as in RocketMQ.
func lexNumber(src string, i int) (token, error) {
	j := i
	for j < len(src) && isDigit(src[j]) {
		j++
	}
	intEnd := j
	float := false
	if j < len(src) && src[j] == '.' {
		float = true
		j++
		for j < len(src) && isDigit(src[j]) {
			j++
		}
	}
	if e := exponentLen(src, j); e > 0 {
		float = true
		j += e
	}
	if float {
		return token{kind: tFloat, pos: i, text: src[i:j]}, nil
	}
	if src[i] == '0' {
		return token{kind: tInt, pos: i, text: src[i : i+1]}, nil
	}
	j = intEnd
	if j < len(src) && (src[j] == 'l' || src[j] == 'L') {
		j++
	}
	return token{kind: tInt, pos: i, text: src[i:j]}, nil
}

// exponentLen is the length of an exponent ([eE][+-]?[0-9]+) at j, 0 if there is none.
func exponentLen(src string, j int) int {
	if j >= len(src) || src[j] != 'e' && src[j] != 'E' {
		return 0
	}
	k := j + 1
	if k < len(src) && (src[k] == '+' || src[k] == '-') {
		k++
	}
	d := k
	for k < len(src) && isDigit(src[k]) {
		k++
	}
	if k == d {
		return 0
	}
	return k - j
}
