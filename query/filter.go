package query

import (
	"strings"

	"github.com/stratamq/strata/broker/message"
)

// TagFilter keeps messages whose TAGS is one of a set, like a RocketMQ tag subscription
// ("TagA || TagB"). The nil filter keeps everything.
type TagFilter struct {
	expr  string
	tags  map[string]bool
	codes map[int64]bool
}

// ParseTagFilter parses a tag expression; "" and "*" give nil (everything).
func ParseTagFilter(expr string) *TagFilter {
	expr = strings.TrimSpace(expr)
	if expr == "" || expr == "*" {
		return nil
	}
	f := &TagFilter{expr: expr, tags: map[string]bool{}, codes: map[int64]bool{}}
	for _, t := range strings.Split(expr, "||") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		f.tags[t] = true
		f.codes[message.TagHashCode(t)] = true
	}
	return f
}

// Expr is the expression as given ("*" for the nil filter).
func (f *TagFilter) Expr() string {
	if f == nil {
		return "*"
	}
	return f.expr
}

// MatchTag reports whether a message with this TAGS passes.
func (f *TagFilter) MatchTag(tag string) bool { return f == nil || f.tags[tag] }

// matchCode is the cheap pre-check on the tag hash code (collisions pass; MatchTag decides).
func (f *TagFilter) matchCode(code int64) bool { return f == nil || f.codes[code] }
