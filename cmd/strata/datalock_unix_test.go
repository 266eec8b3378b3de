//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDataDirLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := lockDataDir(dir, "--data")
	if err != nil {
		t.Fatal(err)
	}
	// flock(2) conflicts between open files, so a second lock in the same process stands in
	// for a second process.
	_, err = lockDataDir(dir, "--data")
	want := fmt.Sprintf("data directory %s is in use by another strata process (pid %d); stop it or pick another --data", dir, os.Getpid())
	if err == nil || err.Error() != want {
		t.Fatalf("second lock = %v, want %q", err, want)
	}
	l.release()
	l2, err := lockDataDir(dir, "--data")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.release()
	// A garbled pid file (a holder that died mid-write) still gives a clear message.
	l3, err := lockDataDir(dir, "data_dir in the config")
	if err != nil {
		t.Fatal(err)
	}
	defer l3.release()
	if err := os.WriteFile(filepath.Join(dir, "LOCK"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := lockDataDir(dir, "data_dir in the config"); err == nil || !strings.HasSuffix(err.Error(), "in use by another strata process; stop it or pick another data_dir in the config") {
		t.Fatalf("lock with a garbled pid file: %v", err)
	}
}
