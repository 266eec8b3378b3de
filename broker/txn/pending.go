package txn

import (
	"slices"
	"sort"
)

// entry is what the service holds in memory for one half message with no decision: 32
// bytes, whatever the message's size. Everything else is read from the log when needed.
type entry struct {
	pos    int64 // commit-log position of the half message (the table's sort key)
	opFrom int64 // an OpTopic offset at or below every op about this half message
	dueMs  int64 // when it is next checked back (unix ms)
	group  uint32
	checks uint16 // check-backs sent so far
	state  entryState
}

type entryState uint8

const (
	stateLive     entryState = iota
	stateDeciding            // a commit, rollback or parking is being appended
	stateGone                // decided; dropped at the next compaction
)

// table holds the pending entries sorted by position. Half messages are registered in
// about log order (concurrent sends finish in any order, so a new entry lands near the
// end), decisions mark entries gone, and compaction drops them once they are most of the
// slice, so memory follows the number of pending half messages.
type table struct {
	entries []entry
	live    int // entries not gone
	groups  groupTable
}

func (t *table) search(pos int64) int {
	// The newest entries are the likeliest targets, and the slice is sorted.
	return sort.Search(len(t.entries), func(i int) bool { return t.entries[i].pos >= pos })
}

// find returns the index of the entry at pos that is not gone.
func (t *table) find(pos int64) (int, bool) {
	i := t.search(pos)
	if i < len(t.entries) && t.entries[i].pos == pos && t.entries[i].state != stateGone {
		return i, true
	}
	return 0, false
}

// insert adds e (a new position) in order; a position already present is left alone.
func (t *table) insert(e entry, group string) {
	n := len(t.entries)
	if n == 0 || t.entries[n-1].pos < e.pos {
		e.group = t.groups.ref(group)
		t.entries = append(t.entries, e)
		t.live++
		return
	}
	i := t.search(e.pos)
	if i < n && t.entries[i].pos == e.pos {
		if t.entries[i].state != stateGone {
			return
		}
		e.group = t.groups.ref(group)
		t.entries[i] = e
		t.live++
		return
	}
	e.group = t.groups.ref(group)
	t.entries = slices.Insert(t.entries, i, e)
	t.live++
}

// remove marks entry i gone.
func (t *table) remove(i int) {
	e := &t.entries[i]
	if e.state == stateGone {
		return
	}
	e.state = stateGone
	t.groups.unref(e.group)
	t.live--
	t.maybeCompact()
}

func (t *table) maybeCompact() {
	dead := len(t.entries) - t.live
	if dead < 64 || dead < t.live {
		return
	}
	kept := t.entries[:0]
	for _, e := range t.entries {
		if e.state != stateGone {
			kept = append(kept, e)
		}
	}
	clear(t.entries[len(kept):])
	t.entries = kept
	if cap(t.entries) > 1024 && cap(t.entries) > 4*len(t.entries) {
		t.entries = slices.Clip(slices.Clone(t.entries)) // give a burst's memory back
	}
}

// oldest is the first entry not gone.
func (t *table) oldest() (entry, bool) {
	for _, e := range t.entries {
		if e.state != stateGone {
			return e, true
		}
	}
	return entry{}, false
}

// groupTable interns producer group names for the entries, counting references so a name
// goes when its last pending half message does.
type groupTable struct {
	ids   map[string]uint32
	names []string
	refs  []int
	free  []uint32
}

func (g *groupTable) ref(name string) uint32 {
	if g.ids == nil {
		g.ids = map[string]uint32{}
	}
	if id, ok := g.ids[name]; ok {
		g.refs[id]++
		return id
	}
	var id uint32
	if n := len(g.free); n > 0 {
		id, g.free = g.free[n-1], g.free[:n-1]
		g.names[id], g.refs[id] = name, 1
	} else {
		id = uint32(len(g.names))
		g.names, g.refs = append(g.names, name), append(g.refs, 1)
	}
	g.ids[name] = id
	return id
}

func (g *groupTable) unref(id uint32) {
	if g.refs[id]--; g.refs[id] == 0 {
		delete(g.ids, g.names[id])
		g.names[id] = ""
		g.free = append(g.free, id)
	}
}

func (g *groupTable) name(id uint32) string { return g.names[id] }

// lookup returns the id of a group with pending half messages.
func (g *groupTable) lookup(name string) (uint32, bool) {
	id, ok := g.ids[name]
	return id, ok
}
