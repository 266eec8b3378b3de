package filter

import (
	"slices"
	"strings"

	"github.com/stratamq/strata/broker/message"
)

// Tags is a TAG subscription expression (PROTOCOL.md §9.2): "*" or empty keeps every
// message; otherwise "TagA || TagB" keeps messages whose TAGS is exactly one of them.
//
// The tag hash codes serve the consume-queue pre-filter; the exact check on the TAGS string
// then drops hash collisions. The codes are computed here from the tag strings
// (message.TagHashCode, Java's String.hashCode), never taken from a client's codeSet, which
// the Go client computes differently for non-ASCII tags.
type Tags struct {
	expr  string
	all   bool
	tags  map[string]struct{}
	codes []int64 // sorted, distinct
}

// ParseTags parses a tag expression. Pieces are trimmed and empty ones skipped; an
// expression with no tag at all ("", "*", "||") keeps everything.
func ParseTags(expr string) *Tags {
	t := &Tags{expr: expr}
	trimmed := strings.TrimSpace(expr)
	if trimmed == "" || trimmed == "*" {
		t.all = true
		return t
	}
	t.tags = make(map[string]struct{})
	for _, piece := range strings.Split(trimmed, "||") {
		if piece = strings.TrimSpace(piece); piece != "" {
			if _, dup := t.tags[piece]; !dup {
				t.tags[piece] = struct{}{}
				t.codes = append(t.codes, message.TagHashCode(piece))
			}
		}
	}
	if len(t.tags) == 0 {
		return &Tags{expr: expr, all: true}
	}
	slices.Sort(t.codes)
	t.codes = slices.Compact(t.codes)
	return t
}

// All reports whether every message passes.
func (t *Tags) All() bool { return t == nil || t.all }

// Match reports whether a message whose TAGS property is tag passes ("" for none).
func (t *Tags) Match(tag string) bool {
	if t.All() {
		return true
	}
	_, ok := t.tags[tag]
	return ok
}

// Codes returns the tag hash codes that pass the consume-queue pre-filter, sorted; nil when
// every message passes. The caller must not change it.
func (t *Tags) Codes() []int64 {
	if t.All() {
		return nil
	}
	return t.codes
}

// MatchCode is the pre-filter on a consume-queue tag code: a collision passes, Match
// decides.
func (t *Tags) MatchCode(code int64) bool {
	if t.All() {
		return true
	}
	_, ok := slices.BinarySearch(t.codes, code)
	return ok
}

// String is the expression as given ("*" for everything).
func (t *Tags) String() string {
	if t.All() {
		return "*"
	}
	return t.expr
}
