package console

import (
	"sync"
	"time"
)

// rateMeter turns the broker's per-topic message counters into rates. It samples when pages
// are viewed (no goroutine of its own): a counter is kept at most samplesPerWindow times
// per window, and a rate is the counter's rise since the oldest sample in the window over
// the time between, once that span is at least a tenth of the window. Memory is a few
// samples per topic; topics gone from the list are forgotten.
type rateMeter struct {
	window time.Duration
	mu     sync.Mutex
	series map[string][]rateSample
}

type rateSample struct {
	at time.Time
	n  int64
}

const samplesPerWindow = 12

func newRateMeter(window time.Duration) *rateMeter {
	return &rateMeter{window: window, series: map[string][]rateSample{}}
}

// observe samples every topic's MessagesIn and sets its ProduceRate; while too few samples
// span the window, the rate is the average since started (RateSinceStart), or negative when
// started is unknown. Topics not in the list are forgotten.
func (m *rateMeter) observe(topics []TopicSummary, now, started time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]bool, len(topics))
	for i := range topics {
		seen[topics[i].Name] = true
		m.setRateLocked(&topics[i], now, started)
	}
	for name := range m.series {
		if !seen[name] {
			delete(m.series, name)
		}
	}
}

// observeOne samples one topic (its page) and sets its ProduceRate, as observe does.
func (m *rateMeter) observeOne(t *TopicSummary, now, started time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setRateLocked(t, now, started)
}

func (m *rateMeter) setRateLocked(t *TopicSummary, now, started time.Time) {
	t.ProduceRate = m.sampleLocked(t.Name, t.MessagesIn, now)
	if t.ProduceRate < 0 && !started.IsZero() && now.After(started) {
		t.ProduceRate, t.RateSinceStart = float64(t.MessagesIn)/now.Sub(started).Seconds(), true
	}
}

func (m *rateMeter) sampleLocked(name string, n int64, now time.Time) float64 {
	s := m.series[name]
	if len(s) > 0 && n < s[len(s)-1].n {
		s = s[:0] // the counter went back: another process's counter, start over
	}
	// Keep the samples within the window, and the newest one older than it so a rate
	// always spans close to the whole window.
	cut := 0
	for cut+1 < len(s) && now.Sub(s[cut+1].at) >= m.window {
		cut++
	}
	s = s[cut:]
	gap := m.window / samplesPerWindow
	if len(s) == 0 || now.Sub(s[len(s)-1].at) >= gap {
		s = append(s, rateSample{at: now, n: n})
	}
	m.series[name] = s
	first := s[0]
	span := now.Sub(first.at)
	if span < m.window/10 {
		return -1
	}
	return float64(n-first.n) / span.Seconds()
}
