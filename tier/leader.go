package tier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stratamq/strata/meta"
)

// One writer per broker group.
//
// A tier writes (offload, compaction, retention, tombstones) only during a term of its
// group's election that it was handed with Lead. Every pointer update carries the term
// (PointerStore.CompareAndSwap) and fails with ErrFenced once the term has ended, even if
// the tier has not noticed yet; every object it writes carries the term's epoch in its name
// (names.go), so a deposed writer and its successor never overwrite each other's objects.
// When the term ends — its Lost channel closes, or an update reports ErrFenced — the tier
// stops all writer work; it does none until Lead is called again, which reloads the pointer
// and the manifest first.

// term is one Lead of this tier.
type term struct {
	lead    meta.Leadership
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the term's workers
	stopped chan struct{}  // closed once the workers returned
	endOnce sync.Once
	reason  error // why the term ended; set before cancel
}

func (tm *term) epoch() int64 { return tm.lead.Epoch }

// end stops the term's work; the first reason sticks.
func (tm *term) end(reason error) {
	tm.endOnce.Do(func() {
		tm.reason = reason
		tm.cancel()
	})
}

// Lead makes this tier its broker group's writer for the term lead (from meta's
// Election.Campaign): it reloads the pointer and the manifest, then runs offload and the
// background compaction and retention passes, every publish fenced by lead. It returns a
// channel closed once that work has stopped: when lead.Lost closes, when a pointer update
// reports ErrFenced (a newer writer exists), or at Close. A term still running is ended
// first. Lead fails with ErrFenced if the stored pointer was written by a newer term.
func (t *Tier) Lead(ctx context.Context, lead meta.Leadership) (<-chan struct{}, error) {
	if t.cfg.ReadOnly {
		return nil, fmt.Errorf("tier %s: lead: the tier is open read-only", t.cfg.Prefix)
	}
	if lead.Epoch <= 0 || lead.Lost == nil {
		return nil, fmt.Errorf("tier %s: lead: leadership %+v has no epoch: pass a term won with meta's Election.Campaign", t.cfg.Prefix, lead)
	}
	t.leadMu.Lock()
	defer t.leadMu.Unlock()
	if old := t.term.Load(); old != nil {
		old.end(errors.New("a new term began"))
		<-old.stopped
	}
	if !lead.Held() {
		return nil, fmt.Errorf("tier %s: lead: the term of epoch %d has ended already: %w", t.cfg.Prefix, lead.Epoch, ErrFenced)
	}
	t.commitMu.Lock()
	err := t.load(ctx)
	cur := t.cat.Load()
	t.commitMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("tier %s: lead epoch %d: %w", t.cfg.Prefix, lead.Epoch, err)
	}
	if cur.ptr.Epoch > lead.Epoch {
		return nil, fmt.Errorf("tier %s: lead epoch %d: the pointer was written by epoch %d: %w", t.cfg.Prefix, lead.Epoch, cur.ptr.Epoch, ErrFenced)
	}
	t.bgMu.Lock()
	if t.closed {
		t.bgMu.Unlock()
		return nil, fmt.Errorf("tier %s: lead: %w", t.cfg.Prefix, errTierClosed)
	}
	tm := &term{lead: lead, stopped: make(chan struct{})}
	tm.ctx, tm.cancel = context.WithCancel(t.ctx)
	t.wg.Add(1)
	t.bgMu.Unlock()
	t.term.Store(tm)
	t.metrics.writerEpoch.Set(float64(lead.Epoch))
	t.clearStall(StallNotWriter)

	tm.wg.Add(1)
	go t.runOffload(tm)
	if t.cfg.Retention != nil {
		tm.wg.Add(1)
		go t.every(tm, t.cfg.RetentionInterval, "retention", func(ctx context.Context) error {
			_, err := t.EnforceRetention(ctx, t.cfg.Retention)
			return err
		})
	}
	if !t.cfg.DisableCompaction {
		tm.wg.Add(1)
		go t.every(tm, t.cfg.CompactInterval, "compaction", func(ctx context.Context) error {
			_, err := t.Compact(ctx)
			return err
		})
	}
	go t.superviseTerm(tm)
	t.cfg.Logger.Debug("tier: writing as the group's elected writer", "prefix", t.cfg.Prefix, "epoch", lead.Epoch,
		"watermark", cur.ptr.OffloadWatermark)
	return tm.stopped, nil
}

// superviseTerm ends tm when its leadership is lost or the tier closes, waits for its
// workers and clears it.
func (t *Tier) superviseTerm(tm *term) {
	defer t.wg.Done()
	select {
	case <-tm.lead.Lost:
		tm.end(fmt.Errorf("the term of epoch %d ended (resigned, or the etcd session was lost)", tm.epoch()))
	case <-tm.ctx.Done():
		tm.end(errTierClosed)
	}
	tm.wg.Wait()
	if t.term.CompareAndSwap(tm, nil) {
		t.metrics.writerEpoch.Set(0)
	}
	t.cfg.Logger.Debug("tier: stopped writing", "prefix", t.cfg.Prefix, "epoch", tm.epoch(), "reason", tm.reason)
	close(tm.stopped)
}

// writer returns the current term, or ErrFenced if the tier does not lead.
func (t *Tier) writer(what string) (*term, error) {
	if t.cfg.ReadOnly {
		return nil, fmt.Errorf("tier %s on %s: the tier is open read-only", what, t.cfg.Prefix)
	}
	tm := t.term.Load()
	if tm == nil || tm.ctx.Err() != nil {
		return nil, fmt.Errorf("tier %s on %s: %w", what, t.cfg.Prefix, ErrFenced)
	}
	return tm, nil
}

// Epoch is the epoch of the term this tier writes in, 0 when it is not the writer.
func (t *Tier) Epoch() int64 {
	if tm := t.term.Load(); tm != nil && tm.ctx.Err() == nil {
		return tm.epoch()
	}
	return 0
}

// StallCause says which dependency keeps offload from committing.
type StallCause int

// Causes of OffloadStall.
const (
	// StallNone: offload commits (or has nothing to commit).
	StallNone StallCause = iota
	// StallBucket: putting segment objects or manifests into the bucket fails.
	StallBucket
	// StallPointer: the tier pointer update (etcd) fails.
	StallPointer
	// StallNotWriter: this tier is not its group's elected writer, so it does not offload.
	StallNotWriter
)

func (c StallCause) String() string {
	switch c {
	case StallBucket:
		return "bucket"
	case StallPointer:
		return "tier pointer"
	case StallNotWriter:
		return "not the elected writer"
	}
	return "none"
}

// OffloadStall reports why offload is not committing.
type OffloadStall struct {
	Cause StallCause
	// Err is the last failure of that kind.
	Err error
	// Since is when offload started failing for this cause.
	Since time.Time
}

// OffloadStall reports why offload last failed to commit, until a commit succeeds. A tier
// that does not lead reports StallNotWriter, unless its last term ended while pointer
// updates were failing: then the pointer store (etcd) is the cause and is reported.
func (t *Tier) OffloadStall() OffloadStall {
	t.stallMu.Lock()
	st := t.stall
	t.stallMu.Unlock()
	if t.cfg.ReadOnly || t.Epoch() != 0 || st.Cause == StallPointer {
		return st
	}
	if st.Cause != StallNotWriter {
		st = OffloadStall{Cause: StallNotWriter, Err: ErrFenced, Since: t.cfg.Now()}
	}
	return st
}

// noteStall records a failure of cause.
func (t *Tier) noteStall(cause StallCause, err error) {
	t.stallMu.Lock()
	defer t.stallMu.Unlock()
	if t.stall.Cause != cause {
		t.stall.Since = t.cfg.Now()
	}
	t.stall.Cause, t.stall.Err = cause, err
}

// clearStall forgets a recorded failure of cause (StallNone: of any cause).
func (t *Tier) clearStall(cause StallCause) {
	t.stallMu.Lock()
	defer t.stallMu.Unlock()
	if cause == StallNone || t.stall.Cause == cause {
		t.stall = OffloadStall{}
	}
}

// withTerm returns a context that ends with ctx or with the term, whichever ends first, so
// that work a caller started stops promptly once the tier is fenced.
func withTerm(ctx context.Context, tm *term) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(tm.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}
