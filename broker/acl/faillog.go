package acl

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/stratamq/strata/broker/remoting"
)

// failureLog logs refused requests at most once per interval per access key (or per address
// for requests without one): a misconfigured client retrying every second, or someone trying
// keys, must not flood the log. A line says how many refusals of the key it stands for.
type failureLog struct {
	interval time.Duration
	maxKeys  int
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	entries map[string]*failEntry
}

type failEntry struct {
	logged     time.Time // when the last line was written
	suppressed int       // refusals since that line
}

func newFailureLog(interval time.Duration, maxKeys int, log *slog.Logger) *failureLog {
	return &failureLog{interval: interval, maxKeys: maxKeys, log: log, now: time.Now, entries: map[string]*failEntry{}}
}

// maxLoggedKeyBytes bounds what a client-chosen access key puts into a log line.
const maxLoggedKeyBytes = 64

// record notes one refusal and logs it unless its key was logged within the interval.
func (f *failureLog) record(accessKey string, ip netip.Addr, code int16, remark string) {
	key := "ak:" + accessKey
	if accessKey == "" {
		key = "addr:" + ip.String()
	}
	now := f.now()
	f.mu.Lock()
	e, ok := f.entries[key]
	if ok && now.Sub(e.logged) < f.interval {
		e.suppressed++
		f.mu.Unlock()
		return
	}
	repeats := 0
	if ok {
		repeats = e.suppressed
		e.logged, e.suppressed = now, 0
	} else {
		f.makeRoom(now)
		f.entries[key] = &failEntry{logged: now}
	}
	f.mu.Unlock()
	if len(accessKey) > maxLoggedKeyBytes {
		accessKey = accessKey[:maxLoggedKeyBytes] + "…"
	}
	f.log.Warn("acl: request refused", "access_key", accessKey, "remote", ip.String(),
		"request", remoting.RequestName(code), "code", code, "reason", remark,
		"refused_since_last_line", repeats, "log_interval", f.interval)
}

// makeRoom keeps the table under maxKeys: entries older than the interval go first, and if
// that is not enough the table starts over (counts are only for the log).
func (f *failureLog) makeRoom(now time.Time) {
	if len(f.entries) < f.maxKeys {
		return
	}
	for k, e := range f.entries {
		if now.Sub(e.logged) >= f.interval {
			delete(f.entries, k)
		}
	}
	if len(f.entries) >= f.maxKeys {
		clear(f.entries)
	}
}
