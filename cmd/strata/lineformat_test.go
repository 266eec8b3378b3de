package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestLineFormat(t *testing.T) {
	for _, c := range []struct {
		spec, line string
		want       lineFields
	}{
		{"%v", "a:b", lineFields{Body: "a:b"}},
		{"%k:%v", "order-1:paid:yes", lineFields{Key: "order-1", Body: "paid:yes"}},
		{"%k:%v", ":no key", lineFields{Body: "no key"}},
		{"%k|%t|%h|%v", "k1|TagA|a=1,b=x=y|body", lineFields{Key: "k1", Tag: "TagA", Props: map[string]string{"a": "1", "b": "x=y"}, Body: "body"}},
		{"%h\\t%v", "color=red\thello\tworld", lineFields{Props: map[string]string{"color": "red"}, Body: "hello\tworld"}},
		{"[%k] %v", "[k] b", lineFields{Key: "k", Body: "b"}},
		{"%v;%k", "body;key", lineFields{Key: "key", Body: "body"}},
		{"100%% %v", "100% x", lineFields{Body: "x"}},
		{"%k::%v", "a::b::c", lineFields{Key: "a", Body: "b::c"}},
	} {
		f, err := parseLineFormat(c.spec)
		if err != nil {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		got, err := f.parse(c.line)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q on %q = %+v, %v; want %+v", c.spec, c.line, got, err, c.want)
		}
	}
	for spec, want := range map[string]string{
		"%k:%k:%v": "twice",
		"%k%v":     "nothing between",
		"%k:":      "no %v",
		"%x %v":    "unknown field",
		"%v%":      "ends in %",
		"":         "no %v",
	} {
		if _, err := parseLineFormat(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("spec %q: %v, want %q", spec, err, want)
		}
	}
	f, _ := parseLineFormat("%k:%h:%v")
	for line, want := range map[string]string{
		"no delimiter": `no ":" after the key`,
		"k:a=1":        `no ":" after the properties`,
		"k:novalue:b":  `property "novalue": want name=value`,
		"k:=1:b":       `want name=value`,
		"k:a=1,,b=2:v": `property "": want name=value`,
	} {
		if _, err := f.parse(line); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("line %q: %v, want %q", line, err, want)
		}
	}
	o := &produceOptions{keyDelim: ":", lineFormat: "%k %v"}
	if _, err := o.format(); err == nil {
		t.Error("-K with --line-format accepted")
	}
	o = &produceOptions{keyDelim: "%"}
	if lf, err := o.format(); err != nil {
		t.Errorf("-K %%: %v", err)
	} else if got, err := lf.parse("k%v"); err != nil || got.Key != "k" || got.Body != "v" {
		t.Errorf("-K %% on k%%v: %+v %v", got, err)
	}
}

// FuzzLineFormat: no spec or line panics; a line built from a valid spec and values free of
// its delimiters parses back to those values.
func FuzzLineFormat(f *testing.F) {
	f.Add("%k:%h:%v", "key", "a=1,b=2", "body:with:colons", "line")
	f.Add("%v", "", "", "x", "a|b")
	f.Add("[%t] %k\\t%v", "k", "", "b", "[t] k\tb")
	f.Fuzz(func(t *testing.T, spec, key, props, body, line string) {
		lf, err := parseLineFormat(spec)
		if err != nil {
			return
		}
		_, _ = lf.parse(line) // must not panic
		pm, err := parseProps(props)
		if err != nil {
			return
		}
		// Render the line from the spec's parts; a value whose end runs into the delimiter
		// after it (the delimiter would be found earlier) is ambiguous by design: skip it.
		var b strings.Builder
		want := lineFields{}
		for i, p := range lf.parts {
			var v string
			switch p.field {
			case fieldLiteral:
				b.WriteString(p.literal)
				continue
			case fieldKey:
				v, want.Key = key, key
			case fieldTag:
				v, want.Tag = key, key
			case fieldProps:
				v, want.Props = props, pm
			case fieldBody:
				v, want.Body = body, body
			}
			if i+1 < len(lf.parts) {
				lit := lf.parts[i+1].literal
				if strings.Index(v+lit, lit) != len(v) {
					return
				}
			}
			b.WriteString(v)
		}
		got, err := lf.parse(b.String())
		if err != nil {
			t.Fatalf("spec %q: rendered line %q does not parse: %v", spec, b.String(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("spec %q line %q = %+v, want %+v", spec, b.String(), got, want)
		}
	})
}
