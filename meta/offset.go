package meta

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// QueueKey names one consumer group's position on one queue served by the store's broker group.
type QueueKey struct {
	Group   string // consumer group
	Topic   string
	QueueID int32 // local to the broker group, 0..n-1
}

// offsetValue is the stored form of an offset, JSON {"v":1,"offset":N,"gen":G}. Gen counts
// explicit resets: a write with a higher gen wins whatever its offset; within one gen the
// last commit wins, lower or higher, as UPDATE_CONSUMER_OFFSET sets the offset in RocketMQ.
type offsetValue struct {
	Version int   `json:"v"`
	Offset  int64 `json:"offset"`
	Gen     int64 `json:"gen"`
}

type offsetEntry struct {
	offset  int64
	gen     int64
	modRev  int64 // etcd mod revision we last saw or wrote; 0 = not in etcd as far as we know
	flushed int64 // offset last written at gen
	dirty   bool
}

// OffsetStoreConfig configures an OffsetStore.
type OffsetStoreConfig struct {
	// BrokerGroup is the group whose queues this store commits offsets for.
	BrokerGroup string
	// FlushInterval is how often buffered commits are written; default 1s.
	FlushInterval time.Duration
	// MaxBackoff caps the wait between retries while etcd fails; default 10s.
	MaxBackoff time.Duration
}

// OffsetStore buffers consumer offsets of one broker group in memory and writes the changed
// ones to etcd at most once per FlushInterval, many queues per transaction (up to 128 per etcd
// transaction). While etcd is down it keeps every commit and retries with backoff; nothing is
// dropped. A commit sets the offset (a consumer that seeks back keeps its rewind); Reset
// additionally wins over commits buffered elsewhere under the previous gen.
type OffsetStore struct {
	c      *Client
	cfg    OffsetStoreConfig
	prefix string

	mu      sync.Mutex
	entries map[QueueKey]*offsetEntry

	flushMu   sync.Mutex // one flush at a time
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewOffsetStore loads the broker group's committed offsets and starts the background flusher.
func (c *Client) NewOffsetStore(ctx context.Context, cfg OffsetStoreConfig) (*OffsetStore, error) {
	if err := validateName("broker group", cfg.BrokerGroup); err != nil {
		return nil, err
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	s := &OffsetStore{
		c:       c,
		cfg:     cfg,
		prefix:  c.key(dirOffsets, cfg.BrokerGroup, "/"),
		entries: map[QueueKey]*offsetEntry{},
		done:    make(chan struct{}),
	}
	if err := s.Refresh(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(runCtx)
	return s, nil
}

func (s *OffsetStore) keyOf(q QueueKey) string {
	return s.prefix + q.Group + "/" + q.Topic + "/" + strconv.FormatInt(int64(q.QueueID), 10)
}

func (s *OffsetStore) parseKey(k string) (QueueKey, bool) {
	parts := strings.Split(strings.TrimPrefix(k, s.prefix), "/")
	if len(parts) != 3 {
		return QueueKey{}, false
	}
	id, err := strconv.ParseInt(parts[2], 10, 32)
	if err != nil {
		return QueueKey{}, false
	}
	return QueueKey{Group: parts[0], Topic: parts[1], QueueID: int32(id)}, true
}

// Refresh re-reads the broker group's offsets from etcd, keeping only the commits of this
// store not yet written (they are newer than what etcd holds; the flush settles them against
// it). A member that was not the master kept the offsets it loaded at start while the
// master took the group's commits: it refreshes when promoted, so that QUERY_CONSUMER_OFFSET
// answers where consumers are, not where they were.
func (s *OffsetStore) Refresh(ctx context.Context) error {
	fresh := map[QueueKey]*offsetEntry{}
	err := s.c.scanKV(ctx, s.prefix, func(k string, v []byte, modRev int64) error {
		q, ok := s.parseKey(k)
		if !ok {
			return nil
		}
		var ov offsetValue
		if err := json.Unmarshal(v, &ov); err != nil {
			return fmt.Errorf("decode offset %s: %w", k, err)
		}
		fresh[q] = &offsetEntry{offset: ov.Offset, gen: ov.Gen, modRev: modRev, flushed: ov.Offset}
		return nil
	})
	if err != nil {
		return fmt.Errorf("refresh offsets of broker group %s: %w", s.cfg.BrokerGroup, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for q, e := range s.entries {
		if e.dirty {
			fresh[q] = e
		}
	}
	s.entries = fresh
	return nil
}

// Commit sets group's offset on q, lower or higher than the known one, as RocketMQ's
// UPDATE_CONSUMER_OFFSET does: a pull consumer that seeks back and commits keeps its rewind
// across a restart. It never blocks on etcd.
func (s *OffsetStore) Commit(q QueueKey, offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[q]
	if !ok {
		s.entries[q] = &offsetEntry{offset: offset, flushed: -1, dirty: true}
		return
	}
	if offset != e.offset {
		e.offset = offset
		e.dirty = true
	}
}

// Forget drops every offset of topic from memory and from etcd: the topic was deleted, and
// its next incarnation starts at offset 0 for every group.
func (s *OffsetStore) Forget(ctx context.Context, topic string) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	for q := range s.entries {
		if q.Topic == topic {
			delete(s.entries, q)
		}
	}
	s.mu.Unlock()
	return s.c.deleteTopicOffsets(ctx, s.cfg.BrokerGroup, topic)
}

// ForgetGroup drops every offset of consumer group from memory and from etcd: the group
// was deleted.
func (s *OffsetStore) ForgetGroup(ctx context.Context, group string) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	for q := range s.entries {
		if q.Group == group {
			delete(s.entries, q)
		}
	}
	s.mu.Unlock()
	if err := s.c.deletePrefix(ctx, s.prefix+group+"/"); err != nil {
		return fmt.Errorf("delete offsets of group %s: %w", group, err)
	}
	return nil
}

func (c *Client) deletePrefix(ctx context.Context, prefix string) error {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	_, err := c.cli.Delete(rctx, prefix, clientv3.WithPrefix())
	return err
}

// deleteTopicOffsets deletes brokerGroup's stored offsets of topic, every consumer group's.
func (c *Client) deleteTopicOffsets(ctx context.Context, brokerGroup, topic string) error {
	prefix := c.key(dirOffsets, brokerGroup, "/")
	var keys []string
	err := c.scanKV(ctx, prefix, func(k string, _ []byte, _ int64) error {
		parts := strings.Split(strings.TrimPrefix(k, prefix), "/")
		if len(parts) == 3 && parts[1] == topic {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete offsets of topic %s: %w", topic, err)
	}
	for len(keys) > 0 {
		n := min(len(keys), maxTxnOps)
		ops := make([]clientv3.Op, n)
		for i, k := range keys[:n] {
			ops[i] = clientv3.OpDelete(k)
		}
		rctx, cancel := c.reqCtx(ctx)
		_, err := c.cli.Txn(rctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("delete offsets of topic %s: %w", topic, err)
		}
		keys = keys[n:]
	}
	return nil
}

// Get returns the committed offset of q as this store knows it.
func (s *OffsetStore) Get(q QueueKey) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[q]
	if !ok {
		return 0, false
	}
	return e.offset, true
}

// Offsets returns a copy of every known offset.
func (s *OffsetStore) Offsets() map[QueueKey]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[QueueKey]int64, len(s.entries))
	for q, e := range s.entries {
		out[q] = e.offset
	}
	return out
}

// Pending counts commits not yet stored in etcd.
func (s *OffsetStore) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.entries {
		if e.dirty {
			n++
		}
	}
	return n
}

// Reset moves q to offset, backwards if need be, and writes it to etcd at once (an operator's
// rewind must not wait for the next flush, nor be undone by it).
func (s *OffsetStore) Reset(ctx context.Context, q QueueKey, offset int64) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	key := s.keyOf(q)
	for {
		rctx, cancel := s.c.reqCtx(ctx)
		resp, err := s.c.cli.Get(rctx, key)
		cancel()
		if err != nil {
			return fmt.Errorf("reset offset %s: %w", key, err)
		}
		var cur offsetValue
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &cur); err != nil {
				return fmt.Errorf("reset offset %s: decode: %w", key, err)
			}
		}
		s.mu.Lock()
		gen := cur.Gen
		if e, ok := s.entries[q]; ok && e.gen > gen {
			gen = e.gen
		}
		s.mu.Unlock()
		gen++
		val, _ := json.Marshal(offsetValue{Version: 1, Offset: offset, Gen: gen})
		rctx, cancel = s.c.reqCtx(ctx)
		tr, err := s.c.cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(val))).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("reset offset %s: %w", key, err)
		}
		if tr.Succeeded {
			s.mu.Lock()
			s.entries[q] = &offsetEntry{offset: offset, gen: gen, modRev: tr.Header.Revision, flushed: offset}
			s.mu.Unlock()
			return nil
		}
	}
}

type pendingWrite struct {
	q      QueueKey
	key    string
	offset int64
	gen    int64
	modRev int64
}

// Flush writes every buffered commit now, in as few transactions as etcd allows. It returns an
// error (and keeps the commits for the next try) if etcd does not take them.
func (s *OffsetStore) Flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	for attempt := 0; ; attempt++ {
		var batch []pendingWrite
		s.mu.Lock()
		for q, e := range s.entries {
			if e.dirty {
				batch = append(batch, pendingWrite{q: q, key: s.keyOf(q), offset: e.offset, gen: e.gen, modRev: e.modRev})
			}
		}
		s.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		conflicts := 0
		for len(batch) > 0 {
			n := min(len(batch), maxTxnOps)
			c, err := s.flushChunk(ctx, batch[:n])
			if err != nil {
				return fmt.Errorf("commit offsets of broker group %s: %w", s.cfg.BrokerGroup, err)
			}
			conflicts += c
			batch = batch[n:]
		}
		if conflicts == 0 || attempt >= 3 {
			if conflicts > 0 {
				return fmt.Errorf("commit offsets of broker group %s: %d keys keep changing under us (another broker writing the same group?)", s.cfg.BrokerGroup, conflicts)
			}
			return nil
		}
	}
}

// flushChunk writes up to maxTxnOps offsets in one transaction guarded by each key's mod
// revision. If anyone else wrote one of them (a reset, or a previous master), the transaction
// fails, returns the current values, and they are merged: a higher gen in etcd wins (a reset
// made elsewhere), otherwise ours, the newest commit this broker received, is retried. It
// returns the number of keys still to write.
func (s *OffsetStore) flushChunk(ctx context.Context, ws []pendingWrite) (int, error) {
	cmps := make([]clientv3.Cmp, len(ws))
	puts := make([]clientv3.Op, len(ws))
	gets := make([]clientv3.Op, len(ws))
	for i, w := range ws {
		val, _ := json.Marshal(offsetValue{Version: 1, Offset: w.offset, Gen: w.gen})
		cmps[i] = clientv3.Compare(clientv3.ModRevision(w.key), "=", w.modRev)
		puts[i] = clientv3.OpPut(w.key, string(val))
		gets[i] = clientv3.OpGet(w.key)
	}
	rctx, cancel := s.c.reqCtx(ctx)
	resp, err := s.c.cli.Txn(rctx).If(cmps...).Then(puts...).Else(gets...).Commit()
	cancel()
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp.Succeeded {
		for _, w := range ws {
			e := s.entries[w.q]
			if e == nil || e.gen != w.gen {
				continue // reset meanwhile
			}
			e.modRev = resp.Header.Revision
			e.flushed = w.offset
			if e.offset == w.offset {
				e.dirty = false
			}
		}
		return 0, nil
	}
	conflicts := 0
	for i, w := range ws {
		e := s.entries[w.q]
		if e == nil {
			continue
		}
		rr := resp.Responses[i].GetResponseRange()
		var cur offsetValue
		var rev int64
		if rr != nil && len(rr.Kvs) > 0 {
			rev = rr.Kvs[0].ModRevision
			if err := json.Unmarshal(rr.Kvs[0].Value, &cur); err != nil {
				return 0, fmt.Errorf("decode offset %s: %w", w.key, err)
			}
		}
		if rev == e.modRev {
			continue // this key was not the conflict; it goes again next round
		}
		e.modRev = rev
		if rev > 0 && (cur.Gen > e.gen || (cur.Gen == e.gen && cur.Offset == e.offset)) {
			e.offset, e.gen, e.flushed, e.dirty = cur.Offset, cur.Gen, cur.Offset, false
			continue
		}
		conflicts++
	}
	if conflicts == 0 {
		conflicts = 1 // keys adopted from etcd; the rest must still be written
	}
	return conflicts, nil
}

func (s *OffsetStore) component() string { return "offsets " + s.cfg.BrokerGroup }

func (s *OffsetStore) run(ctx context.Context) {
	defer close(s.done)
	bo := backoff{min: s.cfg.FlushInterval, max: s.cfg.MaxBackoff}
	wait := s.cfg.FlushInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := s.Flush(ctx)
		switch {
		case err == nil:
			s.c.clearFault(s.component())
			bo.reset()
			wait = s.cfg.FlushInterval
		case ctx.Err() != nil:
			return
		default:
			s.c.setFault(s.component(), fmt.Errorf("%d offsets waiting: %w", s.Pending(), err))
			wait = bo.next()
		}
	}
}

// Close stops the flusher and makes a last flush, bounded by ctx. It returns an error if
// commits remain unstored (they are then lost with the process; the consumers will re-read
// from the last stored offsets). Idempotent.
func (s *OffsetStore) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		if err := s.Flush(ctx); err != nil {
			s.closeErr = fmt.Errorf("close offset store: %d offsets not stored: %w", s.Pending(), err)
		}
		s.c.clearFault(s.component())
	})
	return s.closeErr
}

// ResetOffset sets a stored offset from outside the broker (e.g. an admin tool), winning over
// whatever the broker's OffsetStore has buffered. The broker's store learns the new value on its
// next write of the same key; prefer the broker's OffsetStore.Reset when the broker is up.
func (c *Client) ResetOffset(ctx context.Context, brokerGroup string, q QueueKey, offset int64) error {
	s := &OffsetStore{c: c, cfg: OffsetStoreConfig{BrokerGroup: brokerGroup}, prefix: c.key(dirOffsets, brokerGroup, "/"), entries: map[QueueKey]*offsetEntry{}}
	return s.Reset(ctx, q, offset)
}

// GetOffset reads a stored offset straight from etcd; ErrNotFound if none.
func (c *Client) GetOffset(ctx context.Context, brokerGroup string, q QueueKey) (int64, error) {
	key := c.key(dirOffsets, brokerGroup, "/", q.Group, "/", q.Topic, "/", strconv.FormatInt(int64(q.QueueID), 10))
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Get(rctx, key)
	if err != nil {
		return 0, fmt.Errorf("get offset %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("offset %s: %w", key, ErrNotFound)
	}
	var ov offsetValue
	if err := json.Unmarshal(resp.Kvs[0].Value, &ov); err != nil {
		return 0, fmt.Errorf("decode offset %s: %w", key, err)
	}
	return ov.Offset, nil
}
