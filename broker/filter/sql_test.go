package filter

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stratamq/strata/broker/message"
)

// result evaluates x on props and names the three-valued outcome, or ERROR where RocketMQ's
// evaluator throws.
func result(x *Expr, props map[string]string) string {
	var buf [inlineSlots]slot
	switch cond(x.root, message.EncodeProperties(props), nil, x.slots(&buf)) {
	case triTrue:
		return "TRUE"
	case triFalse:
		return "FALSE"
	case triNull:
		return "NULL"
	}
	return "ERROR"
}

// p builds properties from "k=v" pairs.
func p(kv ...string) map[string]string {
	m := map[string]string{}
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = v
	}
	return m
}

// TestSemantics pins RocketMQ's evaluation (rmq: filter/expression/ComparisonExpression.java,
// LogicExpression.java, UnaryExpression.java) case by case.
func TestSemantics(t *testing.T) {
	for _, tc := range []struct {
		expr  string
		props map[string]string
		want  string
	}{
		// A 32-bit integer literal parses the property with Integer.valueOf.
		{"a > 5", p("a=6"), "TRUE"},
		{"a > 5", p("a=5"), "FALSE"},
		{"a > 5", p(), "NULL"},
		{"a > 5", p("a=abc"), "ERROR"},
		{"a > 5", p("a=5.5"), "ERROR"},
		{"a > 5", p("a= 6"), "ERROR"},
		{"a > 5", p("a=+6"), "TRUE"},
		{"a > 5", p("a=0006"), "TRUE"},
		{"a > 5", p("a=3000000000"), "ERROR"},
		{"a > 5", p("a=٦"), "TRUE"}, // ARABIC-INDIC DIGIT SIX: Character.digit counts it
		{"a < 5", p("a=-2147483648"), "TRUE"},
		{"a < 5", p("a=-2147483649"), "ERROR"},
		{"5 < a", p("a=6"), "TRUE"},
		{"5 < a", p("a=x"), "ERROR"},
		// Beyond 32 bits the literal is a Long.
		{"a > 2147483648", p("a=3000000000"), "TRUE"},
		{"a > 2147483648", p("a=9223372036854775807"), "TRUE"},
		{"a > 2147483648", p("a=9223372036854775808"), "ERROR"},
		{"a = -2147483648", p("a=-2147483648"), "TRUE"},
		{"a = 5L", p("a=5"), "TRUE"},
		// A floating-point literal parses the property with Double.valueOf.
		{"a > 5.0", p("a=5.5"), "TRUE"},
		{"a > 5.0", p("a= 6 "), "TRUE"}, // Double.valueOf trims
		{"a > 5.0", p("a=6f"), "TRUE"},
		{"a > 5.0", p("a=6D"), "TRUE"},
		{"a > 5.0", p("a=1e1"), "TRUE"},
		{"a > 5.0", p("a=0x1p3"), "TRUE"},
		{"a > 5.0", p("a=.6e1"), "TRUE"},
		{"a > 5.0", p("a=NaN"), "TRUE"}, // Double.compare: NaN is above everything
		{"a > 5.0", p("a=Infinity"), "TRUE"},
		{"a > 5.0", p("a=-Infinity"), "FALSE"},
		{"a > 5.0", p("a=inf"), "ERROR"},
		{"a > 5.0", p("a=1_0"), "ERROR"},
		{"a > 5.0", p("a=6ff"), "ERROR"},
		{"a > 5.0", p("a=٦"), "ERROR"}, // Double.valueOf takes ASCII digits only
		{"a > 3.1E10", p("a=31415000000"), "TRUE"},
		{"a > 1e2", p("a=101"), "TRUE"},
		{"a = 5.0", p("a=5"), "TRUE"},
		{"a = 5", p("a=5.0"), "ERROR"},
		{"a = 5", p("a=05"), "TRUE"},
		{"a = -0.5", p("a=-0.5"), "TRUE"},
		{"a <> 5", p("a=6"), "TRUE"},
		{"a <> 5", p(), "NULL"},
		{"a <> 5", p("a=x"), "ERROR"},
		// Integer meets Double by widening.
		{"a BETWEEN 1 AND 2.5", p("a=2"), "TRUE"},
		{"a BETWEEN 1 AND 2.5", p("a=2.5"), "ERROR"}, // a >= 1 parses a as an Integer
		{"1.5 < 2", nil, "TRUE"},
		{"2147483648 > 1", nil, "TRUE"},
		// Two properties: ordering parses both as doubles; equality compares strings.
		{"a > b", p("a=10", "b=9"), "TRUE"},
		{"a > b", p("a=abc", "b=1"), "ERROR"},
		{"a > b", p("a=1"), "NULL"},
		{"a < b", p("a=-0", "b=0"), "TRUE"}, // Double.compare(-0.0, 0.0) < 0
		{"a = b", p("a=3.14", "b=3.14"), "TRUE"},
		{"a = b", p("a=1", "b=1.0"), "FALSE"},
		{"a = b", p(), "TRUE"},
		{"a = b", p("b=1"), "NULL"},
		{"a = b", p("a=1"), "FALSE"},
		{"a <> b", p(), "FALSE"},
		{"a <> b", p("b=1"), "NULL"},
		{"a <> b", p("a=1"), "TRUE"},
		// Strings.
		{"color = 'red'", p("color=red"), "TRUE"},
		{"color = 'red'", p("color=Red"), "FALSE"},
		{"'red' = color", p("color=red"), "TRUE"},
		{"color = 'red'", p(), "NULL"},
		{"color <> 'red'", p("color=blue"), "TRUE"},
		{"'1' = '1.0'", nil, "FALSE"},
		{"TAGS = '''''tag'''''", p("TAGS=''tag''"), "TRUE"},
		{"color IN ('red', 'blue')", p("color=blue"), "TRUE"},
		{"color IN ('red', 'blue')", p("color=green"), "FALSE"},
		{"color IN ('red', 'blue')", p(), "NULL"},
		{"color NOT IN ('red')", p("color=green"), "TRUE"},
		{"color NOT IN ('red')", p("color=red"), "FALSE"},
		{"color NOT IN ('red')", p(), "NULL"},
		{"c IN ('a', 'b', 'c', 'd', 'e', 'f')", p("c=f"), "TRUE"}, // the set path
		{"c NOT IN ('a', 'b', 'c', 'd', 'e', 'f')", p("c=f"), "FALSE"},
		{"(c) IN ('x')", p("c=x"), "TRUE"},
		{"s CONTAINS 'ell'", p("s=hello"), "TRUE"},
		{"s CONTAINS 'x'", p("s=hello"), "FALSE"},
		{"s CONTAINS 'x'", p(), "FALSE"},
		{"s NOT CONTAINS 'x'", p(), "FALSE"},
		{"NOT (s CONTAINS 'x')", p(), "TRUE"},
		{"s CONTAINS ''", p("s=hello"), "FALSE"},
		{"s NOT CONTAINS ''", p("s=hello"), "FALSE"},
		{"s NOT CONTAINS 'x'", p("s=hello"), "TRUE"},
		{"s STARTSWITH 'he'", p("s=hello"), "TRUE"},
		{"s NOT STARTSWITH 'he'", p("s=hello"), "FALSE"},
		{"s ENDSWITH 'lo'", p("s=hello"), "TRUE"},
		{"s NOT ENDSWITH 'x'", p("s=hello"), "TRUE"},
		{"s ENDSWITH 'x'", p(), "FALSE"},
		{"5 CONTAINS '5'", nil, "FALSE"}, // not a string
		{"s CONTAINS 'a' CONTAINS 'b'", p("s=a"), "FALSE"},
		// Booleans.
		{"a = TRUE", p("a=true"), "TRUE"},
		{"a = TRUE", p("a=TRUE"), "TRUE"},
		{"a = TRUE", p("a=yes"), "FALSE"},
		{"a = FALSE", p("a=yes"), "TRUE"}, // Boolean.valueOf("yes") is false
		{"a = TRUE", p(), "NULL"},
		{"TRUE = a", p("a=true"), "ERROR"}, // a ClassCastException in RocketMQ
		{"1 = TRUE", nil, "FALSE"},
		{"TRUE = FALSE", nil, "FALSE"},
		{"TRUE", nil, "TRUE"},
		{"FALSE", nil, "FALSE"},
		{"NULL", nil, "NULL"},
		{"a", p("a=true"), "FALSE"}, // a property string is never a Boolean
		{"a", p(), "NULL"},
		{"NOT a", p("a=x"), "TRUE"},
		{"NOT a", p(), "NULL"},
		{"(a = 1) = (b = 1)", p("a=1", "b=1"), "TRUE"},
		{"(a = 1) = (b = 1)", p("a=1", "b=2"), "FALSE"},
		{"(a = 1) = 'true'", p("a=1"), "ERROR"},
		{"'true' = (a = 1)", p("a=1"), "TRUE"},
		// IS NULL.
		{"a IS NULL", p(), "TRUE"},
		{"a IS NULL", p("a="), "FALSE"},
		{"a IS NOT NULL", p("a="), "TRUE"},
		{"a IS NOT NULL", p(), "FALSE"},
		{"(a > 5) IS NULL", p(), "TRUE"},
		{"(a > 5) IS NULL", p("a=x"), "ERROR"},
		{"a = 1 IS NULL", p(), "TRUE"}, // (a = 1) IS NULL
		// BETWEEN bounds are inclusive; NOT BETWEEN is their complement, nulls aside.
		{"a BETWEEN 10 AND 20", p("a=10"), "TRUE"},
		{"a BETWEEN 10 AND 20", p("a=20"), "TRUE"},
		{"a BETWEEN 10 AND 20", p("a=9"), "FALSE"},
		{"a BETWEEN 10 AND 20", p("a=21"), "FALSE"},
		{"a BETWEEN 10 AND 20", p(), "NULL"},
		{"a BETWEEN 10 AND 20", p("a=x"), "ERROR"},
		{"a NOT BETWEEN 10 AND 20", p("a=9"), "TRUE"},
		{"a NOT BETWEEN 10 AND 20", p("a=21"), "TRUE"},
		{"a NOT BETWEEN 10 AND 20", p("a=10"), "FALSE"},
		{"a NOT BETWEEN 10 AND 20", p(), "NULL"},
		{"a NOT BETWEEN 20 AND 10", p("a=15"), "TRUE"}, // not checked at compile time
		{"a BETWEEN -5 AND -10", p("a=-7"), "FALSE"},   // negations are not literals
		{"a BETWEEN b AND c", p("a=5", "b=1", "c=9"), "TRUE"},
		{"a BETWEEN b AND c", p("a=5", "c=9"), "NULL"},
		{"a BETWEEN b AND c", p("a=5", "b=7"), "FALSE"},
		{"a NOT BETWEEN b AND c", p("a=5", "c=3"), "TRUE"},
		{"a BETWEEN 1 AND 9 AND b = 1", p("a=5", "b=1"), "TRUE"},
		// Three-valued logic, left to right, stopping early.
		{"a = 1 AND b = 1", p("b=2"), "FALSE"},
		{"a = 1 AND b = 1", p("b=1"), "NULL"},
		{"a = 1 OR b = 1", p("b=1"), "TRUE"},
		{"a = 1 OR b = 1", p("b=2"), "NULL"},
		{"NOT (a = 1)", p(), "NULL"},
		{"NOT (a = 1)", p("a=2"), "TRUE"},
		{"a > 5 OR b = 1", p("a=abc", "b=1"), "ERROR"},
		{"b = 1 OR a > 5", p("a=abc", "b=1"), "TRUE"},
		{"b = 1 AND a > 5", p("a=abc", "b=2"), "FALSE"},
		{"b = 1 AND a > 5", p("a=abc", "b=1"), "ERROR"},
		// Precedence: NOT > comparison > equality > AND > OR.
		{"a = 1 OR b = 1 AND c = 1", p("a=1", "b=2", "c=2"), "TRUE"},
		{"(a = 1 OR b = 1) AND c = 1", p("a=1", "b=2", "c=2"), "FALSE"},
		{"NOT a = 1", p("a=1"), "FALSE"}, // (NOT a) = 1: a Boolean meets an Integer
		{"NOT a = 1", p(), "NULL"},
		{"NOT NOT (a = 1)", p("a=1"), "TRUE"},
		// Keywords in any case.
		{"a between 1 AND 2 aNd color In ('x') oR b iS nOt NuLl", p("b=1"), "TRUE"},
		{"s not contains 'x' and s startswith 'h' and s endsWith 'o'", p("s=hello"), "TRUE"},
		{"a = true", p("a=True"), "TRUE"},
		// Unary signs: only numbers negate.
		{"a > -5", p("a=-4"), "TRUE"},
		{"-a > -5", p("a=1"), "NULL"},
		{"a = - -5", p("a=5"), "TRUE"},
		{"a = --5", p("a=5"), "TRUE"}, // no line end: two minus signs, not a comment
		{"+a = +5", p("a=5"), "TRUE"},
		{"a = -(2147483648)", p("a=-2147483648"), "TRUE"},
		{"-'x' = 'x'", nil, "NULL"},
		// Comments and spacing.
		{"a = 1 -- note\nAND b = 2", p("a=1", "b=2"), "TRUE"},
		{"/* c */ a = 1 /* d */", p("a=1"), "TRUE"},
		{"\ta=1\r\nAND\fb=2", p("a=1", "b=2"), "TRUE"},
		{"a=3 and b<>4 And c>5 AND d<=4", p("a=3", "b=5", "c=6", "d=4"), "TRUE"},
		// Property names are case-sensitive and may hold $ and _.
		{"A = 1", p("a=1"), "NULL"},
		{"$x_1 = 'y'", p("$x_1=y"), "TRUE"},
		{"TAGS = 'TagA' AND KEYS CONTAINS 'k1'", p("TAGS=TagA", "KEYS=k1 k2"), "TRUE"},
	} {
		x, err := Compile(tc.expr)
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.expr, err)
			continue
		}
		if got := result(x, tc.props); got != tc.want {
			t.Errorf("%q on %v = %s, want %s (parsed as %s)", tc.expr, tc.props, got, tc.want, x)
		}
		if match := x.Match(MapProperties(tc.props)); match != (tc.want == "TRUE") {
			t.Errorf("%q on %v: Match = %v, want it only for TRUE (%s)", tc.expr, tc.props, match, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want string // the whole message
	}{
		{"color = AND", `SQL92 filter: at column 9: unexpected "AND" (expected a value)`},
		{"a > 5 AND", `SQL92 filter: at column 10: unexpected end of expression (expected a value)`},
		{"a = 1 AND (AND b = 2)", `SQL92 filter: at column 12: unexpected "AND" (expected a value)`},
		{"", "SQL92 filter: at column 1: the expression is empty; write a condition such as a > 5 (or subscribe with TAG * for every message)"},
		{"a = 1 b = 2", `SQL92 filter: at column 7: unexpected "b" after a complete condition (join conditions with AND or OR)`},
		{"a = 1)", `SQL92 filter: at column 6: unexpected ")" after a complete condition (join conditions with AND or OR)`},
		{"(a = 1", `SQL92 filter: at column 7: unexpected end of expression (expected ) to close the ( at column 1)`},
		{"a > 'x'", "SQL92 filter: at column 5: 'x' cannot be compared with >: it takes numbers and properties (strings only with = and <>)"},
		{"'x' <= a", "SQL92 filter: at column 1: 'x' cannot be compared with <=: it takes numbers and properties (strings only with = and <>)"},
		{"a > TRUE", "SQL92 filter: at column 5: TRUE cannot be compared with >: it takes numbers and properties"},
		{"NOT a > 1", "SQL92 filter: at column 1: NOT a cannot be compared with >: it takes numbers and properties"},
		{"a BETWEEN 'x' AND 'y'", "SQL92 filter: at column 11: 'x' cannot be compared with BETWEEN: it takes numbers and properties (strings only with = and <>)"},
		{"a BETWEEN 20 AND 10", "SQL92 filter: at column 11: BETWEEN 20 AND 10 matches nothing: the lower bound must come first"},
		{"a BETWEEN 2.5 AND 2", "SQL92 filter: at column 11: BETWEEN 2.5 AND 2 matches nothing: the lower bound must come first"},
		{"a BETWEEN 1 OR 2", `SQL92 filter: at column 13: unexpected "OR" (expected AND between the bounds of BETWEEN)`},
		{"a = NULL", "SQL92 filter: at column 5: NULL cannot be compared with =; use IS NULL or IS NOT NULL"},
		{"NULL <> a", "SQL92 filter: at column 1: NULL cannot be compared with <>; use IS NULL or IS NOT NULL"},
		{"TRUE = 1", "SQL92 filter: at column 8: TRUE cannot be compared with 1"},
		{"a IS 5", `SQL92 filter: at column 6: unexpected "5" (expected IS NULL or IS NOT NULL)`},
		{"a IS NOT 5", `SQL92 filter: at column 10: unexpected "5" (expected IS NULL or IS NOT NULL)`},
		{"'x' IN ('a')", "SQL92 filter: at column 1: 'x' IN (...) needs a property on the left, such as color IN ('red', 'blue')"},
		{"a IN (1)", `SQL92 filter: at column 7: unexpected "1" (IN lists hold string literals such as 'abc')`},
		{"a IN ('x' 'y')", `SQL92 filter: at column 11: unexpected "'y'" (expected , or ) in the IN list)`},
		{"a IN 'x'", `SQL92 filter: at column 6: unexpected "'x'" (expected ( after IN)`},
		{"a CONTAINS b", `SQL92 filter: at column 12: unexpected "b" (CONTAINS takes a string literal such as 'abc')`},
		{"a NOT LIKE 'x%'", `SQL92 filter: at column 7: unexpected "LIKE" after NOT (expected BETWEEN, IN, CONTAINS, STARTSWITH or ENDSWITH; to negate a condition write NOT (condition))`},
		{"a = 'abc", "SQL92 filter: at column 5: the string starting here has no closing quote (write '' for a quote inside a string)"},
		{`a = "x"`, `SQL92 filter: at column 5: unexpected character '"' (strings take single quotes: 'text')`},
		{"a != 1", `SQL92 filter: at column 3: unexpected character '!' (not equal is <>)`},
		{"prix€ > 1", `SQL92 filter: at column 5: unexpected character '€' (property names are ASCII letters, digits, '_' and '$')`},
		{"a = 1 /* open", "SQL92 filter: at column 7: the comment starting here has no closing */"},
		{"5", "SQL92 filter: at column 1: 5 is a value, not a condition (the filter needs a comparison such as color = 'red')"},
		{"a AND 5", "SQL92 filter: at column 7: 5 is a value, not a condition (AND needs a comparison such as color = 'red')"},
		{"'x' or a = 1", "SQL92 filter: at column 1: 'x' is a value, not a condition (OR needs a comparison such as color = 'red')"},
		{"NOT -a", "SQL92 filter: at column 5: -a is a value, not a condition (NOT needs a comparison such as color = 'red')"},
		{"a > 99999999999999999999", "SQL92 filter: at column 5: the integer 99999999999999999999 is out of range (at most 9223372036854775807)"},
		{"a > 9223372036854775808", "SQL92 filter: at column 5: the integer 9223372036854775808 is out of range (at most 9223372036854775807)"},
		{"a > 0.0", "SQL92 filter: at column 5: the number 0.0 is below 4.9E-324, the smallest floating-point literal RocketMQ accepts; write 0 (an integer) instead"},
		{"a > 1e-400", "SQL92 filter: at column 5: the number 1e-400 is below 4.9E-324, the smallest floating-point literal RocketMQ accepts; write 0 (an integer) instead"},
		{"a > 1e400", "SQL92 filter: at column 5: the number 1e400 is out of range (at most 1.7976931348623157e+308)"},
		{"a = 007", `SQL92 filter: at column 6: unexpected "0" after a complete condition (join conditions with AND or OR)`},
		{"a = 0L", `SQL92 filter: at column 6: unexpected "L" after a complete condition (join conditions with AND or OR)`},
		{"a = 1\nAND b = ", "SQL92 filter: at line 2, column 9: unexpected end of expression (expected a value)"},
		{"a = 'é' AND AND", `SQL92 filter: at column 13: unexpected "AND" (expected a value)`},
	} {
		_, err := Compile(tc.expr)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Compile(%q) = %v, want a *SyntaxError", tc.expr, err)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("Compile(%q):\n got %s\nwant %s", tc.expr, err, tc.want)
		}
	}
}

func TestLimits(t *testing.T) {
	deepParens := strings.Repeat("(", 100) + "a = 1" + strings.Repeat(")", 100)
	deepNot := strings.Repeat("NOT ", 100) + "a"
	deepEq := "a" + strings.Repeat(" = a", 100)
	deepNeg := "a = " + strings.Repeat("- ", 100) + "1"
	for _, expr := range []string{deepParens, deepNot, deepEq, deepNeg} {
		_, err := Compile(expr)
		if err == nil || !strings.Contains(err.Error(), "nests deeper than 64 levels") {
			t.Errorf("Compile(%.30q...) = %v, want the depth limit", expr, err)
		}
		if _, err := CompileLimits(expr, Limits{MaxDepth: 300}); err != nil {
			t.Errorf("with MaxDepth 300: %v", err)
		}
	}
	// A long AND chain is flat: no depth, only length.
	chain := strings.TrimSuffix(strings.Repeat("a = 1 AND ", 3000), " AND ")
	if _, err := Compile(chain); err == nil || !strings.Contains(err.Error(), "more than the limit of 16384") {
		t.Errorf("Compile of %d bytes = %v, want the length limit", len(chain), err)
	}
	x, err := CompileLimits(chain, Limits{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !x.Match(MapProperties{"a": "1"}) || x.Match(MapProperties{"a": "2"}) {
		t.Error("long AND chain evaluates wrongly")
	}
	if x.root.height != 3 {
		t.Errorf("AND chain height %d, want 3 (AND over a = 1)", x.root.height)
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{"a between 10 and 20 and color='red'", "(a BETWEEN 10 AND 20) AND (color = 'red')"},
		{"NOT a = 1", "(NOT a) = 1"},
		{"a = 1 or b = 2 and c = 3", "(a = 1) OR ((b = 2) AND (c = 3))"},
		{"(a = 1 and b = 2) and (c = 3 and d = 4)", "(a = 1) AND (b = 2) AND (c = 3) AND (d = 4)"},
		{"a > -5 and b = - -5 and c = -x", "(a > -5) AND (b = -(-5)) AND (c = -(x))"},
		{"a > 5.0 and b < 1e21 and c = 5e-324", "(a > 5.0) AND (b < 1e+21) AND (c = 5e-324)"},
		{"s = 'it''s' and t not in ('a', 'b''c')", "(s = 'it''s') AND (t NOT IN ('a', 'b''c'))"},
		{"a is not null or b is null", "(a IS NOT NULL) OR (b IS NULL)"},
		{"a not between 1 and 2", "a NOT BETWEEN 1 AND 2"},
		{"s not startswith 'x'", "s NOT STARTSWITH 'x'"},
		{"a", "a"},
		{"not a", "NOT a"},
		{"true", "TRUE"},
		{"+a = +5L", "a = 5"},
		{"a = 2147483648", "a = 2147483648"},
	} {
		x, err := Compile(tc.expr)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tc.expr, err)
		}
		if got := x.String(); got != tc.want {
			t.Errorf("Compile(%q).String() = %q, want %q", tc.expr, got, tc.want)
		}
		again, err := Compile(x.String())
		if err != nil || again.String() != x.String() {
			t.Errorf("String %q does not compile back to itself: %v %v", x, again, err)
		}
	}
}

func TestMatchEncoded(t *testing.T) {
	x, err := Compile("a BETWEEN 10 AND 20 AND color = 'red'")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		props string
		want  bool
	}{
		{"a\x0115\x02color\x01red\x02", true},
		{"color\x01red\x02a\x0115", true}, // no trailing separator
		{"a\x0115\x02", false},
		{"a\x015\x02color\x01red\x02a\x0115\x02", true}, // the last value wins
		{"a\x0115\x02color\x01red\x02a\x015\x02", false},
		{"aa\x0115\x02color\x01red\x02", false},
		{"a15\x02color\x01red\x02", false}, // a piece without a separator is no property
		{"", false},
		{"a\x0115\x02color\x01red\x01x\x02", false}, // the value is "red\x01x"
	} {
		if got := x.MatchEncoded(tc.props); got != tc.want {
			t.Errorf("MatchEncoded(%q) = %v, want %v", tc.props, got, tc.want)
		}
	}
	props := "UNIQ_KEY\x01ABC\x02TAGS\x01TagA\x02a\x0115\x02color\x01red\x02WAIT\x01true\x02"
	if allocs := testing.AllocsPerRun(100, func() { x.MatchEncoded(props) }); allocs != 0 {
		t.Errorf("MatchEncoded allocates %v times per call", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { (*Expr)(nil).MatchEncoded(props) }); allocs != 0 {
		t.Errorf("nil MatchEncoded allocates %v times per call", allocs)
	}
}

func TestMoreThanInlineProperties(t *testing.T) {
	var terms []string
	props := MapProperties{}
	for i := range inlineSlots + 4 {
		terms = append(terms, fmt.Sprintf("p%d = '%d'", i, i))
		props[fmt.Sprintf("p%d", i)] = fmt.Sprint(i)
	}
	x, err := Compile(strings.Join(terms, " AND "))
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Properties()) != inlineSlots+4 || !x.Match(props) {
		t.Fatalf("%d properties, match %v", len(x.Properties()), x.Match(props))
	}
	props["p19"] = "x"
	if x.Match(props) {
		t.Fatal("matched with p19 changed")
	}
}

func TestJavaNumberParsing(t *testing.T) {
	for _, tc := range []struct {
		s    string
		bits int
		want int64
		ok   bool
	}{
		{"0", 32, 0, true}, {"-0", 32, 0, true}, {"+7", 32, 7, true}, {"2147483647", 32, 2147483647, true},
		{"2147483648", 32, 0, false}, {"-2147483648", 32, -2147483648, true}, {"-2147483649", 32, 0, false},
		{"9223372036854775807", 64, 9223372036854775807, true}, {"-9223372036854775808", 64, -9223372036854775808, true},
		{"9223372036854775808", 64, 0, false}, {"", 32, 0, false}, {"-", 32, 0, false}, {"+", 64, 0, false},
		{"1_000", 64, 0, false}, {" 1", 64, 0, false}, {"1 ", 64, 0, false}, {"0x10", 64, 0, false},
		{"١٢", 32, 12, true}, {"１２", 32, 12, true}, {"1\xff", 32, 0, false},
	} {
		got, ok := parseJavaInt(tc.s, tc.bits)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseJavaInt(%q, %d) = %d, %v; want %d, %v", tc.s, tc.bits, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		s    string
		want float64
		ok   bool
	}{
		{"1.5", 1.5, true}, {" 1.5\t", 1.5, true}, {"\x001.5\x1f", 1.5, true}, {"-2", -2, true}, {"+.5", .5, true},
		{"5.", 5, true}, {"1e3", 1000, true}, {"1E+3", 1000, true}, {"1e-3", .001, true}, {"2f", 2, true},
		{"2.5D", 2.5, true}, {"0x1p4", 16, true}, {"0X.8P1", 1, true}, {"0x1.8p1d", 3, true}, {"-0x1p-1", -.5, true},
		{"1e400", 0, true}, {"", 0, false}, {".", 0, false}, {"e5", 0, false}, {"1e", 0, false}, {"1e+", 0, false},
		{"0x1", 0, false}, {"0x", 0, false}, {"0xp1", 0, false}, {"1ff", 0, false}, {"1.2.3", 0, false},
		{"inf", 0, false}, {"Inf", 0, false}, {"nan", 0, false}, {"Infinityf", 0, false}, {"1_0", 0, false},
		{"0x1_0p0", 0, false}, {"١", 0, false}, {"1 0", 0, false},
	} {
		got, ok := parseJavaDouble(tc.s)
		if tc.s == "1e400" {
			tc.want = got // +Inf, checked below
			if got <= 1e308 {
				t.Errorf("parseJavaDouble(1e400) = %v, want +Inf", got)
			}
		}
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseJavaDouble(%q) = %v, %v; want %v, %v", tc.s, got, ok, tc.want, tc.ok)
		}
	}
	for _, s := range []string{"NaN", "-NaN", "+NaN"} {
		if f, ok := parseJavaDouble(s); !ok || f == f {
			t.Errorf("parseJavaDouble(%q) = %v, %v", s, f, ok)
		}
	}
	if f, ok := parseJavaDouble("-Infinity"); !ok || f > -1e308 {
		t.Errorf("parseJavaDouble(-Infinity) = %v, %v", f, ok)
	}
}

// The Nd table is made of whole runs of ten digits, which unicodeDigit relies on.
func TestUnicodeDigitRuns(t *testing.T) {
	for _, tc := range []struct {
		r    rune
		want int
	}{{'٠', 0}, {'٩', 9}, {'０', 0}, {'９', 9}, {'𝟎', 0}, {'𝟗', 9}, {'𝟘', 0}, {'𝟿', 9}} {
		if d, ok := unicodeDigit(tc.r); !ok || d != tc.want {
			t.Errorf("unicodeDigit(%q) = %d, %v; want %d", tc.r, d, ok, tc.want)
		}
	}
	if _, ok := unicodeDigit('x'); ok {
		t.Error("x is a digit")
	}
}

func TestCompareJavaDouble(t *testing.T) {
	nan := func() float64 { f, _ := parseJavaDouble("NaN"); return f }()
	inf, _ := parseJavaDouble("Infinity")
	negZero, _ := parseJavaDouble("-0")
	for _, tc := range []struct {
		a, b float64
		want int
	}{{1, 2, -1}, {2, 1, 1}, {1, 1, 0}, {negZero, 0, -1}, {0, negZero, 1}, {nan, nan, 0}, {nan, inf, 1}, {inf, nan, -1}} {
		if got := compareJavaDouble(tc.a, tc.b); got != tc.want {
			t.Errorf("compareJavaDouble(%v, %v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
