package broker

import (
	"sync"

	"github.com/stratamq/strata/broker/filter"
)

// Subscriptions filter with broker/filter: TAG expressions by the consume queue's tag code
// and then the exact TAGS, SQL92 expressions on each record's properties (pull.go), also in
// the cold tier's reader (tiering.go). Java needs enablePropertyFilter=true for SQL92 and
// answers SYSTEM_ERROR otherwise (PROTOCOL.md §9.3); Strata always filters.

// maxCachedFilters bounds the compiled expressions kept: pulls that carry their subscription
// (PROTOCOL.md §7.2) would otherwise compile it on every pull. Java keeps 100.
const maxCachedFilters = 1024

// filterCache compiles subscription expressions once, errors included.
type filterCache struct {
	lim filter.Limits
	mu  sync.Mutex
	m   map[filterKey]compiledFilter
}

type filterKey struct{ exprType, expr string }

type compiledFilter struct {
	f   *filter.Filter
	err error
}

func newFilterCache(lim filter.Limits) *filterCache {
	return &filterCache{lim: lim, m: make(map[filterKey]compiledFilter)}
}

// compile returns the filter of an expression of the given type (filter.New).
func (c *filterCache) compile(exprType, expr string) (*filter.Filter, error) {
	k := filterKey{exprType, expr}
	c.mu.Lock()
	cf, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return cf.f, cf.err
	}
	f, err := filter.New(exprType, expr, c.lim)
	c.mu.Lock()
	if len(c.m) >= maxCachedFilters {
		clear(c.m) // a crude bound; subscriptions change rarely
	}
	c.m[k] = compiledFilter{f, err}
	c.mu.Unlock()
	return f, err
}
