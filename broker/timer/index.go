package timer

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// index orders pending timers by due time: an LSM of time-sorted runs on disk, a memtable of
// entries not yet flushed, and a min-heap of the near window. Everything in it is derived
// from ParkTopic's queue and can be rebuilt from the commit log.
//
// The loaded frontier keeps the parts consistent: an entry is loaded (in the heap, being
// fired, or fired) exactly when its due time is before the frontier. New entries due before
// it go straight to the heap; the loader moves the frontier forward and pushes what falls
// behind it, from every run's cursor and from the memtable.
type index struct {
	dir string
	log *slog.Logger

	flushMu sync.Mutex // one flush or compaction at a time (they write the manifest)

	mu       sync.Mutex
	frontier int64 // ms; see above
	indexed  int64 // every parked record below this queue offset has its entry here
	durable  int64 // indexed as of the last manifest written
	heap     entryHeap
	mem      []entry
	memMin   int64 // lowest qoff in mem
	memNext  int64 // lowest due at or after the frontier in mem and imm
	imm      []memtable
	runs     []*run
	nextSeq  uint64
	// skip is the checkpoint found at open: what it covers fired before, and is never loaded
	// again. fired is the latest checkpoint written to the log, which compaction may trust.
	skip, fired checkpoint
	err         error // a run that could not be read: loading stops, a rebuild is needed
}

// memtable is a flushed-out memtable on its way into a run.
type memtable struct {
	entries []entry
	minQoff int64
}

// loadStepMs is the width of one loader step: the heap may overshoot its bound by what falls
// due within one step.
const loadStepMs = 100

const (
	manifestName = "MANIFEST"
	rebuildName  = "REBUILD" // marker: the index is unusable, rebuild it from the log on open
)

func cmpEntry(a, b entry) int {
	if c := cmp.Compare(a.due, b.due); c != 0 {
		return c
	}
	return cmp.Compare(a.qoff, b.qoff)
}

func newIndex(dir string, log *slog.Logger) *index {
	return &index{dir: dir, log: log, memMin: math.MaxInt64, memNext: math.MaxInt64}
}

// open loads the index from dir. It returns rebuildFrom >= 0 when the index had to be
// discarded (missing, corrupt, marked for rebuild, or ahead of the log's end logEnd): the
// caller then re-indexes ParkTopic from that offset, which is skip.lowOffset. The runs not
// in the manifest, and temporary files, are removed.
func (ix *index) open(skip checkpoint, logEnd int64) (rebuildFrom int64, err error) {
	if err := os.MkdirAll(ix.dir, 0o755); err != nil {
		return 0, fmt.Errorf("timer index: create %s: %w", ix.dir, err)
	}
	ix.skip, ix.fired = skip, skip
	rebuild := func(why string, cause error) (int64, error) {
		ix.log.Warn("timer index rebuilt from the commit log", "dir", ix.dir, "reason", why, "err", cause, "from_offset", skip.lowOffset)
		for _, r := range ix.runs {
			r.close()
		}
		ix.runs = nil
		if err := ix.removeStray(nil); err != nil {
			return 0, err
		}
		ix.indexed, ix.durable = skip.lowOffset, skip.lowOffset
		ix.frontier = max(0, skip.firedThrough+1)
		if err := ix.writeManifest(manifest{indexedBelow: ix.indexed, nextSeq: ix.nextSeq}); err != nil {
			return 0, err
		}
		_ = os.Remove(filepath.Join(ix.dir, rebuildName))
		return skip.lowOffset, nil
	}
	if _, err := os.Stat(filepath.Join(ix.dir, rebuildName)); err == nil {
		return rebuild("a run failed to read while running", nil)
	}
	raw, err := os.ReadFile(filepath.Join(ix.dir, manifestName))
	if os.IsNotExist(err) {
		return rebuild("no manifest", nil)
	}
	if err != nil {
		return 0, fmt.Errorf("timer index: read manifest: %w", err)
	}
	m, err := decodeManifest(raw)
	if err != nil {
		return rebuild("manifest unreadable", err)
	}
	ix.nextSeq = m.nextSeq
	for _, mr := range m.runs {
		r, err := openRun(ix.dir, mr)
		if err != nil {
			return rebuild("run unreadable", err)
		}
		ix.runs = append(ix.runs, r)
	}
	if m.indexedBelow > logEnd {
		return rebuild(fmt.Sprintf("index covers ParkTopic up to offset %d but the log ends at %d (its tail was lost)", m.indexedBelow, logEnd), nil)
	}
	ix.indexed, ix.durable = m.indexedBelow, m.indexedBelow
	if err := ix.loadFired(); err != nil {
		return rebuild("run unreadable", err)
	}
	keep := map[uint64]bool{}
	for _, r := range ix.runs {
		keep[r.seq] = true
	}
	return -1, ix.removeStray(keep)
}

// loadFired starts the frontier after the checkpoint's fired-through time: the runs'
// entries due by then either fired before (the checkpoint covers them) or arrived late and
// go to the heap now.
func (ix *index) loadFired() error {
	if ix.skip.firedThrough <= 0 {
		return nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.frontier = ix.skip.firedThrough + 1
	return ix.loadLocked(ix.frontier)
}

// removeStray deletes run files not in keep and temporary files.
func (ix *index) removeStray(keep map[uint64]bool) error {
	des, err := os.ReadDir(ix.dir)
	if err != nil {
		return fmt.Errorf("timer index: list %s: %w", ix.dir, err)
	}
	for _, de := range des {
		name := de.Name()
		seq, isRun := parseRunName(name)
		if isRun && !keep[seq] || filepath.Ext(name) == ".tmp" {
			if err := os.Remove(filepath.Join(ix.dir, name)); err != nil {
				return fmt.Errorf("timer index: remove stray %s: %w", name, err)
			}
		}
		if isRun && seq >= ix.nextSeq {
			ix.nextSeq = seq + 1
		}
	}
	return nil
}

// markRebuild leaves the marker that makes the next open rebuild the index.
func (ix *index) markRebuild() {
	if err := os.WriteFile(filepath.Join(ix.dir, rebuildName), []byte("rebuild the timer index from the commit log\n"), 0o644); err != nil {
		ix.log.Error("timer index: write rebuild marker", "err", err)
	}
}

func (ix *index) writeManifest(m manifest) error {
	tmp := filepath.Join(ix.dir, manifestName+".tmp")
	if err := os.WriteFile(tmp, encodeManifest(m), 0o644); err != nil {
		return fmt.Errorf("timer index: write manifest: %w", err)
	}
	f, err := os.Open(tmp)
	if err != nil {
		return fmt.Errorf("timer index: write manifest: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("timer index: fsync manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(ix.dir, manifestName)); err != nil {
		return fmt.Errorf("timer index: install manifest: %w", err)
	}
	return syncDir(ix.dir)
}

func (ix *index) manifestLocked(indexedBelow int64) manifest {
	m := manifest{indexedBelow: indexedBelow, nextSeq: ix.nextSeq}
	for _, r := range ix.runs {
		m.runs = append(m.runs, manifestRun{seq: r.seq, count: r.count})
	}
	return m
}

// insert adds the entries of parked records read from ParkTopic, and records that every
// record below next is indexed. It returns the lowest due time added, for the fire loop.
func (ix *index) insert(es []entry, next int64) int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	low := int64(math.MaxInt64)
	for _, e := range es {
		if ix.skip.covers(e) {
			continue // fired before the restart
		}
		if e.due < ix.frontier {
			ix.heap.push(e)
		} else if e.due < ix.memNext {
			ix.memNext = e.due
		}
		ix.mem = append(ix.mem, e)
		ix.memMin = min(ix.memMin, e.qoff)
		low = min(low, e.due)
	}
	ix.indexed = max(ix.indexed, next)
	return low
}

// advance moves the frontier toward target, loading what falls behind it, until the heap
// holds maxHeap entries.
func (ix *index) advance(target int64, maxHeap int) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.err != nil {
		return ix.err
	}
	for ix.frontier < target && len(ix.heap) < maxHeap {
		nd, err := ix.nextUnloadedLocked()
		if err != nil {
			return ix.failLocked(err)
		}
		if nd >= target {
			ix.frontier = target
			return nil
		}
		ix.frontier = max(ix.frontier, nd)
		end := min(target, ix.frontier+loadStepMs)
		if err := ix.loadLocked(end); err != nil {
			return ix.failLocked(err)
		}
		ix.frontier = end
	}
	return nil
}

func (ix *index) failLocked(err error) error {
	ix.err = fmt.Errorf("timer index: %w; restart the broker to rebuild the index from the commit log", err)
	ix.log.Error("timer index read failed; timers stop loading", "err", err)
	ix.markRebuild()
	return ix.err
}

// nextUnloadedLocked is the lowest due time not yet loaded (MaxInt64 if none).
func (ix *index) nextUnloadedLocked() (int64, error) {
	nd := ix.memNext
	for _, r := range ix.runs {
		e, ok, err := r.peek()
		if err != nil {
			return 0, err
		}
		if ok {
			nd = min(nd, e.due)
		}
	}
	return nd, nil
}

// loadLocked pushes every entry with frontier <= due < end. Runs go first: they can fail,
// and a failure must not leave the memtable half loaded.
func (ix *index) loadLocked(end int64) error {
	for _, r := range ix.runs {
		for {
			e, ok, err := r.peek()
			if err != nil {
				return err
			}
			if !ok || e.due >= end {
				break
			}
			r.cursor++
			if !ix.skip.covers(e) {
				ix.heap.push(e)
			}
		}
	}
	next := int64(math.MaxInt64)
	scan := func(es []entry) {
		for _, e := range es {
			switch {
			case e.due >= end:
				next = min(next, e.due)
			case e.due >= ix.frontier && !ix.skip.covers(e):
				ix.heap.push(e)
			}
		}
	}
	scan(ix.mem)
	for _, m := range ix.imm {
		scan(m.entries)
	}
	ix.memNext = next
	return nil
}

// popDue takes up to max entries due at or before nowMs off the heap.
func (ix *index) popDue(nowMs int64, max int) []entry {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []entry
	for len(out) < max {
		e, ok := ix.heap.top()
		if !ok || e.due > nowMs {
			break
		}
		out = append(out, ix.heap.pop())
	}
	return out
}

// requeue puts entries that could not fire back in the heap.
func (ix *index) requeue(es []entry) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, e := range es {
		ix.heap.push(e)
	}
}

// nextWake is the heap's earliest due time and the earliest due time not loaded yet
// (MaxInt64 for none): the fire loop sleeps until the first, or until the second comes
// within the lookahead. A full heap loads nothing more, so it reports no unloaded time.
func (ix *index) nextWake(maxHeap int) (heapTop, unloaded int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	heapTop = math.MaxInt64
	if e, ok := ix.heap.top(); ok {
		heapTop = e.due
	}
	if len(ix.heap) >= maxHeap {
		return heapTop, math.MaxInt64
	}
	unloaded, err := ix.nextUnloadedLocked()
	if err != nil {
		unloaded = math.MaxInt64 // advance reports it
	}
	return heapTop, max(unloaded, ix.frontier)
}

// checkpoint is the fired state once the entries taken by popDue have fired, except those
// due at or after holdDue (read failures that will be retried).
func (ix *index) checkpoint(holdDue int64) checkpoint {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	d := ix.frontier
	if e, ok := ix.heap.top(); ok {
		d = min(d, e.due)
	}
	d = min(d, holdDue) - 1
	return checkpoint{indexedBelow: ix.indexed, firedThrough: d, lowOffset: ix.lowOffsetLocked()}
}

// lowOffsetLocked is a queue offset below which nothing is pending: the lowest offset any
// run or memtable holds (fired entries included, so it is conservative).
func (ix *index) lowOffsetLocked() int64 {
	low := min(ix.indexed, ix.memMin)
	for _, m := range ix.imm {
		low = min(low, m.minQoff)
	}
	for _, r := range ix.runs {
		if r.count > 0 {
			low = min(low, r.minQoff)
		}
	}
	return low
}

// setFired records the latest checkpoint written to the log.
func (ix *index) setFired(c checkpoint) {
	ix.mu.Lock()
	ix.fired = c
	ix.mu.Unlock()
}

// flush turns the memtable into a run and writes the manifest.
func (ix *index) flush() error {
	ix.flushMu.Lock()
	defer ix.flushMu.Unlock()
	ix.mu.Lock()
	mem := memtable{entries: ix.mem, minQoff: ix.memMin}
	indexed := ix.indexed
	if len(mem.entries) == 0 && indexed == ix.durable {
		ix.mu.Unlock()
		return nil
	}
	ix.mem, ix.memMin = nil, math.MaxInt64
	ix.imm = append(ix.imm, mem)
	seq := ix.nextSeq
	if len(mem.entries) > 0 {
		ix.nextSeq++
	}
	ix.mu.Unlock()

	var r *run
	var sorted []entry
	var err error
	if len(mem.entries) > 0 {
		sorted = slices.Clone(mem.entries)
		slices.SortFunc(sorted, cmpEntry)
		r, err = writeRun(ix.dir, seq, sorted)
	}
	ix.mu.Lock()
	ix.imm = ix.imm[1:]
	if err != nil {
		ix.mem = append(mem.entries, ix.mem...)
		ix.memMin = min(ix.memMin, mem.minQoff)
		ix.mu.Unlock()
		return err
	}
	if r != nil {
		r.cursor = int64(lowerBoundSlice(sorted, ix.frontier))
		ix.runs = append(ix.runs, r)
	}
	m := ix.manifestLocked(indexed)
	ix.mu.Unlock()
	if err := ix.writeManifest(m); err != nil {
		return err
	}
	ix.mu.Lock()
	ix.durable = indexed
	ix.mu.Unlock()
	return nil
}

func lowerBoundSlice(es []entry, due int64) int {
	i, _ := slices.BinarySearchFunc(es, due, func(e entry, d int64) int {
		if e.due < d {
			return -1
		}
		return 1
	})
	return i
}

// Compaction policy: runs are grouped in size classes of factor compactFanIn; a class that
// holds compactFanIn runs is merged into one. A run whose first half has fired is rewritten
// alone, so fired entries do not hold disk.
const (
	compactFanIn    = 8
	compactMinBytes = 4096 // entries; smaller runs all share class 0
)

func sizeClass(count int64) int {
	c := 0
	for n := count / compactMinBytes; n > 0; n /= compactFanIn {
		c++
	}
	return c
}

// compact drops runs that have fully fired and merges runs by the policy above, dropping
// the entries the latest checkpoint covers.
func (ix *index) compact() error {
	ix.flushMu.Lock()
	defer ix.flushMu.Unlock()
	ix.mu.Lock()
	if ix.err != nil {
		ix.mu.Unlock()
		return nil
	}
	ck := ix.fired
	var keep, dropped []*run
	for _, r := range ix.runs {
		if r.count == 0 || r.maxQoff < ck.lowOffset || r.maxQoff < ck.indexedBelow && r.maxDue <= ck.firedThrough {
			dropped = append(dropped, r)
		} else {
			keep = append(keep, r)
		}
	}
	ix.runs = keep
	pick := ix.pickLocked(ck)
	seq := ix.nextSeq
	if len(pick) > 0 {
		ix.nextSeq++
	}
	m := ix.manifestLocked(ix.durable)
	ix.mu.Unlock()
	if len(dropped) > 0 {
		if err := ix.writeManifest(m); err != nil {
			return err
		}
		removeRuns(dropped)
	}
	if len(pick) == 0 {
		return nil
	}
	out, err := mergeRuns(ix.dir, seq, pick, ck)
	if err != nil {
		return fmt.Errorf("timer index: compact %d runs: %w", len(pick), err)
	}
	ix.mu.Lock()
	picked := map[*run]bool{}
	for _, r := range pick {
		picked[r] = true
	}
	rest := ix.runs[:0:0]
	for _, r := range ix.runs {
		if !picked[r] {
			rest = append(rest, r)
		}
	}
	if out != nil {
		if out.cursor, err = out.lowerBound(ix.frontier); err != nil {
			ix.mu.Unlock()
			out.close()
			os.Remove(out.path)
			return fmt.Errorf("timer index: compact: %w", err)
		}
		rest = append(rest, out)
	}
	ix.runs = rest
	m = ix.manifestLocked(ix.durable)
	ix.mu.Unlock()
	if err := ix.writeManifest(m); err != nil {
		return err
	}
	removeRuns(pick)
	return nil
}

func removeRuns(rs []*run) {
	for _, r := range rs {
		r.close()
		os.Remove(r.path)
	}
}

// pickLocked chooses the runs of the next merge.
func (ix *index) pickLocked(ck checkpoint) []*run {
	classes := map[int][]*run{}
	low := -1
	for _, r := range ix.runs {
		c := sizeClass(r.count)
		classes[c] = append(classes[c], r)
		if len(classes[c]) >= compactFanIn && (low < 0 || c < low) {
			low = c
		}
	}
	if low >= 0 {
		return classes[low]
	}
	for _, r := range ix.runs {
		if r.count < compactMinBytes || r.maxQoff >= ck.indexedBelow {
			continue
		}
		if fired, err := r.lowerBound(ck.firedThrough + 1); err == nil && fired >= r.count/2 {
			return []*run{r}
		}
	}
	return nil
}

// mergeRuns writes the entries of rs not covered by ck, in order, as run seq (nil when none
// remain).
func mergeRuns(dir string, seq uint64, rs []*run, ck checkpoint) (*run, error) {
	type src struct {
		r   *bufio.Reader
		cur entry
		ok  bool
	}
	srcs := make([]*src, 0, len(rs))
	buf := make([]byte, entryBytes)
	next := func(s *src) error {
		if _, err := io.ReadFull(s.r, buf); err != nil {
			if errors.Is(err, io.EOF) {
				s.ok = false
				return nil
			}
			return err
		}
		e, err := decodeEntry(buf)
		if err != nil {
			return err
		}
		s.cur, s.ok = e, true
		return nil
	}
	for _, r := range rs {
		s := &src{r: bufio.NewReaderSize(io.NewSectionReader(r.f, runHeaderBytes, r.count*entryBytes), 64<<10)}
		if err := next(s); err != nil {
			return nil, fmt.Errorf("read %s: %w", r.path, err)
		}
		srcs = append(srcs, s)
	}
	w, err := createRun(dir, runHeader{seq: seq})
	if err != nil {
		return nil, err
	}
	for {
		var best *src
		for _, s := range srcs {
			if s.ok && (best == nil || s.cur.less(best.cur)) {
				best = s
			}
		}
		if best == nil {
			break
		}
		if !ck.covers(best.cur) {
			if err := w.add(best.cur); err != nil {
				w.abort()
				return nil, err
			}
		}
		if err := next(best); err != nil {
			w.abort()
			return nil, err
		}
	}
	if w.n == 0 {
		w.abort()
		return nil, nil
	}
	return w.finish()
}

// close closes the run files.
func (ix *index) close() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, r := range ix.runs {
		r.close()
	}
	ix.runs = nil
}
