//go:build !linux

package store

import "os"

// preadNoWait has no page-cache-only read on this system: every read would block.
func preadNoWait(f *os.File, p []byte, off int64) error { return ErrWouldBlock }
