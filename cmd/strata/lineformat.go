package main

import (
	"errors"
	"fmt"
	"strings"
)

// The line format of `strata produce`: how each input line splits into key, tag, properties
// and body, in the manner of kcat's -K (key delimiter).
//
//	%k key   %t tag   %h properties (k=v pairs joined by ",")   %v body   %% a literal %
//	\t a tab   \\ a backslash
//
// A field runs to the first occurrence of the literal text that follows it; the last field
// runs to the end of the line. Two fields must be separated by literal text.

// lineField is one field of a line format.
type lineField byte

const (
	fieldLiteral lineField = 0
	fieldKey     lineField = 'k'
	fieldTag     lineField = 't'
	fieldProps   lineField = 'h'
	fieldBody    lineField = 'v'
)

// linePart is a field or, with field fieldLiteral, literal text.
type linePart struct {
	field   lineField
	literal string
}

// lineFormat is a parsed --line-format.
type lineFormat struct {
	spec  string
	parts []linePart
}

// lineFields is what one input line holds.
type lineFields struct {
	Key, Tag string
	Props    map[string]string
	Body     string
}

const lineFormatHelp = "%k key, %t tag, %h properties k=v,k=v, %v body (required), %% a percent sign, \\t a tab; fields are separated by literal text, e.g. '%k:%h:%v'"

// parseLineFormat reads a --line-format spec.
func parseLineFormat(spec string) (lineFormat, error) {
	f := lineFormat{spec: spec}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			f.parts = append(f.parts, linePart{literal: lit.String()})
			lit.Reset()
		}
	}
	seen := map[lineField]bool{}
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		switch {
		case c == '\\' && i+1 < len(spec) && spec[i+1] == 't':
			lit.WriteByte('\t')
			i++
		case c == '\\' && i+1 < len(spec) && spec[i+1] == '\\':
			lit.WriteByte('\\')
			i++
		case c == '%':
			if i+1 == len(spec) {
				return lineFormat{}, fmt.Errorf("line format %q ends in %%: want %s", spec, lineFormatHelp)
			}
			i++
			switch d := lineField(spec[i]); d {
			case '%':
				lit.WriteByte('%')
			case fieldKey, fieldTag, fieldProps, fieldBody:
				if seen[d] {
					return lineFormat{}, fmt.Errorf("line format %q has %%%c twice", spec, d)
				}
				seen[d] = true
				if lit.Len() == 0 && len(f.parts) > 0 && f.parts[len(f.parts)-1].field != fieldLiteral {
					return lineFormat{}, fmt.Errorf("line format %q: %%%c follows another field with nothing between them; separate fields with a delimiter, e.g. %%k:%%v", spec, d)
				}
				flush()
				f.parts = append(f.parts, linePart{field: d})
			default:
				return lineFormat{}, fmt.Errorf("line format %q: unknown field %%%c: want %s", spec, spec[i], lineFormatHelp)
			}
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	if !seen[fieldBody] {
		return lineFormat{}, fmt.Errorf("line format %q has no %%v (the body): want %s", spec, lineFormatHelp)
	}
	return f, nil
}

// parse splits one input line by the format.
func (f lineFormat) parse(line string) (lineFields, error) {
	var out lineFields
	rest := line
	for i, p := range f.parts {
		if p.field == fieldLiteral {
			if !strings.HasPrefix(rest, p.literal) {
				return lineFields{}, fmt.Errorf("does not match --line-format %q: expected %q before %q", f.spec, p.literal, abbreviate(rest))
			}
			rest = rest[len(p.literal):]
			continue
		}
		value := rest
		if i+1 < len(f.parts) {
			next := f.parts[i+1].literal // fields are always followed by a literal
			j := strings.Index(rest, next)
			if j < 0 {
				return lineFields{}, fmt.Errorf("does not match --line-format %q: no %q after the %s", f.spec, next, p.field.name())
			}
			value = rest[:j]
		}
		rest = rest[len(value):]
		switch p.field {
		case fieldKey:
			out.Key = value
		case fieldTag:
			out.Tag = value
		case fieldBody:
			out.Body = value
		case fieldProps:
			props, err := parseProps(value)
			if err != nil {
				return lineFields{}, err
			}
			out.Props = props
		}
	}
	return out, nil
}

func (f lineField) name() string {
	switch f {
	case fieldKey:
		return "key (%k)"
	case fieldTag:
		return "tag (%t)"
	case fieldProps:
		return "properties (%h)"
	}
	return "body (%v)"
}

// parseProps reads k=v pairs joined by commas; an empty string holds none.
func parseProps(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("property %q: want name=value (pairs joined by commas)", kv)
		}
		out[k] = v
	}
	return out, nil
}

// parseHeader reads one -H name=value.
func parseHeader(s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", errors.New("-H " + fmt.Sprintf("%q", s) + ": want name=value")
	}
	return k, v, nil
}

func abbreviate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
