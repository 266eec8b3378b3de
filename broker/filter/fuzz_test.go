package filter

import (
	"errors"
	"strings"
	"testing"

	"github.com/stratamq/strata/broker/message"
)

var seedExprs = []string{
	"a BETWEEN 10 AND 20 AND color = 'red'",
	"a > 5 OR b = 1", "NOT a = 1", "NOT (a = 1)", "a IS NOT NULL AND a <> 'x'",
	"color IN ('red', 'blue', 'green', 'c', 'd', 'e')", "s NOT CONTAINS 'x' OR s STARTSWITH ''",
	"a > 5.0 AND b < 1e21 AND c = 5e-324", "a = -2147483648", "a = - -5", "a = --5\n AND b = 1",
	"/* c */ a = 1 -- d\n", "TRUE = a", "1 = TRUE", "(a = 1) = (b = 1)", "a", "NOT a", "TRUE", "NULL",
	"a = b = c IS NULL", "a > b", "a BETWEEN b AND c", "a NOT BETWEEN 20 AND 10", "-a > -5",
	"s = 'it''s'", "a = 007", "a = 0.0", "a = 'open", "((((a = 1))))", "a = 1 b = 2",
	"$x_1 = 'y' AND TAGS = 'TagA' AND KEYS CONTAINS 'k'", "a between 1 and 2 aNd c In ('x') oR b iS nOt NuLl",
}

// propertyPool holds the values FuzzCompile assigns to properties: numbers of each Java
// type, text, booleans, and the odd ones Double.valueOf accepts.
var propertyPool = []string{"", "1", "5", "-3", "2.5", "abc", "true", "FALSE", "NaN", "red", "10", "3000000000", " 7 ", "0x1p3", "-0"}

// FuzzCompile: Compile never panics, and what compiles prints (String) as an expression that
// compiles back to itself and evaluates the same on any properties.
func FuzzCompile(f *testing.F) {
	for _, s := range seedExprs {
		f.Add(s, uint64(0))
	}
	f.Fuzz(func(t *testing.T, expr string, seed uint64) {
		x, err := Compile(expr)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Column < 1 || se.Line < 1 || se.Offset > len(expr) {
				t.Fatalf("Compile(%q): error %v (%T) without a valid position", expr, err, err)
			}
			return
		}
		s := x.String()
		// The printed form adds parentheses, so it may nest a little deeper and be longer.
		lim := Limits{MaxBytes: 4*len(s) + 64, MaxDepth: 2*DefaultMaxDepth + 2}
		again, err := CompileLimits(s, lim)
		if err != nil {
			t.Fatalf("Compile(%q).String() = %q does not compile: %v", expr, s, err)
		}
		if again.String() != s {
			t.Fatalf("String of %q is not a fixpoint: %q then %q", expr, s, again.String())
		}
		names := x.Properties()
		for round := 0; round < 8; round++ {
			props := map[string]string{}
			for i, n := range names {
				pick := int((seed >> (uint(i+round*3) % 60)) % uint64(len(propertyPool)+1))
				if pick < len(propertyPool) {
					props[n] = propertyPool[pick]
				}
			}
			if a, b := result(x, props), result(again, props); a != b {
				t.Fatalf("%q and its String %q differ on %v: %s vs %s", expr, s, props, a, b)
			}
			seed = seed*6364136223846793005 + 1442695040888963407
		}
	})
}

// FuzzMatch: evaluating on an encoded properties string in place agrees with evaluating on
// the decoded map and on a PropertyList, whatever the bytes.
func FuzzMatch(f *testing.F) {
	for i, s := range seedExprs {
		f.Add(s, message.EncodeProperties(map[string]string{"a": propertyPool[i%len(propertyPool)], "b": "1", "color": "red", "s": "its"}))
	}
	f.Add("a = 1", "a\x011\x02a\x012")
	f.Add("a = 'x\x01y'", "a\x01x\x01y\x02")
	f.Add("a IS NULL", "\x01a\x02a")
	f.Fuzz(func(t *testing.T, expr, props string) {
		x, err := Compile(expr)
		if err != nil {
			return
		}
		got := x.MatchEncoded(props)
		if want := x.Match(MapProperties(message.DecodeProperties(props))); got != want {
			t.Fatalf("%q on %q: MatchEncoded %v, Match on the decoded map %v", expr, props, got, want)
		}
		if l, ok := message.ParsePropertyList(props); ok {
			if want := x.Match(&l); got != want {
				t.Fatalf("%q on %q: MatchEncoded %v, Match on the PropertyList %v", expr, props, got, want)
			}
		}
		if !strings.Contains(props, "\x02") && !strings.Contains(props, "\x01") && got != x.Match(MapProperties{}) {
			t.Fatalf("%q: properties %q hold no property, yet match differently from none", expr, props)
		}
	})
}
