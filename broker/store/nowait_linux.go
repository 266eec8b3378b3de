package store

import (
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noWaitUnsupported is set once the kernel or the file system refuses RWF_NOWAIT, so later
// reads give up at once instead of asking again.
var noWaitUnsupported atomic.Bool

// preadNoWait fills p from f at off if all of it is in the page cache, else it reports
// ErrWouldBlock without waiting for the disk: preadv2 with RWF_NOWAIT (Linux 4.14+). A
// short read, part of the range cached, is ErrWouldBlock too; the caller's blocking read
// then reads it all.
func preadNoWait(f *os.File, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	if noWaitUnsupported.Load() {
		return ErrWouldBlock
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	// preadv2(fd, iov, iovcnt, pos_l, pos_h, flags), called directly: x/sys's Preadv2
	// allocates its iovecs, and this runs once per pull. pos_h takes the bits above a long.
	lo, hi := uintptr(off), uintptr(uint64(off)>>(8*unsafe.Sizeof(uintptr(0))-1)>>1)
	n, _, errno := unix.Syscall6(unix.SYS_PREADV2, f.Fd(), uintptr(unsafe.Pointer(&iov)), 1, lo, hi, unix.RWF_NOWAIT)
	switch {
	case errno == 0 && int(n) == len(p):
		return nil
	case errno == 0, errno == unix.EAGAIN, errno == unix.EINTR:
		return ErrWouldBlock
	case errno == unix.EOPNOTSUPP, errno == unix.ENOSYS, errno == unix.EINVAL:
		noWaitUnsupported.Store(true)
		return ErrWouldBlock
	}
	return &os.PathError{Op: "preadv2", Path: f.Name(), Err: errno}
}
