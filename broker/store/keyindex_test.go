package store

import (
	"reflect"
	"testing"
)

func TestKeyIndexChainsAndTrim(t *testing.T) {
	x := newKeyIndex()
	refs := func(ps ...int64) []keyRef {
		var out []keyRef
		for _, p := range ps {
			out = append(out, keyRef{pos: p, qoff: p * 10})
		}
		return out
	}
	for _, p := range []int64{1, 2, 3, 4, 5} {
		x.add(uint64(p%2), keyRef{pos: p, qoff: p * 10}) // odd positions under hash 1, even under 0
	}
	if got := x.lookup(1); !reflect.DeepEqual(got, refs(1, 3, 5)) {
		t.Fatalf("hash 1: %v", got)
	}
	if got := x.lookup(0); !reflect.DeepEqual(got, refs(2, 4)) {
		t.Fatalf("hash 0: %v", got)
	}
	if got := x.lookup(7); got != nil {
		t.Fatalf("unknown hash: %v", got)
	}
	x.trimBelow(3)
	if got := x.lookup(1); !reflect.DeepEqual(got, refs(3, 5)) {
		t.Fatalf("hash 1 after trim: %v", got)
	}
	if got := x.lookup(0); !reflect.DeepEqual(got, refs(4)) {
		t.Fatalf("hash 0 after trim: %v", got)
	}
	x.trimBelow(100)
	if len(x.heads) != 0 || len(x.nodes) != 0 || x.lookup(1) != nil {
		t.Fatalf("everything trimmed, left %d heads %d nodes", len(x.heads), len(x.nodes))
	}
	x.add(9, keyRef{pos: 200})
	if got := x.lookup(9); !reflect.DeepEqual(got, []keyRef{{pos: 200}}) {
		t.Fatalf("add after trim: %v", got)
	}
}
