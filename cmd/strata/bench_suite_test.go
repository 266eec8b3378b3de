//go:build linux

package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// procCPU reads the same user+system time the kernel reports through getrusage, to the
// resolution of /proc's clock ticks.
func TestProcCPUMatchesGetrusage(t *testing.T) {
	var ru syscall.Rusage
	x := 0
	for i := 0; i < 50_000_000; i++ { // some CPU time, so neither figure is zero
		x += i % 7
	}
	before := rusageCPU(t, &ru)
	got, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	after := rusageCPU(t, &ru)
	if got == 0 {
		t.Fatalf("procCPU = 0 after a busy loop (%d)", x)
	}
	// /proc rounds down to whole ticks of 10 ms; allow a tick either side.
	if got < before-20*time.Millisecond || got > after+20*time.Millisecond {
		t.Fatalf("procCPU = %v, getrusage %v..%v", got, before, after)
	}
	if _, err := procCPU(1 << 30); err == nil {
		t.Fatal("procCPU of a pid that does not exist: no error")
	}
}

func rusageCPU(t *testing.T, ru *syscall.Rusage) time.Duration {
	t.Helper()
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
