package store

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// appendFile is an append-only index file written by one goroutine at a time through an
// in-memory tail buffer, and readable concurrently: bytes still in the buffer are served
// from it, bytes in the file through the block cache. Bytes once appended never change, so
// a cached block never goes stale.
type appendFile struct {
	path string
	id   uint32 // block-cache file id, unique per open file
	f    *os.File

	flushMu sync.Mutex // one pwrite at a time

	mu       sync.Mutex
	written  int64  // bytes in the file
	inflight []byte // being written at written
	buf      []byte // after inflight
	spare    []byte // recycled buffer
	dirty    bool   // appended since the last takeDirty
	flushAt  int    // buffered bytes at which append writes them out
	finished bool   // no more appends: flush keeps no spare (finish)
}

var appendFileIDs atomic.Uint32

// openAppendFile opens (or creates) path for appending at its current end, or at size when
// size >= 0 (the file is truncated there).
func openAppendFile(path string, size int64, flushAt int) (*appendFile, bool, error) {
	created := false
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		created = true
	}
	if err != nil {
		return nil, false, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	n := st.Size()
	if size >= 0 && size != n {
		if size > n {
			f.Close()
			return nil, false, fmt.Errorf("%s is %d bytes, shorter than the %d the checkpoint names", path, n, size)
		}
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, false, err
		}
		n = size
	}
	return &appendFile{path: path, id: appendFileIDs.Add(1), f: f, written: n, flushAt: flushAt}, created, nil
}

// size is the logical length: file plus buffered bytes.
func (a *appendFile) size() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.written + int64(len(a.inflight)+len(a.buf))
}

// append adds b at the end; it writes the buffer out once it holds flushAt bytes.
func (a *appendFile) append(b []byte) error {
	a.mu.Lock()
	if a.buf == nil && a.spare != nil {
		a.buf, a.spare = a.spare[:0], nil
	}
	a.buf = append(a.buf, b...)
	a.dirty = true
	full := len(a.buf) >= a.flushAt
	a.mu.Unlock()
	if full {
		return a.flush()
	}
	return nil
}

// flush writes the buffered bytes to the file (not fsynced).
func (a *appendFile) flush() error {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	a.mu.Lock()
	data, off := a.buf, a.written
	a.inflight, a.buf = data, nil
	a.mu.Unlock()
	if len(data) == 0 {
		return nil
	}
	n, err := a.f.WriteAt(data, off)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil && n != len(data) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(data))
	}
	if err != nil {
		// Keep the bytes readable from memory; the store fails and is restarted.
		a.buf = append(a.inflight, a.buf...)
		a.inflight = nil
		return fmt.Errorf("write %s: %w", a.path, err)
	}
	a.written += int64(len(data))
	a.inflight = nil
	if cap(data) <= 4*a.flushAt && !a.finished {
		a.spare = data[:0]
	}
	return nil
}

// finish says nothing more will be appended: it writes the buffered bytes out (the next
// checkpoint fsyncs them, the file stays dirty) and keeps no buffer. Without it every file
// the store appended since it started kept up to flushAt bytes in the heap.
func (a *appendFile) finish() error {
	a.mu.Lock()
	a.finished, a.spare = true, nil
	a.mu.Unlock()
	return a.flush()
}

// bufferedBytes is the capacity of the buffers a holds (tests).
func (a *appendFile) bufferedBytes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return cap(a.inflight) + cap(a.buf) + cap(a.spare)
}

// sync flushes and fsyncs.
func (a *appendFile) sync() error {
	if err := a.flush(); err != nil {
		return err
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", a.path, err)
	}
	return nil
}

// takeDirty reports whether bytes were appended since the last call, and clears the flag.
func (a *appendFile) takeDirty() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.dirty
	a.dirty = false
	return d
}

// readAt fills p from offset off, through cache when it is not nil.
func (a *appendFile) readAt(p []byte, off int64, cache *blockCache) error {
	return a.read(p, off, cache, false)
}

// read is readAt; with noWait, what is not cached or buffered comes only from the page
// cache, else it fails with ErrWouldBlock (preadNoWait).
func (a *appendFile) read(p []byte, off int64, cache *blockCache, noWait bool) error {
	a.mu.Lock()
	end := a.written + int64(len(a.inflight)+len(a.buf))
	if off < 0 || off+int64(len(p)) > end {
		a.mu.Unlock()
		return fmt.Errorf("%w: read of %d bytes at %d in %s of %d bytes", ErrCorrupt, len(p), off, a.path, end)
	}
	written := a.written
	if off+int64(len(p)) > written { // the tail lies in the buffers
		from := max(off, written)
		dst := p[from-off:]
		rel := from - written
		if rel < int64(len(a.inflight)) {
			n := copy(dst, a.inflight[rel:])
			dst, rel = dst[n:], 0
		} else {
			rel -= int64(len(a.inflight))
		}
		copy(dst, a.buf[rel:])
		p = p[:max(written-off, 0)]
	}
	a.mu.Unlock()
	for len(p) > 0 {
		blk := off / blockBytes
		inBlk := int(off % blockBytes)
		n := min(len(p), blockBytes-inBlk)
		whole := (blk+1)*blockBytes <= written
		if cache != nil && whole && cache.get(blockKey(a.id, blk), inBlk, p[:n]) {
			p, off = p[n:], off+int64(n)
			continue
		}
		if cache != nil && whole {
			var b [blockBytes]byte
			if err := pread(a.f, b[:], blk*blockBytes, noWait); err != nil {
				return fmt.Errorf("read %s at %d: %w", a.path, blk*blockBytes, err)
			}
			cache.put(blockKey(a.id, blk), b[:])
			copy(p[:n], b[inBlk:])
		} else if err := pread(a.f, p[:n], off, noWait); err != nil {
			return fmt.Errorf("read %s at %d: %w", a.path, off, err)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (a *appendFile) close() error { return a.f.Close() }
