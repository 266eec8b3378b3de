package broker

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stratamq/strata/broker/remoting"
)

// The broker's Prometheus series, named strata_<area>_<what>_<unit>:
//
//	strata_broker_request_duration_seconds{role,request,result}  remoting requests served
//	    (histogram; _count counts them). role is namesrv or broker; request names the code
//	    (remoting.RequestName: send, send_batch, pull, heartbeat, …; other for unknown codes);
//	    result is ok, the RocketMQ response name (pull_not_found, topic_not_exist, …) or error.
//	    A long-polling pull's time held waiting for messages is not counted: it is the
//	    client's suspend time, not the broker's service time.
//	strata_broker_messages_in_total{topic}, strata_broker_bytes_in_total{topic}
//	strata_broker_messages_out_total{topic}, strata_broker_bytes_out_total{topic}
//	strata_broker_held_pulls                                      pulls held now (a count)
//	strata_broker_pull_slave_suggestions_total{role}  pulls answered with a slave's brokerId in
//	    suggestWhichBrokerId (slaveread.go): role master sent the consumer to a slave, role
//	    slave kept it there
//	strata_broker_slave_read_messages_total   messages this member served by pull while not
//	    the group's master
//	strata_store_flush_duration_seconds, strata_store_flush_failures_total  commit-log fsyncs
//	strata_broker_consumer_lag_messages{group,topic,queue}, …_seconds  (scrapemetrics.go)
//	strata_tier_backlog_bytes, strata_tier_backlog_seconds             (scrapemetrics.go)
//
// plus the tier's strata_tier_* and the bucket's strata_objstore_* series, and the Go runtime
// and process collectors.
//
// Cardinality: request labels come from fixed tables (a few dozen requests × a few results
// in practice). Per-topic series are capped at MetricsConfig.MaxTopics distinct topics; the
// topics beyond share the label topic="(other)", which no RocketMQ topic name can spell. Lag
// series are capped at MetricsConfig.MaxLagQueues queues (scrapemetrics.go). Nothing is
// labelled per message, per client or per connection.

// Defaults of MetricsConfig.
const (
	DefaultMetricsMaxTopics    = 1000
	DefaultMetricsMaxLagQueues = 10000
)

// otherTopics is the topic label of the topics past MetricsConfig.MaxTopics.
const otherTopics = "(other)"

// MetricsConfig bounds what the broker exports on /metrics.
type MetricsConfig struct {
	// MaxTopics caps the distinct topic label values of the per-topic series (messages and
	// bytes in and out); later topics are counted under topic="(other)". Each topic costs
	// four series. Default 1000.
	MaxTopics int
	// MaxLagQueues caps the consumer-lag series computed at each scrape: one pair of series
	// (messages, seconds) per (group, topic, queue) up to this many queues; the (group,
	// topic) pairs past it are reported with queue="(all)" (messages summed, seconds the
	// maximum). Default 10000.
	MaxLagQueues int
}

func (c *MetricsConfig) validate() error {
	if c.MaxTopics == 0 {
		c.MaxTopics = DefaultMetricsMaxTopics
	}
	if c.MaxLagQueues == 0 {
		c.MaxLagQueues = DefaultMetricsMaxLagQueues
	}
	if c.MaxTopics < 0 || c.MaxLagQueues < 0 {
		return errors.New("broker config: Metrics.MaxTopics and Metrics.MaxLagQueues must not be negative")
	}
	return nil
}

// Roles of strata_broker_request_duration_seconds.
const (
	roleBroker  = "broker"
	roleNamesrv = "namesrv"
)

// metrics are the broker's Prometheus series, on a registry of its own so several brokers can
// live in one process (tests, `strata dev`).
type metrics struct {
	reg             *prometheus.Registry
	requestDuration *prometheus.HistogramVec
	requests        sync.Map // requestKey → prometheus.Observer, skipping the label hashing
	topics          *topicLabels
	messagesIn      *topicCounter
	bytesIn         *topicCounter
	messagesOut     *topicCounter
	bytesOut        *topicCounter
	heldPulls       prometheus.Gauge
	// slave reads (slaveread.go)
	slaveSuggestions  *prometheus.CounterVec
	slaveReadMessages prometheus.Counter
	flushDuration     prometheus.Histogram
	flushFailures     prometheus.Counter
	state             *stateCollector // consumer lag and tier backlog, computed at scrape
}

type requestKey struct {
	role         string
	code, result int16
}

func newMetrics(cfg MetricsConfig) *metrics {
	topics := &topicLabels{max: int64(cfg.MaxTopics)}
	byTopic := func(name, help string) *topicCounter {
		return &topicCounter{labels: topics, vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"topic"})}
	}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strata_broker_request_duration_seconds",
			Help: "Remoting requests served, by role (namesrv, broker), request name and result (ok, the RocketMQ response name, or error); a long-polling pull's held time is not counted.",
			// 50µs … 13s: a sync-flushed send is a few ms, a cold pull up to seconds.
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 19),
		}, []string{"role", "request", "result"}),
		topics:      topics,
		messagesIn:  byTopic("strata_broker_messages_in_total", "Messages appended, by topic (topics past the metrics limit as (other))."),
		bytesIn:     byTopic("strata_broker_bytes_in_total", "Stored record bytes appended, by topic."),
		messagesOut: byTopic("strata_broker_messages_out_total", "Messages delivered by pulls, by topic."),
		bytesOut:    byTopic("strata_broker_bytes_out_total", "Record bytes delivered by pulls, by topic."),
		heldPulls: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_broker_held_pulls", Help: "Long-polling pulls currently held.",
		}),
		slaveSuggestions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_broker_pull_slave_suggestions_total",
			Help: "Pulls answered with a slave's brokerId as suggestWhichBrokerId (replication.slave_read_enable): role master sent the consumer to a slave, role slave kept it there.",
		}, []string{"role"}),
		slaveReadMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_broker_slave_read_messages_total",
			Help: "Messages this member delivered by pulls while it was not the group's master.",
		}),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "strata_store_flush_duration_seconds",
			Help:    "Commit-log fsync latency: group commits under sync flush, interval flushes under async flush, seals.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 17),
		}),
		flushFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "strata_store_flush_failures_total", Help: "Commit-log fsyncs that failed (the store then refuses appends until restarted).",
		}),
	}
	m.reg.MustRegister(m.requestDuration, m.messagesIn.vec, m.bytesIn.vec, m.messagesOut.vec, m.bytesOut.vec,
		m.heldPulls, m.slaveSuggestions, m.slaveReadMessages, m.flushDuration, m.flushFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// wireMetrics hooks the store's fsyncs and the scrape-time collector into b's registry;
// New calls it once the configuration is validated.
func (b *Broker) wireMetrics() {
	observe := b.metrics.observeFlush
	if prev := b.cfg.Store.OnFsync; prev != nil {
		b.cfg.Store.OnFsync = func(d time.Duration, err error) { prev(d, err); observe(d, err) }
	} else {
		b.cfg.Store.OnFsync = observe
	}
	b.metrics.state = newStateCollector(b, b.cfg.Metrics.MaxLagQueues)
	b.metrics.reg.MustRegister(b.metrics.state)
}

// request records one served request; start is when serving began, moved on by any time the
// request was held (holdClock).
func (m *metrics) request(role string, code, result int16, start time.Time) {
	k := requestKey{role, code, result}
	o, ok := m.requests.Load(k)
	if !ok {
		o, _ = m.requests.LoadOrStore(k, m.requestDuration.WithLabelValues(role, remoting.RequestName(code), remoting.ResponseName(result)))
	}
	o.(prometheus.Observer).Observe(time.Since(start).Seconds())
}

// observeFlush is the store's OnFsync hook.
func (m *metrics) observeFlush(elapsed time.Duration, err error) {
	m.flushDuration.Observe(elapsed.Seconds())
	if err != nil {
		m.flushFailures.Inc()
	}
}

// holdClock collects the time a request spent held (a long-polling pull waiting for
// messages), so the request's latency can leave it out.
type holdClock struct{ held time.Duration }

type holdClockKey struct{}

// withHoldClock returns ctx carrying a fresh holdClock.
func withHoldClock(ctx context.Context) (context.Context, *holdClock) {
	c := &holdClock{}
	return context.WithValue(ctx, holdClockKey{}, c), c
}

// addHeld adds d to ctx's holdClock, if it has one. Called by the request's own goroutine.
func addHeld(ctx context.Context, d time.Duration) {
	if c, ok := ctx.Value(holdClockKey{}).(*holdClock); ok {
		c.held += d
	}
}

// topicLabels admits up to max distinct topic label values; later topics map to otherTopics.
type topicLabels struct {
	max  int64
	seen sync.Map // topic → struct{}
	n    atomic.Int64
	full atomic.Bool
	mu   sync.Mutex
}

func (l *topicLabels) label(topic string) string {
	if _, ok := l.seen.Load(topic); ok {
		return topic
	}
	if l.full.Load() {
		return otherTopics
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen.Load(topic); ok {
		return topic
	}
	if l.n.Load() >= l.max {
		l.full.Store(true)
		return otherTopics
	}
	l.seen.Store(topic, struct{}{})
	l.n.Add(1)
	return topic
}

// topicCounter is a counter by topic whose topic label is bounded by topicLabels. Counters are
// cached per admitted topic; topics past the limit share the (other) counter uncached, so the
// cache stays bounded too.
type topicCounter struct {
	labels *topicLabels
	vec    *prometheus.CounterVec
	cache  sync.Map                           // admitted topic → prometheus.Counter
	other  atomic.Pointer[prometheus.Counter] // the (other) counter, once a topic needed it
}

// WithLabelValues returns the counter of topic (or of (other)), as CounterVec's does.
func (c *topicCounter) WithLabelValues(topic string) prometheus.Counter {
	if v, ok := c.cache.Load(topic); ok {
		return v.(prometheus.Counter)
	}
	l := c.labels.label(topic)
	if l != topic {
		// Past the limit (10,000 topics with the default 1,000): every send of those topics
		// comes here, so the shared counter is kept rather than looked up in the vec.
		if o := c.other.Load(); o != nil {
			return *o
		}
		ctr := c.vec.WithLabelValues(l)
		c.other.Store(&ctr)
		return ctr
	}
	ctr := c.vec.WithLabelValues(l)
	c.cache.Store(topic, ctr)
	return ctr
}

// Registry is the broker's Prometheus registry, for callers that add their own collectors
// (the tier, cmd/strata).
func (b *Broker) Registry() *prometheus.Registry { return b.metrics.reg }

// HTTPHandler serves /healthz (the process is up), /readyz (503 with the reason while the
// broker cannot serve, e.g. etcd unreachable), /metrics (Prometheus), /tier/status (the
// cold tier's state as JSON, TierStatus), /timer/status (scheduled delivery, TimerStatus),
// /txn/pending (pending transactional half messages as JSON, txn.PendingList;
// ?group=G&limit=N), with HTTPConfig.Pprof /debug/pprof/ behind the admin check (httpauth.go
// says which endpoint needs what), and the web console (broker/console, consolesource.go) at
// / and under /console/.
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
	mux.Handle("/metrics", b.httpRead(promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{})))
	mux.Handle("/tier/status", b.httpRead(http.HandlerFunc(b.serveTierStatus)))
	mux.Handle("/txn/pending", b.httpRead(http.HandlerFunc(b.serveTxnPending)))
	mux.Handle("/timer/status", b.httpRead(http.HandlerFunc(b.serveTimerStatus)))
	if b.cfg.HTTP.Pprof {
		// Profiles for operators chasing a hot spot (go tool pprof http://HOST/debug/pprof/profile).
		mux.Handle("/debug/pprof/", b.httpAdmin(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", b.httpAdmin(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/trace", b.httpAdmin(http.HandlerFunc(pprof.Trace)))
	}
	mux.Handle("/", b.consoleHandler())
	return mux
}
