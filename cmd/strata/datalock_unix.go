//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dataLockFile is the lock file in a data directory; it holds the pid of the process that has
// the directory.
const dataLockFile = "LOCK"

// dataLock is a data directory held by this process.
type dataLock struct{ f *os.File }

// lockDataDir takes dir for this process before anything opens files there, so a second
// strata on the same directory fails at once with the holder's pid instead of waiting without
// end for a lock deep in the embedded etcd or corrupting the store. The lock is flock(2) on
// dir/LOCK: the kernel drops it when the holder exits, however it exits, so a crash leaves
// nothing to clean up. flag names the setting that picks the directory, for the error.
func lockDataDir(dir, flag string) (*dataLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, dataLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the data directory's lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another strata process"
			if raw, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(raw))); perr == nil {
					holder = fmt.Sprintf("another strata process (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("data directory %s is in use by %s; stop it or pick another %s", dir, holder, flag)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	return &dataLock{f: f}, nil
}

// release gives the directory up. The file stays: removing it would let a process that
// opened it just before take a lock on a file no longer in the directory.
func (l *dataLock) release() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
}
