package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
)

// The topic-incarnations file records which incarnation each topic's local data belongs to
// (topicdelete.go). It is an append-only log of JSON lines, so recording a topic costs one
// short append whatever the number of topics (rewriting a whole map per new topic made the
// first send to each of 10,000 topics cost work in proportion to all of them):
//
//	{"v":2}                     header
//	{"t":"orders","r":1234}     topic orders' local data is incarnation 1234
//	{"t":"orders","r":0}        topic orders has no local data any more
//
// The last record of a topic wins. A torn last line (a crash mid-append) is ignored: its
// record was never acknowledged. Open rewrites the file compacted, so it holds one line per
// topic after every start. Version 1 files ({"v":1,"topics":{"T":rev}}) are read and
// rewritten as version 2.
const incarnationFileVersion = 2

// incarnations maps each topic with local data to the incarnation that data belongs to.
// Reads are lock-free (the send path asks on every message). Records are group-committed:
// concurrent callers share one write and one fsync.
type incarnations struct {
	path  string
	known sync.Map // topic → int64
	// version counts changes to known, so a cache of checks against it (writableTopics)
	// sees that it is out of date.
	version atomic.Uint64

	// mu orders changes with the deletions they cause: first records of unknown topics take
	// it shared, so they batch; a changed incarnation and topic drops take it exclusively.
	mu sync.RWMutex

	qmu     sync.Mutex // guards queue, queued and failed
	queue   []incarnationRecord
	queued  uint64 // records ever queued
	failed  map[uint64]error
	fmu     sync.Mutex // one flusher at a time; guards f and flushed
	f       *os.File
	flushed uint64 // records durably written (or failed), in queue order
}

type incarnationRecord struct {
	Topic string `json:"t"`
	Rev   int64  `json:"r"`
}

type incarnationHeader struct {
	Version int              `json:"v"`
	Topics  map[string]int64 `json:"topics,omitempty"` // version 1 only
}

// loadIncarnations reads the file at path (absent: no topics yet), rewrites it compacted and
// opens it for appends.
func loadIncarnations(path string) (*incarnations, error) {
	in := &incarnations{path: path}
	raw, err := os.ReadFile(path)
	var m map[string]int64
	switch {
	case errors.Is(err, os.ErrNotExist):
		m = map[string]int64{}
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	default:
		if m, err = parseIncarnations(raw); err != nil {
			return nil, fmt.Errorf("%s: %w; move it aside to rebuild it from the cluster's topics", path, err)
		}
	}
	for t, r := range m {
		in.known.Store(t, r)
	}
	if err := in.rewrite(m); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("topic incarnations: %w", err)
	}
	in.f = f
	return in, nil
}

// parseIncarnations decodes a version 1 or 2 file into the live map (topics with rev > 0).
func parseIncarnations(raw []byte) (map[string]int64, error) {
	first, rest, _ := bytes.Cut(raw, []byte("\n"))
	var h incarnationHeader
	if err := json.Unmarshal(first, &h); err != nil {
		return nil, fmt.Errorf("not a topic-incarnations file: header: %v", err)
	}
	m := map[string]int64{}
	switch h.Version {
	case 1:
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, errors.New("version 1 topic-incarnations file with trailing data")
		}
		for t, r := range h.Topics {
			if t != "" && r > 0 {
				m[t] = r
			}
		}
		return m, nil
	case incarnationFileVersion:
	default:
		return nil, fmt.Errorf("topic-incarnations file version %d; this build reads 1 and %d", h.Version, incarnationFileVersion)
	}
	for n := 2; len(rest) > 0; n++ {
		line, next, complete := bytes.Cut(rest, []byte("\n"))
		rest = next
		var r incarnationRecord
		if err := json.Unmarshal(line, &r); err != nil || r.Topic == "" || r.Rev < 0 {
			if !complete {
				break // torn last append
			}
			return nil, fmt.Errorf("line %d is not a topic incarnation record: %q", n, line)
		}
		if !complete {
			break // a whole record without its newline was not acknowledged either
		}
		if r.Rev == 0 {
			delete(m, r.Topic)
		} else {
			m[r.Topic] = r.Rev
		}
	}
	return m, nil
}

// rewrite replaces the file with one record per topic of m (write, fsync, rename).
func (in *incarnations) rewrite(m map[string]int64) error {
	topics := make([]string, 0, len(m))
	for t := range m {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	var buf bytes.Buffer
	hdr, _ := json.Marshal(incarnationHeader{Version: incarnationFileVersion})
	buf.Write(hdr)
	buf.WriteByte('\n')
	for _, t := range topics {
		line, _ := json.Marshal(incarnationRecord{Topic: t, Rev: m[t]})
		buf.Write(line)
		buf.WriteByte('\n')
	}
	tmp := in.path + ".tmp"
	if err := writeFileSync(tmp, buf.Bytes()); err != nil {
		return err
	}
	if err := os.Rename(tmp, in.path); err != nil {
		return fmt.Errorf("topic incarnations: %w", err)
	}
	return nil
}

func (in *incarnations) get(topic string) (int64, bool) {
	v, ok := in.known.Load(topic)
	if !ok {
		return 0, false
	}
	return v.(int64), true
}

// topics lists the topics with a recorded incarnation.
func (in *incarnations) topics() []string {
	var ts []string
	in.known.Range(func(k, _ any) bool {
		ts = append(ts, k.(string))
		return true
	})
	return ts
}

// record durably stores topic's incarnation (0: no local data) and then makes it visible to
// get. Callers hold mu, shared or exclusive.
func (in *incarnations) record(topic string, rev int64) error {
	in.qmu.Lock()
	in.queue = append(in.queue, incarnationRecord{Topic: topic, Rev: rev})
	in.queued++
	seq := in.queued
	in.qmu.Unlock()

	in.fmu.Lock()
	defer in.fmu.Unlock()
	if in.flushed < seq {
		in.flushLocked()
	}
	in.qmu.Lock()
	defer in.qmu.Unlock()
	if err, ok := in.failed[seq]; ok {
		delete(in.failed, seq)
		return err
	}
	return nil
}

// flushLocked writes every queued record in one append and one fsync; callers hold fmu.
func (in *incarnations) flushLocked() {
	in.qmu.Lock()
	batch := in.queue
	in.queue = nil
	last := in.queued
	in.qmu.Unlock()

	var buf bytes.Buffer
	for _, r := range batch {
		line, _ := json.Marshal(r)
		buf.Write(line)
		buf.WriteByte('\n')
	}
	err := in.appendSync(buf.Bytes())
	if err == nil {
		for _, r := range batch {
			if r.Rev == 0 {
				in.known.Delete(r.Topic)
			} else {
				in.known.Store(r.Topic, r.Rev)
			}
		}
		in.version.Add(1)
	} else {
		in.qmu.Lock()
		if in.failed == nil {
			in.failed = map[uint64]error{}
		}
		for i := range batch {
			in.failed[last-uint64(len(batch)-1-i)] = err
		}
		in.qmu.Unlock()
	}
	in.flushed = last
}

func (in *incarnations) appendSync(b []byte) error {
	if in.f == nil {
		return errors.New("topic incarnations: file closed")
	}
	st, err := in.f.Stat()
	if err != nil {
		return fmt.Errorf("topic incarnations: %w", err)
	}
	if _, err := in.f.Write(b); err != nil {
		// Cut a partial append so the next one starts on a line of its own.
		_ = in.f.Truncate(st.Size())
		return fmt.Errorf("topic incarnations: append to %s: %w", in.path, err)
	}
	if err := in.f.Sync(); err != nil {
		return fmt.Errorf("topic incarnations: fsync %s: %w", in.path, err)
	}
	return nil
}

// close closes the file; later records fail.
func (in *incarnations) close() error {
	in.fmu.Lock()
	defer in.fmu.Unlock()
	if in.f == nil {
		return nil
	}
	err := in.f.Close()
	in.f = nil
	return err
}

func writeFileSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("topic incarnations: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("topic incarnations: write %s: %w", path, err)
	}
	return nil
}
