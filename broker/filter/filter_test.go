package filter

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stratamq/strata/broker/message"
)

func TestParseTags(t *testing.T) {
	for _, tc := range []struct {
		expr  string
		all   bool
		match []string
		miss  []string
	}{
		{"*", true, []string{"", "x"}, nil},
		{"", true, []string{"", "x"}, nil},
		{"  *  ", true, []string{"x"}, nil},
		{" || ", true, []string{"x"}, nil},
		{"TagA", false, []string{"TagA"}, []string{"", "taga", "TagB", "TagA "}},
		{"TagA || TagB", false, []string{"TagA", "TagB"}, []string{"", "TagC", "TagA || TagB"}},
		{"TagA||TagB|| ||TagA", false, []string{"TagA", "TagB"}, []string{""}},
		{"标签", false, []string{"标签"}, []string{"标"}},
	} {
		tg := ParseTags(tc.expr)
		if tg.All() != tc.all {
			t.Errorf("ParseTags(%q).All() = %v", tc.expr, tg.All())
		}
		for _, m := range tc.match {
			if !tg.Match(m) || !tg.MatchCode(message.TagHashCode(m)) {
				t.Errorf("ParseTags(%q) does not keep tag %q", tc.expr, m)
			}
		}
		for _, m := range tc.miss {
			if tg.Match(m) {
				t.Errorf("ParseTags(%q) keeps tag %q", tc.expr, m)
			}
		}
	}
	// Codes are Java hash codes, sorted and distinct; "Aa" and "BB" collide in Java.
	tg := ParseTags("TagA || Aa || TagA")
	if want := []int64{message.TagHashCode("Aa"), message.TagHashCode("TagA")}; !slices.Equal(tg.Codes(), want) || want[1] != 2598919 {
		t.Errorf("codes %v, want %v", tg.Codes(), want)
	}
	if !tg.MatchCode(message.TagHashCode("BB")) || tg.Match("BB") {
		t.Error("a hash collision must pass the code pre-filter and fail the exact check")
	}
	if tg.MatchCode(0) || ParseTags("*").Codes() != nil || !ParseTags("*").MatchCode(0) {
		t.Error("code pre-filter wrong for no tag or everything")
	}
	if tg.String() != "TagA || Aa || TagA" || ParseTags("").String() != "*" {
		t.Errorf("String %q", tg.String())
	}
}

func encodeRecord(t *testing.T, props map[string]string) []byte {
	t.Helper()
	host := netip.MustParseAddrPort("10.0.0.1:10911")
	m := &message.Message{Topic: "T", Body: []byte("body"), BornHost: host, StoreHost: host, Properties: props}
	rec, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func record(t *testing.T, props map[string]string) *message.RecordHeader {
	t.Helper()
	h, err := message.ParseRecordHeader(encodeRecord(t, props))
	if err != nil {
		t.Fatal(err)
	}
	return &h
}

func TestFilter(t *testing.T) {
	redRec := encodeRecord(t, map[string]string{"a": "15", "color": "red", message.PropertyTags: "TagA"})
	blueRec := encodeRecord(t, map[string]string{"a": "15", "color": "blue", message.PropertyTags: "TagB"})
	red, blue := record(t, map[string]string{"a": "15", "color": "red", message.PropertyTags: "TagA"}), record(t, map[string]string{"a": "15", "color": "blue", message.PropertyTags: "TagB"})
	for _, tc := range []struct {
		typ, expr string
		red, blue bool
		all       bool
		codes     []int64
	}{
		{"", "", true, true, true, nil},
		{"TAG", "*", true, true, true, nil},
		{"tag", "TagA", true, false, false, []int64{2598919}},
		{"SQL92", "a BETWEEN 10 AND 20 AND color = 'red'", true, false, false, nil},
		{"sql92", "TAGS IN ('TagA', 'TagB')", true, true, false, nil},
		{"SQL92", "TRUE", true, true, false, nil},
	} {
		f, err := New(tc.typ, tc.expr, Limits{})
		if err != nil {
			t.Fatalf("New(%q, %q): %v", tc.typ, tc.expr, err)
		}
		if f.MatchRecord(red) != tc.red || f.MatchRecord(blue) != tc.blue {
			t.Errorf("%s: red %v blue %v", f, f.MatchRecord(red), f.MatchRecord(blue))
		}
		if f.MatchStoredRecord(redRec) != tc.red || f.MatchStoredRecord(blueRec) != tc.blue {
			t.Errorf("%s: stored red %v blue %v", f, f.MatchStoredRecord(redRec), f.MatchStoredRecord(blueRec))
		}
		if f.MatchStoredRecord(redRec[:len(redRec)-1]) && !f.MatchesAll() {
			t.Errorf("%s: a truncated record matches", f)
		}
		props := MapProperties{"a": "15", "color": "red", message.PropertyTags: "TagA"}
		if f.Match(props) != tc.red {
			t.Errorf("%s: Match on red properties %v", f, f.Match(props))
		}
		if f.MatchesAll() != tc.all || !slices.Equal(f.TagCodes(), tc.codes) {
			t.Errorf("%s: all %v codes %v", f, f.MatchesAll(), f.TagCodes())
		}
		if f.Expression() != tc.expr {
			t.Errorf("Expression %q, want %q", f.Expression(), tc.expr)
		}
	}
	var none *Filter
	if !none.MatchRecord(red) || !none.MatchStoredRecord(redRec) || !none.Match(MapProperties{}) || !none.MatchesAll() || none.TagCodes() != nil ||
		none.Type() != TypeTag || none.Expression() != "*" || none.String() != "TAG *" || none.SQL() != nil {
		t.Error("the nil Filter must keep everything")
	}
	if _, err := New("XML", "x", Limits{}); err == nil || !strings.Contains(err.Error(), `expression type "XML" is not supported; use TAG`) {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := New("SQL92", "a >", Limits{}); err == nil || !strings.Contains(err.Error(), "at column 4") {
		t.Errorf("bad SQL92: %v", err)
	}
	if _, err := New("SQL92", "a = 1 AND b = 2", Limits{MaxBytes: 5}); err == nil || !strings.Contains(err.Error(), "limit of 5") {
		t.Errorf("limits not applied: %v", err)
	}
	f, _ := New("SQL92", "a between 1 and 2", Limits{})
	if f.String() != "SQL92 a BETWEEN 1 AND 2" || f.Type() != TypeSQL92 || f.Tags() != nil {
		t.Errorf("String %q type %s", f, f.Type())
	}
	if allocs := testing.AllocsPerRun(100, func() { f.MatchRecord(red) }); allocs != 0 {
		t.Errorf("MatchRecord allocates %v times", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { f.MatchStoredRecord(redRec) }); allocs != 0 {
		t.Errorf("MatchStoredRecord allocates %v times", allocs)
	}
}
