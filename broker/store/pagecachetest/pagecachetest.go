//go:build linux

// Package pagecachetest evicts files from the kernel's page cache, so that tests can tell
// reads served from memory from reads that wait for the disk.
package pagecachetest

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Drop syncs every regular file under dir and asks the kernel to drop its cached pages
// (clean pages go at once).
func Drop(t testing.TB, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return err
		}
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		t.Fatalf("drop the page cache of %s: %v", dir, err)
	}
}
