package timer

import (
	"math"
	"time"
)

// Status is the state of scheduled delivery: the JSON of GET /timer/status and
// `strata timer status`.
type Status struct {
	// Pending counts the scheduled messages not yet delivered; PendingByHorizon splits them
	// by how far ahead they are due (overdue ones in the first horizon).
	Pending          int64          `json:"pending"`
	PendingByHorizon []HorizonCount `json:"pending_by_horizon"`
	// NextDueMs is the earliest due time pending (0: none).
	NextDueMs int64 `json:"next_due_ms,omitempty"`
	// Retrying counts due timers whose parked record could not be read yet.
	Retrying int `json:"retrying"`
	// Scheduled, Fired and Dropped count since the broker started.
	Scheduled int64 `json:"scheduled"`
	Fired     int64 `json:"fired"`
	Dropped   int64 `json:"dropped"`
	Lateness  struct {
		P50Ms   float64 `json:"p50_ms"`
		P99Ms   float64 `json:"p99_ms"`
		MaxMs   float64 `json:"max_ms"`
		Samples int     `json:"samples"`
	} `json:"lateness"`
	Index struct {
		// ParkedOffset is the end of ParkTopic's queue; IndexedOffset the offset below which
		// every parked message is indexed; DurableOffset the same for the index on disk.
		ParkedOffset    int64 `json:"parked_offset"`
		IndexedOffset   int64 `json:"indexed_offset"`
		DurableOffset   int64 `json:"durable_offset"`
		Runs            int   `json:"runs"`
		Bytes           int64 `json:"bytes"`
		HeapEntries     int   `json:"heap_entries"`
		MemtableEntries int   `json:"memtable_entries"`
		// RebuiltFrom is the ParkTopic offset the index was rebuilt from at startup, -1 if
		// it was not.
		RebuiltFrom int64  `json:"rebuilt_from"`
		Error       string `json:"error,omitempty"`
	} `json:"index"`
	// Checkpoint is the latest fired state written to the log.
	Checkpoint struct {
		IndexedBelow   int64 `json:"indexed_below"`
		FiredThroughMs int64 `json:"fired_through_ms"`
		LowOffset      int64 `json:"low_offset"`
	} `json:"checkpoint"`
	DelayLevels []string `json:"delay_levels"`
	MaxDelay    string   `json:"max_delay"`
}

// HorizonCount is the pending count of one horizon.
type HorizonCount struct {
	Horizon string `json:"horizon"`
	Count   int64  `json:"count"`
}

// Status reports the service's state. It reads a few entries of each run, so it is cheap
// enough for every scrape.
func (s *Service) Status() Status {
	var st Status
	nowMs := s.clock.Now().UnixMilli()
	bounds := make([]int64, len(horizons))
	for i, h := range horizons {
		bounds[i] = math.MaxInt64
		if h.d > 0 {
			bounds[i] = nowMs + h.d.Milliseconds()
		}
	}
	below, total, next := s.ix.pending(bounds)
	s.mu.Lock()
	st.Retrying = len(s.retry)
	for _, r := range s.retry {
		next = min(next, r.e.due)
		for i := range bounds {
			if r.e.due < bounds[i] {
				below[i]++
			}
		}
	}
	ck := s.lastCk
	s.mu.Unlock()
	st.Pending = total + int64(st.Retrying)
	prev := int64(0)
	for i, h := range horizons {
		st.PendingByHorizon = append(st.PendingByHorizon, HorizonCount{Horizon: h.label, Count: below[i] - prev})
		prev = below[i]
	}
	if next != math.MaxInt64 {
		st.NextDueMs = next
	}
	st.Scheduled, st.Fired, st.Dropped = s.scheduledN.Load(), s.firedN.Load(), s.droppedN.Load()
	p50, p99, mx, n := s.lateness.quantiles()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	st.Lateness.P50Ms, st.Lateness.P99Ms, st.Lateness.MaxMs, st.Lateness.Samples = ms(p50), ms(p99), ms(mx), n
	ix := s.ix
	ix.mu.Lock()
	st.Index.IndexedOffset, st.Index.DurableOffset = ix.indexed, ix.durable
	st.Index.Runs, st.Index.HeapEntries, st.Index.MemtableEntries = len(ix.runs), len(ix.heap), len(ix.mem)
	for _, r := range ix.runs {
		st.Index.Bytes += r.bytes()
	}
	if ix.err != nil {
		st.Index.Error = ix.err.Error()
	}
	ix.mu.Unlock()
	st.Index.ParkedOffset = s.log.MaxOffset(ParkTopic, 0)
	st.Index.RebuiltFrom = s.rebuiltAt
	st.Checkpoint.IndexedBelow, st.Checkpoint.FiredThroughMs, st.Checkpoint.LowOffset = ck.indexedBelow, ck.firedThrough, ck.lowOffset
	for _, d := range s.cfg.levels {
		st.DelayLevels = append(st.DelayLevels, d.String())
	}
	st.MaxDelay = s.cfg.MaxDelay.String()
	return st
}

// pending counts the entries not yet fired: for each bound, those due before it
// (cumulative), the total, and the earliest due time (MaxInt64 if none). Entries taken for
// firing and not yet appended are not counted.
func (ix *index) pending(bounds []int64) (below []int64, total, next int64) {
	below = make([]int64, len(bounds))
	next = math.MaxInt64
	add := func(due, n int64) {
		for i, b := range bounds {
			if due < b {
				below[i] += n
			}
		}
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, e := range ix.heap {
		add(e.due, 1)
		next = min(next, e.due)
	}
	total = int64(len(ix.heap))
	scan := func(es []entry) {
		for _, e := range es {
			if e.due >= ix.frontier {
				add(e.due, 1)
				total++
				next = min(next, e.due)
			}
		}
	}
	scan(ix.mem)
	for _, m := range ix.imm {
		scan(m.entries)
	}
	for _, r := range ix.runs {
		if r.cursor >= r.count {
			continue
		}
		total += r.count - r.cursor
		if e, ok, err := r.peek(); err == nil && ok {
			next = min(next, e.due)
		}
		for i, b := range bounds {
			if b == math.MaxInt64 {
				below[i] += r.count - r.cursor
				continue
			}
			if lb, err := r.lowerBound(b); err == nil && lb > r.cursor {
				below[i] += lb - r.cursor
			}
		}
	}
	return below, total, next
}
