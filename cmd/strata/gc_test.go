package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGCDefaultsAndYieldsToGOGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)

	tuneGC(func(string) (string, bool) { return "", false })
	if got := debug.SetGCPercent(100); got != brokerGCPercent {
		t.Fatalf("GC percent with GOGC unset: %d, want %d", got, brokerGCPercent)
	}
	tuneGC(func(k string) (string, bool) { return "150", k == "GOGC" })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent with GOGC set: %d, want the runtime's own (100) left alone", got)
	}
}
