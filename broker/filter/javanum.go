package filter

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// RocketMQ evaluates filters in Java, and a property string meets a number through Java's
// parsers: Integer.valueOf, Long.valueOf and Double.valueOf. They differ from strconv in
// small ways that decide whether a message matches, so they are reproduced here.

// parseJavaInt parses s as Integer.valueOf (bits 32) or Long.valueOf (bits 64) do: an
// optional sign and decimal digits, any Unicode decimal digit (Character.digit) counting,
// no spaces, no underscores, and a value in range.
func parseJavaInt(s string, bits int) (int64, bool) {
	if s == "" {
		return 0, false
	}
	neg := false
	i := 0
	if s[0] == '-' || s[0] == '+' {
		neg, i = s[0] == '-', 1
		if len(s) == 1 {
			return 0, false
		}
	}
	limit := uint64(1)<<(bits-1) - 1 // magnitude of the largest positive value
	if neg {
		limit++
	}
	var n uint64
	for i < len(s) {
		var d uint64
		if c := s[i]; c < utf8.RuneSelf {
			if !isDigit(c) {
				return 0, false
			}
			d = uint64(c - '0')
			i++
		} else {
			r, size := utf8.DecodeRuneInString(s[i:])
			v, ok := unicodeDigit(r)
			if !ok {
				return 0, false
			}
			d = uint64(v)
			i += size
		}
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		return int64(-n), true // -(1<<63) wraps to itself, which is the value wanted
	}
	return int64(n), true
}

// unicodeDigit is Character.digit(r, 10) for a non-ASCII r: the value of a Unicode decimal
// digit (category Nd). Unicode assigns decimal digits only in contiguous runs from 0 to 9,
// so a maximal range of the Nd table starts at a zero.
func unicodeDigit(r rune) (int, bool) {
	for _, rg := range unicode.Nd.R16 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10, true
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10, true
		}
	}
	return 0, false
}

// parseJavaDouble parses s as Double.valueOf does: leading and trailing characters up to
// ' ' are trimmed; then an optional sign and "NaN", "Infinity", a decimal number
// (digits with an optional '.' and exponent) or a hexadecimal one (0x…p…), the last two
// with an optional f, F, d or D suffix. Only ASCII digits count.
func parseJavaDouble(s string) (float64, bool) {
	for len(s) > 0 && s[0] <= ' ' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] <= ' ' {
		s = s[:len(s)-1]
	}
	if s == "" {
		return 0, false
	}
	body := s
	if body[0] == '+' || body[0] == '-' {
		body = body[1:]
	}
	switch body {
	case "NaN":
		return math.NaN(), true
	case "Infinity":
		if s[0] == '-' {
			return math.Inf(-1), true
		}
		return math.Inf(1), true
	}
	if n := len(body); n > 0 && strings.IndexByte("fFdD", body[n-1]) >= 0 {
		body = body[:n-1]
		s = s[:len(s)-1]
	}
	var ok bool
	if len(body) > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X') {
		ok = javaHexFloat(body[2:])
	} else {
		ok = javaDecimalFloat(body)
	}
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, false // unreachable: the syntax was checked above
	}
	return f, true // out of range: ±Inf or 0, as in Java
}

// javaDecimalFloat checks digits* ('.' digits*)? (with a digit somewhere) and an optional
// exponent [eE][+-]?digits+.
func javaDecimalFloat(s string) bool {
	i, digits := 0, 0
	for i < len(s) && isDigit(s[i]) {
		i, digits = i+1, digits+1
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		return false
	}
	if i == len(s) {
		return true
	}
	return exponentLen(s, i) == len(s)-i
}

// javaHexFloat checks what follows 0x: hex* ('.' hex*)? with a hex digit somewhere, then
// a binary exponent [pP][+-]?digits+ (required).
func javaHexFloat(s string) bool {
	i, digits := 0, 0
	isHex := func(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	for i < len(s) && isHex(s[i]) {
		i, digits = i+1, digits+1
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isHex(s[i]) {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 || i == len(s) || s[i] != 'p' && s[i] != 'P' {
		return false
	}
	i++
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	d := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i > d && i == len(s)
}

// compareJavaDouble is Double.compare: numeric order, except that -0.0 is below 0.0 and NaN
// is equal to itself and above everything, +Inf included.
func compareJavaDouble(a, b float64) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	ab, bb := javaDoubleBits(a), javaDoubleBits(b)
	switch {
	case ab == bb:
		return 0
	case ab < bb:
		return -1
	}
	return 1
}

// javaDoubleBits is Double.doubleToLongBits: the IEEE bits, every NaN folded to one.
func javaDoubleBits(f float64) int64 {
	if f != f {
		return 0x7ff8000000000000
	}
	return int64(math.Float64bits(f))
}
