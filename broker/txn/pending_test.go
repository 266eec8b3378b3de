package txn

import (
	"runtime"
	"testing"
	"unsafe"
)

func TestEntryIs32Bytes(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n != 32 {
		t.Fatalf("a pending entry is %d bytes; keep it at 32 (doc.go and FORMAT.md say so)", n)
	}
}

func TestTableKeepsOrderAndFindsLiveEntries(t *testing.T) {
	var tb table
	for _, pos := range []int64{10, 30, 20, 40, 35} { // concurrent sends finish out of order
		tb.insert(entry{pos: pos}, "g")
	}
	tb.insert(entry{pos: 30, checks: 9}, "g") // already there: left alone
	var got []int64
	for _, e := range tb.entries {
		got = append(got, e.pos)
	}
	if want := []int64{10, 20, 30, 35, 40}; !equalInts(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if i, ok := tb.find(30); !ok || tb.entries[i].checks != 0 {
		t.Fatalf("find(30) = %d, %v", i, ok)
	}
	i, _ := tb.find(20)
	tb.remove(i)
	if _, ok := tb.find(20); ok || tb.live != 4 {
		t.Fatalf("after removing 20: found it, or live %d", tb.live)
	}
	if _, ok := tb.find(25); ok {
		t.Fatal("found a position never inserted")
	}
	if e, ok := tb.oldest(); !ok || e.pos != 10 {
		t.Fatalf("oldest %v %v", e, ok)
	}
}

func TestTableCompactsAndGivesGroupsBack(t *testing.T) {
	var tb table
	const n = 10000
	for i := int64(0); i < n; i++ {
		g := "a"
		if i%2 == 1 {
			g = "b"
		}
		tb.insert(entry{pos: i}, g)
	}
	for i := int64(0); i < n-10; i++ {
		j, ok := tb.find(i)
		if !ok {
			t.Fatalf("lost %d", i)
		}
		tb.remove(j)
	}
	if tb.live != 10 || len(tb.entries) > 2*64+20 {
		t.Fatalf("live %d, slice %d: gone entries were not compacted", tb.live, len(tb.entries))
	}
	if cap(tb.entries) > 1024 {
		t.Fatalf("capacity %d kept after the burst", cap(tb.entries))
	}
	for i := int64(n - 10); i < n; i++ {
		if _, ok := tb.find(i); !ok {
			t.Fatalf("compaction lost %d", i)
		}
	}
	if _, ok := tb.groups.lookup("a"); !ok {
		t.Fatal("group a forgotten while it has pending entries")
	}
	for i := int64(n - 10); i < n; i++ {
		j, _ := tb.find(i)
		tb.remove(j)
	}
	if _, ok := tb.groups.lookup("a"); ok {
		t.Fatal("group a kept after its last pending entry")
	}
	id := tb.groups.ref("c")
	if tb.groups.name(id) != "c" || len(tb.groups.names) != 2 {
		t.Fatalf("freed group ids are not reused: %d names", len(tb.groups.names))
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkPendingMemory reports the heap held per pending half message by the table, at a
// million pending ones.
func BenchmarkPendingMemory(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var tb table
		for p := int64(0); p < n; p++ {
			tb.insert(entry{pos: p * 300, dueMs: p}, "pg-orders")
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-bytes/pending")
		runtime.KeepAlive(&tb)
	}
}
