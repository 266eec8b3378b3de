package store

import (
	"reflect"
	"testing"
)

// keyIndexFor returns an empty key index over dir holding capacity keys a file.
func keyIndexFor(dir string, capacity int) *keyIndex {
	return &keyIndex{dir: dir, capacity: uint32(capacity), slots: keySlots(capacity), cache: newBlockCache(1 << 20)}
}

func lookupPositions(t *testing.T, x *keyIndex, hash uint64, begin, end int64) []int64 {
	t.Helper()
	var out []int64
	if err := x.each(hash, begin, end, func(e keyEntry) bool { out = append(out, e.pos); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Keys chain within and across files, newest first, survive sealing and a reload of the
// sealed and active files, and whole files go once everything they point to is gone.
func TestKeyIndexFilesChainSealAndReload(t *testing.T) {
	dir := t.TempDir()
	x := keyIndexFor(dir, 64) // 16 slots: chains share slots
	for p := int64(1); p <= 150; p++ {
		if err := x.add(uint64(p%5), p*10, 91, 1000+p); err != nil {
			t.Fatal(err)
		}
	}
	want := func(mod, from int64) []int64 {
		var out []int64
		for p := int64(150); p >= from; p-- {
			if p%5 == mod {
				out = append(out, p*10)
			}
		}
		return out
	}
	if got := lookupPositions(t, x, 3, 0, 1<<62); !reflect.DeepEqual(got, want(3, 1)) {
		t.Fatalf("hash 3: %v", got)
	}
	if got := lookupPositions(t, x, 3, 1100, 1120); !reflect.DeepEqual(got, []int64{1180, 1130, 1080, 1030}) {
		t.Fatalf("hash 3 in a time range: %v", got)
	}
	if got := lookupPositions(t, x, 7, 0, 1<<62); got != nil {
		t.Fatalf("unknown hash: %v", got)
	}
	if len(x.files) != 3 || x.active == nil || x.active.count.Load() != 150-128 {
		t.Fatalf("%d files, active holds %d", len(x.files), x.active.count.Load())
	}
	for _, kf := range x.files {
		if err := kf.af.sync(); err != nil {
			t.Fatal(err)
		}
	}
	firsts := []int64{x.files[0].firstPos, x.files[1].firstPos, x.files[2].firstPos}
	x.closeFiles()

	y := keyIndexFor(dir, 64)
	if err := y.loadSealed(firsts[0]); err != nil {
		t.Fatal(err)
	}
	if err := y.loadNewest(firsts[1], 64); err != nil { // full: loaded as sealed
		t.Fatal(err)
	}
	if err := y.loadNewest(firsts[2], 150-128); err != nil {
		t.Fatal(err)
	}
	if got := lookupPositions(t, y, 3, 0, 1<<62); !reflect.DeepEqual(got, want(3, 1)) {
		t.Fatalf("hash 3 after reload: %v", got)
	}
	if err := y.add(3, 1510, 91, 2000); err != nil {
		t.Fatal(err)
	}
	if got := lookupPositions(t, y, 3, 0, 1<<62); got[0] != 1510 || len(got) != len(want(3, 1))+1 {
		t.Fatalf("hash 3 after a new add: %v", got)
	}
	if err := y.dropBelow(641); err != nil {
		t.Fatal(err)
	}
	if len(y.files) != 2 {
		t.Fatalf("%d files after dropping below 641, want 2", len(y.files))
	}
	if got := lookupPositions(t, y, 3, 0, 1<<62); got[len(got)-1] != 680 {
		t.Fatalf("oldest hit after the drop: %v", got)
	}
	y.closeFiles()
}

// A torn or reordered active file is refused at load, so Open rebuilds it from the log.
func TestKeyIndexActiveFileMustChain(t *testing.T) {
	dir := t.TempDir()
	x := keyIndexFor(dir, 64)
	for p := int64(1); p <= 10; p++ {
		if err := x.add(1, p, 91, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.active.af.sync(); err != nil {
		t.Fatal(err)
	}
	first := x.active.firstPos
	path := x.active.af.path
	x.closeFiles()
	flipByte(t, path, keyFileHeaderBytes+5*keyEntryBytes+28+3) // entry 5's prev link
	if err := keyIndexFor(dir, 64).loadNewest(first, 10); err == nil {
		t.Fatal("a broken chain link was accepted")
	}
	if err := keyIndexFor(dir, 64).loadNewest(first, 11); err == nil {
		t.Fatal("a count beyond the file was accepted")
	}
}
