package timer

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the strata_timer_* series.
type metrics struct {
	reg          prometheus.Registerer
	scheduled    prometheus.Counter
	indexed      prometheus.Counter
	fired        prometheus.Counter
	checkpoints  prometheus.Counter
	dropped      *prometheus.CounterVec
	readErrors   prometheus.Counter
	appendErrors prometheus.Counter
	indexErrors  prometheus.Counter
	lateness     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		reg: reg,
		scheduled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_timer_scheduled_messages_total", Help: "Messages parked for scheduled delivery (delay levels, delivery times, retries)."}),
		indexed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_timer_indexed_messages_total", Help: "Parked messages added to the timer index (re-indexing after a restart included)."}),
		fired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_timer_fired_messages_total", Help: "Scheduled messages delivered to their real topic."}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_timer_checkpoints_total", Help: "Fired-state checkpoint records written to the commit log."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_timer_dropped_messages_total", Help: "Parked messages that can never be delivered (no due time, or no destination), by reason."},
			[]string{"reason"}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_timer_read_errors_total", Help: "Failed reads of parked messages at fire time (retried with backoff)."}),
		appendErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_timer_append_errors_total", Help: "Failed appends of delivered messages (retried)."}),
		indexErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_timer_index_errors_total", Help: "Failed reads or writes of the timer index."}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strata_timer_lateness_seconds", Help: "How long after its due time a scheduled message was appended to its real topic.",
			Buckets: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60}}),
	}
}

// Horizons of strata_timer_pending_messages: a timer counts in the first horizon its due
// time falls within (overdue ones in the first).
var horizons = []struct {
	label string
	d     time.Duration
}{
	{"1m", time.Minute}, {"10m", 10 * time.Minute}, {"1h", time.Hour}, {"1d", 24 * time.Hour},
	{"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}, {"365d", 365 * 24 * time.Hour}, {"+Inf", 0},
}

var pendingDesc = prometheus.NewDesc("strata_timer_pending_messages",
	"Scheduled messages not yet delivered, by how far ahead they are due.", []string{"horizon"}, nil)

var indexDescs = struct{ runs, bytes, heap *prometheus.Desc }{
	prometheus.NewDesc("strata_timer_index_runs", "Run files of the timer index.", nil, nil),
	prometheus.NewDesc("strata_timer_index_bytes", "Bytes of the timer index's run files.", nil, nil),
	prometheus.NewDesc("strata_timer_heap_entries", "Timers in the in-memory near window.", nil, nil),
}

// collector computes the pending and index gauges at scrape time.
type collector struct{ s *Service }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- indexDescs.runs
	ch <- indexDescs.bytes
	ch <- indexDescs.heap
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Status()
	for _, h := range st.PendingByHorizon {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(h.Count), h.Horizon)
	}
	ch <- prometheus.MustNewConstMetric(indexDescs.runs, prometheus.GaugeValue, float64(st.Index.Runs))
	ch <- prometheus.MustNewConstMetric(indexDescs.bytes, prometheus.GaugeValue, float64(st.Index.Bytes))
	ch <- prometheus.MustNewConstMetric(indexDescs.heap, prometheus.GaugeValue, float64(st.Index.HeapEntries))
}

func (m *metrics) register(s *Service) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(m.scheduled, m.indexed, m.fired, m.checkpoints, m.dropped, m.readErrors, m.appendErrors,
		m.indexErrors, m.lateness, collector{s})
}

func (m *metrics) unregister(s *Service) {
	if m.reg == nil {
		return
	}
	for _, c := range []prometheus.Collector{m.scheduled, m.indexed, m.fired, m.checkpoints, m.dropped, m.readErrors,
		m.appendErrors, m.indexErrors, m.lateness, collector{s}} {
		m.reg.Unregister(c)
	}
}

// latenessRing keeps the latest lateness samples for Status.
type latenessRing struct {
	mu   sync.Mutex
	buf  [4096]time.Duration
	n, i int
}

func (r *latenessRing) add(d time.Duration) {
	r.mu.Lock()
	r.buf[r.i] = d
	r.i = (r.i + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
	r.mu.Unlock()
}

func (r *latenessRing) quantiles() (p50, p99, max time.Duration, n int) {
	r.mu.Lock()
	s := slices.Clone(r.buf[:r.n])
	r.mu.Unlock()
	if len(s) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1], len(s)
}
