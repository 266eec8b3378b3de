package broker

import (
	"strings"

	"github.com/stratamq/strata/broker/message"
)

// tagFilter is a TAG subscription expression (PROTOCOL.md §9.2): "*" or empty matches
// everything, otherwise "TagA || TagB" matches those tags exactly. The hash set serves the
// consume-queue pre-filter; the exact check against the record's TAGS drops hash collisions.
// Hashes are recomputed here from the tag strings (never taken from the client's codeSet,
// which Go computes differently for non-ASCII tags).
type tagFilter struct {
	all   bool
	tags  map[string]bool
	codes map[int64]bool
}

func parseTagExpression(expr string) tagFilter {
	expr = strings.TrimSpace(expr)
	if expr == "" || expr == "*" {
		return tagFilter{all: true}
	}
	f := tagFilter{tags: make(map[string]bool), codes: make(map[int64]bool)}
	for _, t := range strings.Split(expr, "||") {
		if t = strings.TrimSpace(t); t != "" {
			f.tags[t] = true
			f.codes[message.TagHashCode(t)] = true
		}
	}
	if len(f.tags) == 0 {
		return tagFilter{all: true}
	}
	return f
}

// matchTag is the exact check on a record's TAGS property.
func (f tagFilter) matchTag(tag string) bool {
	return f.all || f.tags[tag]
}
