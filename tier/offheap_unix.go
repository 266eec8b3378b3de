//go:build unix

package tier

import "syscall"

const offHeapSupported = true

func mapAnon(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

func unmapAnon(b []byte) { _ = syscall.Munmap(b) }
