package timer

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A run is an immutable file of index entries sorted by (due, qoff): what one memtable
// flush or one compaction wrote. The index reads each run from a cursor (everything before
// it is loaded into the heap) through a small buffer.
type run struct {
	runHeader
	path string
	f    *os.File

	cursor int64   // entries before it are loaded (due < index.frontier)
	buf    []entry // read-ahead from bufAt
	bufAt  int64
}

const (
	runPrefix = "run-"
	runExt    = ".tix"
	// runReadAhead is how many entries one refill of a cursor buffer reads (8 KiB).
	runReadAhead = 256
)

func runName(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%s%016x%s", runPrefix, seq, runExt))
}

// parseRunName returns the seq of a run file name.
func parseRunName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, runPrefix) || !strings.HasSuffix(name, runExt) {
		return 0, false
	}
	seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, runPrefix), runExt), 16, 64)
	return seq, err == nil
}

// writeRun writes sorted entries as run seq and fsyncs it (and the directory).
func writeRun(dir string, seq uint64, entries []entry) (*run, error) {
	w, err := createRun(dir, runHeader{seq: seq})
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := w.add(e); err != nil {
			w.abort()
			return nil, err
		}
	}
	return w.finish()
}

// runWriter streams a run whose header is known up front except for its count and bounds,
// which finish patches (compaction does not know them until the merge ends).
type runWriter struct {
	h    runHeader
	path string
	f    *os.File
	w    *bufio.Writer
	buf  []byte
	n    int64
}

func createRun(dir string, h runHeader) (*runWriter, error) {
	path := runName(dir, h.seq)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create timer run %s: %w", path, err)
	}
	w := &runWriter{h: h, path: path, f: f, w: bufio.NewWriterSize(f, 256<<10)}
	if _, err := w.w.Write(make([]byte, runHeaderBytes)); err != nil {
		w.abort()
		return nil, err
	}
	return w, nil
}

func (w *runWriter) add(e entry) error {
	if w.n == 0 {
		w.h.minDue, w.h.minQoff, w.h.maxQoff = e.due, e.qoff, e.qoff
	}
	w.h.maxDue = e.due
	w.h.minQoff, w.h.maxQoff = min(w.h.minQoff, e.qoff), max(w.h.maxQoff, e.qoff)
	w.n++
	w.buf = appendEntry(w.buf[:0], e)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("write timer run %s: %w", w.path, err)
	}
	return nil
}

func (w *runWriter) abort() {
	w.f.Close()
	os.Remove(w.path)
}

// finish writes the header, fsyncs the file and its directory, and opens the run.
func (w *runWriter) finish() (*run, error) {
	w.h.count = w.n
	fail := func(err error) (*run, error) {
		w.abort()
		return nil, fmt.Errorf("write timer run %s: %w", w.path, err)
	}
	if err := w.w.Flush(); err != nil {
		return fail(err)
	}
	if _, err := w.f.WriteAt(encodeRunHeader(w.h), 0); err != nil {
		return fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(w.path)); err != nil {
		return fail(err)
	}
	return &run{runHeader: w.h, path: w.path, f: w.f}, nil
}

// openRun opens a run listed in the manifest and checks its header against it.
func openRun(dir string, want manifestRun) (*run, error) {
	path := runName(dir, want.seq)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open timer run %s: %w", path, err)
	}
	fail := func(err error) (*run, error) {
		f.Close()
		return nil, fmt.Errorf("open timer run %s: %w", path, err)
	}
	hb := make([]byte, runHeaderBytes)
	if _, err := io.ReadFull(f, hb); err != nil {
		return fail(fmt.Errorf("%w: header: %v", ErrCorrupt, err))
	}
	h, err := decodeRunHeader(hb)
	if err != nil {
		return fail(err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if h.seq != want.seq || h.count != want.count || st.Size() != runHeaderBytes+h.count*entryBytes {
		return fail(fmt.Errorf("%w: run holds %d entries in %d bytes, the manifest says %d", ErrCorrupt, h.count, st.Size(), want.count))
	}
	return &run{runHeader: h, path: path, f: f}, nil
}

// readRange reads entries [from, from+n) of the run.
func (r *run) readRange(from int64, n int) ([]entry, error) {
	n = int(min(int64(n), r.count-from))
	if n <= 0 {
		return nil, nil
	}
	b := make([]byte, n*entryBytes)
	if _, err := r.f.ReadAt(b, runHeaderBytes+from*entryBytes); err != nil {
		return nil, fmt.Errorf("read timer run %s at entry %d: %w", r.path, from, err)
	}
	out := make([]entry, n)
	for i := range out {
		e, err := decodeEntry(b[i*entryBytes:])
		if err != nil {
			return nil, fmt.Errorf("timer run %s entry %d: %w", r.path, from+int64(i), err)
		}
		out[i] = e
	}
	return out, nil
}

// at returns entry i, from the buffer when it holds it.
func (r *run) at(i int64) (entry, error) {
	if i >= r.bufAt && i < r.bufAt+int64(len(r.buf)) {
		return r.buf[i-r.bufAt], nil
	}
	es, err := r.readRange(i, 1)
	if err != nil {
		return entry{}, err
	}
	return es[0], nil
}

// peek returns the entry at the cursor, ok false past the end.
func (r *run) peek() (entry, bool, error) {
	if r.cursor >= r.count {
		r.buf = nil
		return entry{}, false, nil
	}
	if r.cursor < r.bufAt || r.cursor >= r.bufAt+int64(len(r.buf)) {
		es, err := r.readRange(r.cursor, runReadAhead)
		if err != nil {
			return entry{}, false, err
		}
		r.buf, r.bufAt = es, r.cursor
	}
	return r.buf[r.cursor-r.bufAt], true, nil
}

// lowerBound is the index of the first entry with due >= due.
func (r *run) lowerBound(due int64) (int64, error) {
	if r.count == 0 || due <= r.minDue {
		return 0, nil
	}
	if due > r.maxDue {
		return r.count, nil
	}
	var err error
	i := sort.Search(int(r.count), func(i int) bool {
		if err != nil {
			return true
		}
		e, e2 := r.at(int64(i))
		if e2 != nil {
			err = e2
			return true
		}
		return e.due >= due
	})
	return int64(i), err
}

func (r *run) close() { r.f.Close() }

func (r *run) bytes() int64 { return runHeaderBytes + r.count*entryBytes }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
