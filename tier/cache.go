package tier

import (
	"container/list"
	"sync"
)

// lru is a byte-bounded least-recently-used cache of immutable values.
type lru[V any] struct {
	mu       sync.Mutex
	maxBytes int64
	bytes    int64
	ll       *list.List
	items    map[string]*list.Element
	// onGet and onEvict, when set, are called under the cache's lock with a value get
	// returns and with a value that leaves the cache (evicted, or dropped by clear).
	onGet, onEvict func(V)
}

type lruEntry[V any] struct {
	key  string
	val  V
	cost int64
}

func newLRU[V any](maxBytes int64) *lru[V] {
	return &lru[V]{maxBytes: maxBytes, ll: list.New(), items: make(map[string]*list.Element)}
}

func (c *lru[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		v := e.Value.(*lruEntry[V]).val
		if c.onGet != nil {
			c.onGet(v)
		}
		return v, true
	}
	var zero V
	return zero, false
}

// contains reports whether key is cached, without refreshing it.
func (c *lru[V]) contains(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[key]
	return ok
}

// add stores val and reports whether it did; a value larger than the whole budget is not
// cached, nor one whose key is cached already.
func (c *lru[V]) add(key string, val V, cost int64) bool {
	if cost > c.maxBytes {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		return false
	}
	c.items[key] = c.ll.PushFront(&lruEntry[V]{key, val, cost})
	c.bytes += cost
	for c.bytes > c.maxBytes {
		c.removeLocked(c.ll.Back())
	}
	return true
}

func (c *lru[V]) removeLocked(e *list.Element) {
	ent := e.Value.(*lruEntry[V])
	c.ll.Remove(e)
	delete(c.items, ent.key)
	c.bytes -= ent.cost
	if c.onEvict != nil {
		c.onEvict(ent.val)
	}
}

// clear drops every value.
func (c *lru[V]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.ll.Len() > 0 {
		c.removeLocked(c.ll.Back())
	}
}
