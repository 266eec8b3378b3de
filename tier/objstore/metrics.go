package objstore

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bucket operation labels of the metrics.
const (
	opPut        = "put"
	opGet        = "get"
	opGetRange   = "get_range"
	opAttributes = "attributes"
	opList       = "list"
	opDelete     = "delete"
)

type bucketMetrics struct {
	requests *prometheus.CounterVec
	failures *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// MetricsBucket wraps a Bucket with Prometheus metrics:
//
//	strata_objstore_requests_total{op}           calls by operation
//	strata_objstore_request_failures_total{op}   calls that failed, a missing object excepted
//	strata_objstore_request_bytes_total{op}      bytes uploaded (put) or read (get, get_range)
//	strata_objstore_request_duration_seconds{op} latency; for reads, until the reader is returned
type MetricsBucket struct {
	b Bucket
	m *bucketMetrics
}

var _ Bucket = (*MetricsBucket)(nil)

// WithMetrics wraps b so that its calls are counted and timed in reg. Several
// buckets may be wrapped with the same registerer; they share the series.
// A nil reg counts into metrics that are not exported.
func WithMetrics(b Bucket, reg prometheus.Registerer) *MetricsBucket {
	m := &bucketMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_objstore_requests_total",
			Help: "Object store requests by operation.",
		}, []string{"op"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_objstore_request_failures_total",
			Help: "Object store requests that failed, a missing object excepted.",
		}, []string{"op"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_objstore_request_bytes_total",
			Help: "Bytes uploaded to (put) or read from (get, get_range) the object store.",
		}, []string{"op"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "strata_objstore_request_duration_seconds",
			Help:    "Object store request latency; for reads, until the first byte is available.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"op"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.failures = register(reg, m.failures)
		m.bytes = register(reg, m.bytes)
		m.duration = register(reg, m.duration)
	}
	for _, op := range []string{opPut, opGet, opGetRange, opAttributes, opList, opDelete} {
		m.requests.WithLabelValues(op)
		m.failures.WithLabelValues(op)
	}
	return &MetricsBucket{b: b, m: m}
}

// register registers c, or returns the collector already registered under
// the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("objstore: register metrics: " + err.Error()) // a programming error: conflicting metric names
	}
	return c
}

// Unwrap returns the wrapped bucket.
func (mb *MetricsBucket) Unwrap() Bucket { return mb.b }

func (mb *MetricsBucket) observe(op string, start time.Time, err error) {
	mb.m.requests.WithLabelValues(op).Inc()
	mb.m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, ErrNotFound) {
		mb.m.failures.WithLabelValues(op).Inc()
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Put implements Bucket.
func (mb *MetricsBucket) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	start := time.Now()
	cr := &countingReader{r: r}
	err := mb.b.Put(ctx, name, cr, size)
	mb.observe(opPut, start, err)
	if err == nil {
		mb.m.bytes.WithLabelValues(opPut).Add(float64(cr.n))
	}
	return err
}

// meteredReader counts the bytes read from a returned object body.
type meteredReader struct {
	io.ReadCloser
	bytes prometheus.Counter
}

func (m *meteredReader) Read(p []byte) (int, error) {
	n, err := m.ReadCloser.Read(p)
	m.bytes.Add(float64(n))
	return n, err
}

// Get implements Bucket.
func (mb *MetricsBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := mb.b.Get(ctx, name)
	mb.observe(opGet, start, err)
	if err != nil {
		return nil, err
	}
	return &meteredReader{rc, mb.m.bytes.WithLabelValues(opGet)}, nil
}

// GetRange implements Bucket.
func (mb *MetricsBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := mb.b.GetRange(ctx, name, off, length)
	mb.observe(opGetRange, start, err)
	if err != nil {
		return nil, err
	}
	return &meteredReader{rc, mb.m.bytes.WithLabelValues(opGetRange)}, nil
}

// Attributes implements Bucket.
func (mb *MetricsBucket) Attributes(ctx context.Context, name string) (Attrs, error) {
	start := time.Now()
	a, err := mb.b.Attributes(ctx, name)
	mb.observe(opAttributes, start, err)
	return a, err
}

// List implements Bucket.
func (mb *MetricsBucket) List(ctx context.Context, prefix string, fn func(name string) error) error {
	start := time.Now()
	err := mb.b.List(ctx, prefix, fn)
	mb.observe(opList, start, err)
	return err
}

// Delete implements Bucket.
func (mb *MetricsBucket) Delete(ctx context.Context, name string) error {
	start := time.Now()
	err := mb.b.Delete(ctx, name)
	mb.observe(opDelete, start, err)
	return err
}
