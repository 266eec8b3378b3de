package main

import (
	"log/slog"
	"runtime/debug"
)

// brokerGCPercent is the collector's target a node runs with unless GOGC says otherwise.
// A broker's live heap is small and steady (buffers, indexes' page caches, routes) while
// it allocates per message, so the default 100 collects often for little: at 400 the
// collector's share of CPU falls by about a fifth per acked message (strata bench --mode
// suite, same run). GOMEMLIMIT, the runtime's own variable, caps the heap where memory is
// tight.
const brokerGCPercent = 400

// tuneGC sets the node's GC target; lookupEnv is os.LookupEnv outside tests.
func tuneGC(lookupEnv func(string) (string, bool)) {
	if _, set := lookupEnv("GOGC"); set {
		return
	}
	old := debug.SetGCPercent(brokerGCPercent)
	slog.Debug("GC target set for a broker (GOGC overrides it)", "gc_percent", brokerGCPercent, "was", old)
}
