package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Store is the hot tier of one broker: a commit log shared by all topics, the consume queues
// and the key index built from it. All methods are safe for concurrent use.
type Store struct {
	cfg       Config
	logDir    string
	maxRecord int // scan/read bound for one stored record

	// Test hooks: the single functions through which the log is written and synced.
	writeAt  func(f *os.File, b []byte, off int64) (int, error)
	syncFile func(f *os.File) error

	segMu    sync.RWMutex
	segments []*segment // ascending; the last is the active one
	minPos   atomic.Int64
	logEnd   atomic.Int64 // end of written records

	qmu     sync.RWMutex
	queues  map[queueKey]*consumeQueue
	deleted map[string]int64 // topic → commit-log position below which its records are deleted

	idx            indexState
	ckptMu         sync.Mutex // one checkpoint at a time
	ckptSeq        uint64
	ckptFile       *os.File
	lastCheckpoint atomic.Pointer[checkpoint]
	loadFirstPos   map[*consumeQueue]int64 // Open only
	indexCorrupt   atomic.Bool             // a page failed its check: the next Open rebuilds

	// What Open did, for tests and logs: records indexed from the log, and whether every
	// index file was rebuilt.
	recoveredRecords int64
	rebuiltIndex     bool

	hookMu    sync.Mutex
	listeners []func(SealedSegment)
	retention func(SealedSegment) bool
	sealQueue []SealedSegment
	sealWake  chan struct{}

	ops         chan *writeOp
	completions chan completion
	rollCh      chan struct{}
	stop        chan struct{}
	wg          sync.WaitGroup

	closeMu  sync.RWMutex
	closed   bool
	closeErr error

	// Replication (replicate.go, epochs.go).
	follower     atomic.Bool   // set on the writer goroutine (SetFollower)
	leading      atomic.Bool   // age-based rolls allowed: not Replicated, or SetFollower(false) ran
	endMu        sync.Mutex    // endCh
	endCh        chan struct{} // closed when logEnd moves; nil when no one waits
	truncMu      sync.RWMutex  // TruncateTo holds it; readers and maintenance take it shared
	epochMu      sync.Mutex
	epochs       []EpochStart
	truncateHook func(step string) error // tests: fail TruncateTo after a step
	limitMu      sync.Mutex              // limitCh, changes of readLimit
	readLimit    atomic.Int64            // readlimit.go; Unlimited by default
	limitCh      chan struct{}           // closed when readLimit moves; nil when no one waits
	keptFile     *os.File                // keptLimitFile, opened at the first keep; limitMu
	keptAt       time.Time               // when keptPos was written; limitMu
	keptPos      int64                   // the limit last written to keptLimitFile; limitMu
	keptAtOpen   int64                   // the limit an earlier run kept (KeptReadLimit)

	failed      atomic.Pointer[error] // sticky write failure
	lastStoreTs int64                 // writer goroutine only
	wbuf        []byte                // writer goroutine only
	recBuf      []logRecord           // writer goroutine only
}

const (
	commitLogDir     = "commitlog"
	tombstonesFile   = "deleted-topics"
	tombstoneVersion = 1
)

// Open recovers the store in cfg.Dir (creating it if needed) and starts its writer and
// maintenance goroutines.
func Open(cfg Config) (*Store, error) { return OpenContext(context.Background(), cfg) }

// OpenContext is Open that gives up between segments once ctx ends, so a process asked to
// stop while it recovers a large commit log stops promptly; the files are left as they were
// (recovery redoes its work on the next open).
func OpenContext(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:          cfg,
		logDir:       filepath.Join(cfg.Dir, commitLogDir),
		maxRecord:    int(min(cfg.SegmentBytes, 1<<31-1)),
		writeAt:      func(f *os.File, b []byte, off int64) (int, error) { return f.WriteAt(b, off) },
		syncFile:     func(f *os.File) error { return f.Sync() },
		queues:       make(map[queueKey]*consumeQueue),
		deleted:      make(map[string]int64),
		loadFirstPos: make(map[*consumeQueue]int64),
		sealWake:     make(chan struct{}, 1),
		ops:          make(chan *writeOp, 1024),
		completions:  make(chan completion, 64),
		rollCh:       make(chan struct{}, 1),
		stop:         make(chan struct{}),
	}
	if observe := cfg.OnFsync; observe != nil {
		s.syncFile = func(f *os.File) error {
			start := time.Now()
			err := f.Sync()
			observe(time.Since(start), err)
			return err
		}
	}
	s.readLimit.Store(Unlimited)
	s.leading.Store(!cfg.Replicated)
	s.loadKeptLimit()
	s.initIndex()
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("open store: create %s: %w", s.logDir, err)
	}
	if err := s.loadEpochs(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
	}
	if err := s.recoverAll(ctx); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
	}
	s.loadFirstPos = nil
	// A checkpoint now makes a long replay (or a rebuild) the last one.
	if err := s.checkpointNow(false); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("open store %s: write the index checkpoint: %w", cfg.Dir, err)
	}
	s.wg.Add(4)
	go s.writeLoop()
	go s.completeLoop()
	go s.maintainLoop()
	go s.notifyLoop()
	return s, nil
}

// initIndex sets the index state to empty, with fresh caches (Open, TruncateTo).
func (s *Store) initIndex() {
	cfg := &s.cfg
	s.idx = indexState{pageBuf: make([]byte, cqPageBytes), cqCache: newBlockCache(cfg.ConsumeQueueCacheBytes),
		keys: keyIndex{dir: filepath.Join(cfg.Dir, indexDir), capacity: uint32(cfg.KeyIndexFileKeys),
			slots: keySlots(cfg.KeyIndexFileKeys), cache: newBlockCache(cfg.KeyIndexCacheBytes)}}
}

// recoverAll recovers the log and the index, and drops epoch-history entries that start past
// the recovered end (a crash cut the log after BeginEpoch recorded them).
func (s *Store) recoverAll(ctx context.Context) error {
	if err := s.recover(ctx); err != nil {
		return err
	}
	return s.trimEpochsFrom(s.logEnd.Load(), true)
}

// queue returns the consume queue of (topic, id), creating it if create is set.
func (s *Store) queue(topic string, id int32, create bool) *consumeQueue {
	if !create {
		s.qmu.RLock()
		defer s.qmu.RUnlock()
		return s.queues[queueKey{topic, id}]
	}
	return s.queueAt(topic, id, s.logEnd.Load())
}

// queueAt returns the consume queue of (topic, id), creating it as of commit-log position
// createdPos (a topic tombstone above it makes the queue dead at the next open).
func (s *Store) queueAt(topic string, id int32, createdPos int64) *consumeQueue {
	k := queueKey{topic, id}
	s.qmu.RLock()
	q := s.queues[k]
	s.qmu.RUnlock()
	if q != nil {
		return q
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if q = s.queues[k]; q == nil {
		q = newConsumeQueue(string([]byte(topic)), id, createdPos)
		s.queues[k] = q
	}
	return q
}

func (s *Store) createSegment(base int64) (*segment, error) {
	path := segmentName(s.logDir, base)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment %d: %w", base, err)
	}
	fail := func(err error) (*segment, error) {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create segment %d: %w", base, err)
	}
	if _, err := s.writeAt(f, encodeSegmentHeader(base), 0); err != nil {
		return fail(err)
	}
	if err := s.syncFile(f); err != nil {
		return fail(err)
	}
	if err := syncDir(s.logDir); err != nil {
		return fail(err)
	}
	g := &segment{base: base, path: path, f: f}
	g.size.Store(segmentHeaderBytes)
	return g, nil
}

// Tombstones file (FORMAT.md): header "STMB", version, 3 reserved bytes; then framed entries
// of uint32 length, body (int64 position, topic), uint32 CRC32C(body); a torn tail is ignored.
func (s *Store) loadTombstones() error {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, tombstonesFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read topic tombstones: %w", err)
	}
	if len(b) < 8 || string(b[:4]) != "STMB" || b[4] != tombstoneVersion {
		return fmt.Errorf("%w: topic tombstones file has a bad header or version", ErrCorrupt)
	}
	b = b[8:]
	for len(b) >= 8 {
		n := int(binary.BigEndian.Uint32(b))
		if n < 9 || len(b) < 4+n+4 || crc32c(b[4:4+n]) != binary.BigEndian.Uint32(b[4+n:]) {
			break
		}
		body := b[4 : 4+n]
		s.deleted[string(body[8:])] = int64(binary.BigEndian.Uint64(body))
		b = b[8+n:]
	}
	return nil
}

func (s *Store) appendTombstone(topic string, pos int64) error {
	body := binary.BigEndian.AppendUint64(nil, uint64(pos))
	body = append(body, topic...)
	rec := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	rec = append(rec, body...)
	rec = binary.BigEndian.AppendUint32(rec, crc32c(body))
	f, err := os.OpenFile(filepath.Join(s.cfg.Dir, tombstonesFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		rec = append([]byte{'S', 'T', 'M', 'B', tombstoneVersion, 0, 0, 0}, rec...)
	}
	if _, err := f.Write(rec); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// OnSeal registers fn to be told of every segment sealed from now on, in order, from one
// goroutine. Segments sealed before (including before Open) are listed by SealedSegments.
func (s *Store) OnSeal(fn func(SealedSegment)) {
	s.hookMu.Lock()
	s.listeners = append(s.listeners, fn)
	s.hookMu.Unlock()
}

// SetRetention installs the local retention policy: a sealed segment is deleted (oldest
// first) only when allow returns true for it. Without a policy nothing is deleted. allow runs
// on the maintenance goroutine while TruncateTo is held off, so it must not call the Store.
func (s *Store) SetRetention(allow func(SealedSegment) bool) {
	s.hookMu.Lock()
	s.retention = allow
	s.hookMu.Unlock()
}

// SealedSegments lists the sealed segments still on local disk, oldest first.
func (s *Store) SealedSegments() []SealedSegment {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	var out []SealedSegment
	for _, g := range s.segments {
		if g.sealed {
			out = append(out, g.info())
		}
	}
	return out
}

// OpenSegment returns an iterator over the records of the sealed segment starting at base.
func (s *Store) OpenSegment(base int64) (*SegmentIterator, error) {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	s.segMu.RLock()
	var g *segment
	for _, c := range s.segments {
		if c.base == base && c.sealed {
			g = c
		}
	}
	s.segMu.RUnlock()
	if g == nil {
		return nil, fmt.Errorf("open segment %d: %w: no sealed segment starts there", base, ErrOffsetNotFound)
	}
	return openSegmentIterator(g.path, g.base, g.base+g.size.Load(), s.maxRecord)
}

// Queues lists the (topic, queue id) pairs that hold or held messages.
func (s *Store) Queues() []QueueID {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	s.qmu.RLock()
	defer s.qmu.RUnlock()
	out := make([]QueueID, 0, len(s.queues))
	for k, q := range s.queues {
		if q.max.Load() > 0 {
			out = append(out, QueueID{Topic: k.topic, QueueID: k.id})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].QueueID < out[j].QueueID
	})
	return out
}

// MinCommitLogOffset is the first commit-log position still on local disk.
func (s *Store) MinCommitLogOffset() int64 { return s.minPos.Load() }

// MaxCommitLogOffset is the end of the stored records.
func (s *Store) MaxCommitLogOffset() int64 { return s.logEnd.Load() }

// FirstStoreTimeFrom is the store time (ms) of the oldest local record at or after commit-log
// position pos, read from segment bookkeeping without touching the files: the first record of
// the segment that holds pos, or of the next one. ok is false when no local record lies at or
// after pos. A pos inside a segment answers that segment's first record, which may be older
// than the record at pos; offload watermarks sit on segment boundaries, where it is exact.
func (s *Store) FirstStoreTimeFrom(pos int64) (ms int64, ok bool) {
	s.truncMu.RLock()
	defer s.truncMu.RUnlock()
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	for _, g := range s.segments {
		if g.base+g.size.Load() <= pos {
			continue
		}
		if first := g.firstTime.Load(); first != 0 {
			return first, true
		}
	}
	return 0, false
}

// WaitForAppend blocks until the max offset of (topic, queueID) is above offset, and returns
// it; or until ctx ends (returning the current max offset and ctx's error). Under a read
// limit (SetReadLimit) the max offset is the end of what the limit lets a reader see. A waiter
// costs one channel per queue, shared by all waiters of that queue (and one for the limit).
func (s *Store) WaitForAppend(ctx context.Context, topic string, queueID int32, offset int64) (int64, error) {
	for {
		s.truncMu.RLock()
		q := s.queue(topic, queueID, true)
		limit, limitCh := s.readLimit.Load(), (<-chan struct{})(nil)
		if limit != Unlimited { // lifting the limit wakes; lowering it never needs to
			limit, limitCh = s.readLimitWait()
		}
		q.mu.Lock()
		max := q.endLocked()
		var ch <-chan struct{}
		if max > offset {
			q.mu.Unlock()
			// Stored; past the read limit, it waits for the limit to move instead.
			vis, err := s.visibleEnd(q, offset, max, limit)
			s.truncMu.RUnlock()
			if err != nil {
				return max, nil // an unreadable entry: the read that follows reports it
			}
			if vis > offset {
				return vis, nil
			}
			max, ch = vis, limitCh
		} else {
			if q.waitCh == nil {
				q.waitCh = make(chan struct{})
			}
			ch = q.waitCh
			q.mu.Unlock()
			s.truncMu.RUnlock()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return max, ctx.Err()
		case <-s.stop:
			return max, ErrClosed
		}
	}
}

// DeleteTopic drops the topic's consume queues and index entries. Its records stay in the
// commit log until retention deletes their segments but are never served again; a later
// append to the topic starts again at queue offset 0.
func (s *Store) DeleteTopic(ctx context.Context, topic string) error {
	return s.runControl(ctx, &writeOp{kind: opDeleteTopic, topic: topic, done: make(chan struct{})})
}

// runControl hands a control op to the writer goroutine, which orders it with appends, and
// waits for it.
func (s *Store) runControl(ctx context.Context, op *writeOp) error {
	if err := s.submit(ctx, op); err != nil {
		return err
	}
	select {
	case <-op.done:
		return op.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deleteTopic runs on the writer goroutine, so no append of the topic is in flight.
func (s *Store) deleteTopic(topic string) error {
	pos := s.logEnd.Load()
	if err := s.appendTombstone(topic, pos); err != nil {
		return fmt.Errorf("delete topic %q: write tombstone: %w", topic, err)
	}
	s.qmu.Lock()
	s.deleted[topic] = pos
	var gone []*consumeQueue
	for k, q := range s.queues {
		if k.topic == topic {
			gone = append(gone, q)
			delete(s.queues, k)
			q.removed.Store(true)
		}
	}
	s.qmu.Unlock()
	for _, q := range gone {
		q.mu.Lock()
		if q.waitCh != nil {
			close(q.waitCh)
			q.waitCh = nil
		}
		q.mu.Unlock()
	}
	return nil
}

// Close stops the goroutines, fsyncs the log and writes the pending index entries. It is
// idempotent.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return s.closeErr
	}
	s.closed = true
	s.closeMu.Unlock()
	close(s.stop)
	s.wg.Wait()
	var errs []error
	if s.failed.Load() == nil {
		if err := s.checkpointNow(true); err != nil {
			errs = append(errs, fmt.Errorf("close store: final checkpoint: %w", err))
		}
	}
	s.closeKeptLimit()
	errs = append(errs, s.closeFiles())
	s.closeErr = errors.Join(errs...)
	return s.closeErr
}

// closeFiles closes the segments and the index files.
func (s *Store) closeFiles() error {
	var errs []error
	s.segMu.Lock()
	for _, g := range s.segments {
		if err := g.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close segment %d: %w", g.base, err))
		}
	}
	s.segMu.Unlock()
	s.closeIndexFiles()
	return errors.Join(errs...)
}

func (s *Store) activeSegment() *segment {
	s.segMu.RLock()
	defer s.segMu.RUnlock()
	return s.segments[len(s.segments)-1]
}

func nowMillis() int64 { return time.Now().UnixMilli() }
