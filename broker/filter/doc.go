// Package filter holds the two message filter languages of RocketMQ subscriptions: tag
// expressions ("TagA || TagB") and SQL92 property filters ("a BETWEEN 10 AND 20 AND
// color = 'red'"). The broker's pull path, the cold tier's block reader (through a predicate
// the broker passes) and exports all filter with it, so every path agrees on what matches.
// It sits low in the import table (broker/message and the standard library only) so that
// broker, tier and query can all use it.
//
// Start with Filter (New): a compiled subscription of either type, with the consume-queue
// tag-code pre-filter (TagCodes, MatchTagCode) and the record check (MatchRecord, which reads a
// stored record's encoded properties in place). Below it, Tags (tags.go) is the tag language
// and Expr (Compile; parser.go, eval.go) the SQL92 one. A nil *Filter keeps every message.
//
// # SQL92 grammar
//
// RocketMQ's SelectorParser (derived from ActiveMQ's), loosest binding first:
//
//	OR                 a OR b
//	AND                a AND b
//	equality           a = b, a <> b, a IS NULL, a IS NOT NULL
//	comparison         a > b, >=, <, <=, a [NOT] BETWEEN lo AND hi, a [NOT] IN ('x', ...),
//	                   a [NOT] CONTAINS 's', a [NOT] STARTSWITH 's', a [NOT] ENDSWITH 's'
//	unary              NOT a, -a, +a
//	primary            literal, property, ( expression )
//
// NOT is a unary operator and binds tighter than comparisons, as in RocketMQ: "NOT a = 1"
// means "(NOT a) = 1"; write "NOT (a = 1)". Keywords are case-insensitive; property names
// (letters, digits, '_' and '$', ASCII, not starting with a digit) are not. Literals:
// strings in single quotes (a quote inside is doubled), integers (an optional L suffix
// changes nothing), floating point (1.5, .5, 5., 1e3), TRUE, FALSE, NULL. "--" comments
// run to the end of a line, "/* */" comments anywhere. TAGS, KEYS and the other system
// properties are properties too.
//
// # Types and evaluation, exactly as RocketMQ's evaluator
//
// Properties are strings; a missing property is null. A literal integer is a Java Integer
// when it fits 32 bits and a Long otherwise; a literal with a point or exponent is a Double.
// Where a property meets a number, the property string is parsed as the number's type
// (Integer.valueOf, Long.valueOf, Double.valueOf): "a > 5" parses a as a 32-bit integer, so
// a = '5.5' or a = '3000000000' is an error there, while "a > 5.0" parses a as a double.
// Numbers meet numbers by widening (Integer → Long → Double). "<", "<=", ">", ">=" and
// BETWEEN between two properties parse both as doubles. Strings have no order: ordering
// operators take numbers or properties only (refused at compile time otherwise), and two
// strings only compare for equality, exactly (no number conversion: '1' = '1.0' is FALSE).
// A property compared with TRUE or FALSE is true when it is "true" in any case.
//
// Nulls and errors:
//   - a comparison with a null side is null; "a = b" is TRUE when both are missing, null when
//     only a is missing and FALSE when only b is (RocketMQ's doCreateEqual);
//   - IS NULL is TRUE for a missing property; IN and NOT IN are null on one;
//   - CONTAINS, STARTSWITH, ENDSWITH and their NOT forms are FALSE on a missing property
//     (so "a NOT CONTAINS 'x'" differs from "NOT (a CONTAINS 'x')") and on an empty literal;
//   - a bare property used as a condition is null when missing and FALSE otherwise;
//   - AND, OR and NOT are three-valued (FALSE AND null is FALSE, TRUE OR null is TRUE, NOT
//     null is null), evaluated left to right and stopping as soon as the result is known;
//   - a value that does not parse as the number it meets is an error, and an error fails the
//     whole evaluation: "a > 5 OR b = 1" does not match a = 'abc', b = '1', while
//     "b = 1 OR a > 5" does, because OR stopped before reaching the error.
//
// A message matches only when the whole expression is TRUE: FALSE, null and errors drop it.
// Also refused at compile time, as RocketMQ does: "= NULL" (use IS NULL), a BETWEEN whose
// literal lower bound is above its upper one, IN after anything but a property, a literal
// 0.0 or any floating-point literal below 4.9E-324 (RocketMQ's createFloat bound), an
// integer beyond 64 bits, and a value where a condition is needed ("a AND 5").
//
// One deliberate difference: RocketMQ ignores what follows the first complete condition, so
// "a = 1 b = 2" filters on a = 1 alone; Compile refuses it and points at b.
//
// Small ones that cannot matter to real clients: property values that are not valid UTF-8
// are compared as bytes (Java sees U+FFFD), and Unicode digits count in integer properties
// by Go's Unicode tables (Java: its own version's).
//
// Limits (MaxBytes, MaxDepth) bound an expression's length and nesting, so a hostile one
// can exhaust neither memory nor the stack; AND and OR chains are flat and do not count
// towards depth.
package filter
