package etcdembed

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapLogger is the logger the embedded etcd gets: its entries at or above level go to
// log (Strata's slog logger, on stderr for `strata dev`), and a Fatal entry, instead of
// zap's os.Exit, is logged, handed to report and ends only the goroutine that logged it
// (fatalHook). While closing is set, entries below Fatal are dropped: a member being
// closed complains about each listener it closes.
func newZapLogger(log *slog.Logger, level zapcore.Level, report func(error), closing *atomic.Bool) *zap.Logger {
	core := &slogCore{LevelEnabler: level, log: log.With("component", "etcd"), closing: closing}
	return zap.New(core, zap.WithFatalHook(fatalHook{report: report}))
}

// expected are entries a single-member etcd on loopback logs at every start (with, if
// set, the error they carry): they say nothing a `strata dev` user can act on, so they are
// logged at debug level.
var expected = map[string]string{
	"Running http and grpc server on single port. This is not recommended for production.": "",
	"simple token is not cryptographically signed":                                         "",
	// A new member checks its storage version before its first raft term is stored.
	"Failed to detect schema version":  "missing term information",
	"failed to update storage version": "missing term information",
}

func isExpected(msg string, attrs []slog.Attr) bool {
	want, ok := expected[msg]
	if !ok || want == "" {
		return ok
	}
	for _, a := range attrs {
		if a.Key == "error" && strings.Contains(a.Value.String(), want) {
			return true
		}
	}
	return false
}

// fatalHook replaces zap's default reaction to a Fatal entry, os.Exit(1), which would end
// `strata dev` without a word and without flushing the broker's offsets or closing its store.
// When it runs, the entry has been written. It reports the entry as an error, then calls
// runtime.Goexit: the code after etcd's Fatal call, which assumes the process is gone, never
// runs, the goroutine's deferred calls do, and the process shuts down cleanly through
// Server.Err. etcd calls Fatal from its own goroutines (Start runs etcd's start-up in one of
// its own), never from the caller's.
type fatalHook struct {
	report func(error)
}

func (h fatalHook) OnWrite(ce *zapcore.CheckedEntry, fields []zapcore.Field) {
	h.report(fmt.Errorf("embedded etcd stopped on a fatal error: %s%s", ce.Message, fieldsText(fields)))
	runtime.Goexit()
}

// fieldsText renders zap fields as " (k=v, …)", sorted by key.
func fieldsText(fields []zapcore.Field) string {
	attrs := fieldAttrs(nil, fields)
	if len(attrs) == 0 {
		return ""
	}
	parts := make([]string, len(attrs))
	for i, a := range attrs {
		parts[i] = a.String()
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func fieldAttrs(with, fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range with {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}

// slogCore is a zapcore.Core that writes to a slog.Logger.
type slogCore struct {
	zapcore.LevelEnabler
	log     *slog.Logger
	fields  []zapcore.Field // from With
	closing *atomic.Bool    // nil: never
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{LevelEnabler: c.LevelEnabler, log: c.log, closing: c.closing,
		fields: append(c.fields[:len(c.fields):len(c.fields)], fields...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level < zapcore.FatalLevel && c.closing != nil && c.closing.Load() {
		return ce
	}
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slog.LevelError
	switch {
	case e.Level <= zapcore.DebugLevel:
		level = slog.LevelDebug
	case e.Level == zapcore.InfoLevel:
		level = slog.LevelInfo
	case e.Level == zapcore.WarnLevel:
		level = slog.LevelWarn
	}
	attrs := fieldAttrs(c.fields, fields)
	if e.Level < zapcore.DPanicLevel && isExpected(e.Message, attrs) {
		level = slog.LevelDebug
	}
	if e.Level > zapcore.ErrorLevel {
		attrs = append(attrs, slog.String("etcd_level", e.Level.String()))
	}
	c.log.LogAttrs(context.Background(), level, e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }
