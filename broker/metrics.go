package broker

import (
	"net/http"
	"net/http/pprof"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the broker's Prometheus series, on a registry of its own so several brokers can
// live in one process (tests, `strata dev`).
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec // by role, request code, response code
	messagesIn  *prometheus.CounterVec // by topic
	bytesIn     *prometheus.CounterVec
	messagesOut *prometheus.CounterVec
	bytesOut    *prometheus.CounterVec
	heldPulls   prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_broker_requests_total", Help: "Remoting requests served, by role, request code and response code.",
		}, []string{"role", "code", "result"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_broker_messages_in_total", Help: "Messages appended, by topic.",
		}, []string{"topic"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_broker_bytes_in_total", Help: "Stored record bytes appended, by topic.",
		}, []string{"topic"}),
		messagesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_broker_messages_out_total", Help: "Messages delivered by pulls, by topic.",
		}, []string{"topic"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_broker_bytes_out_total", Help: "Record bytes delivered by pulls, by topic.",
		}, []string{"topic"}),
		heldPulls: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_broker_held_pulls", Help: "Long-polling pulls currently held.",
		}),
	}
	m.reg.MustRegister(m.requests, m.messagesIn, m.bytesIn, m.messagesOut, m.bytesOut, m.heldPulls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) request(role string, code, result int16) {
	m.requests.WithLabelValues(role, strconv.Itoa(int(code)), strconv.Itoa(int(result))).Inc()
}

// Registry is the broker's Prometheus registry, for callers that add their own collectors
// (the tier, cmd/strata).
func (b *Broker) Registry() *prometheus.Registry { return b.metrics.reg }

// HTTPHandler serves /healthz (the process is up), /readyz (503 with the reason while the
// broker cannot serve, e.g. etcd unreachable), /metrics (Prometheus), /tier/status (the
// cold tier's state as JSON, TierStatus) and /timer/status (scheduled delivery, TimerStatus).
func (b *Broker) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := b.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("/metrics", promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/tier/status", b.serveTierStatus)
	mux.HandleFunc("/timer/status", b.serveTimerStatus)
	// Profiles for operators chasing a hot spot (go tool pprof http://HOST/debug/pprof/profile).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
