package txn

import "github.com/prometheus/client_golang/prometheus"

// metrics are the strata_txn_* series.
type metrics struct {
	reg        prometheus.Registerer
	cs         []prometheus.Collector
	prepared   prometheus.Counter
	commits    prometheus.Counter
	rollbacks  prometheus.Counter
	discards   prometheus.Counter
	checks     *prometheus.CounterVec
	ends       *prometheus.CounterVec
	checkDelay prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, s *Service) *metrics {
	m := &metrics{
		reg: reg,
		prepared: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_txn_half_messages_total", Help: "Transactional half messages stored.",
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_txn_commits_total", Help: "Half messages committed to their real topic.",
		}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_txn_rollbacks_total", Help: "Half messages rolled back.",
		}),
		discards: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_txn_discards_total", Help: "Half messages parked in TRANS_CHECK_MAX_TIME_TOPIC after the maximum number of check-backs.",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_txn_checks_total", Help: "Check-backs of half messages, by result (sent, no_producer, failed).",
		}, []string{"result"}),
		ends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_txn_end_requests_total", Help: "END_TRANSACTION requests, by what they did.",
		}, []string{"result"}),
		checkDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "strata_txn_check_delay_seconds", Help: "How late check-backs go out after they are due.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "strata_txn_pending_messages", Help: "Half messages with no decision.",
	}, func() float64 { return float64(s.PendingCount()) })
	m.cs = []prometheus.Collector{m.prepared, m.commits, m.rollbacks, m.discards, m.checks, m.ends, m.checkDelay, pending}
	if reg != nil {
		for _, c := range m.cs {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.cs {
		m.reg.Unregister(c)
	}
}
