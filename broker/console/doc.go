// Package console is Strata's web console for operators: server-rendered pages (html/template)
// over a small interface, Source, that the broker implements. It shows the cluster (broker
// groups, members, elected masters, the cold tier's watermark and backlog), topics (queues,
// offsets, hot and cold ranges, produce rates), consumer groups (lag per queue, connected
// members, an offset reset behind a confirmation), message search by id, key or store time
// across both tiers with a body preview, message traces, pending transactions, and a place
// for pending timers.
//
// Pages work without JavaScript; htmx (vendored in assets/, see its README) only enhances
// them: live refresh of figures and inline search results. Everything is embedded in the
// binary.
//
// Start reading at New (console.go), which takes a Source (source.go) and a Config and
// returns an http.Handler; Config.Auth is where an access check (the ACL) wraps it. Pages are
// in pages.go and templates/; preview.go shows message bodies as text or hex; rate.go turns
// the broker's message counters into rates.
package console
