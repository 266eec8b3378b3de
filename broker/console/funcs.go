package console

import (
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/message"
)

// templateFuncs are the helpers the templates call.
var templateFuncs = template.FuncMap{
	"path":     url.PathEscape,
	"query":    url.QueryEscape,
	"time":     fmtTime,
	"ms":       fmtMillis,
	"ago":      fmtAgo,
	"bytes":    fmtBytes,
	"duration": fmtDuration,
	"rate":     fmtRate,
	"props":    sortedProps,
	"join":     strings.Join,
	"host":     fmtHost,
	"sub":      func(a, b int64) int64 { return a - b },
	"hidden":   hiddenFields,
	"msdur":    func(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond },
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", n, many)
	},
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000")
}

func fmtMillis(ms int64) string {
	if ms <= 0 {
		return "—"
	}
	return fmtTime(time.UnixMilli(ms))
}

func fmtAgo(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return fmtDuration(time.Since(t).Round(time.Second)) + " ago"
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// fmtRate shows a produce rate; a negative one is not known yet.
func fmtRate(r float64) string {
	switch {
	case r < 0:
		return "measuring…"
	case r == 0:
		return "0/s"
	case r < 10:
		return fmt.Sprintf("%.2f/s", r)
	}
	return fmt.Sprintf("%.0f/s", r)
}

func fmtHost(h interface{ IsValid() bool }) string {
	if !h.IsValid() {
		return "—"
	}
	return fmt.Sprint(h)
}

// property is one message property for display.
type property struct{ Key, Value string }

// sortedProps lists a message's properties by key, the ones users set apart from the
// system ones RocketMQ keeps in the same map.
func sortedProps(m map[string]string) []property {
	out := make([]property, 0, len(m))
	for k, v := range m {
		out = append(out, property{k, v})
	}
	slices.SortFunc(out, func(a, b property) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// hiddenFields renders values as hidden inputs (the confirmation page re-posts the form).
func hiddenFields(v url.Values) template.HTML {
	var b strings.Builder
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, val := range v[k] {
			fmt.Fprintf(&b, `<input type="hidden" name="%s" value="%s">`, template.HTMLEscapeString(k), template.HTMLEscapeString(val))
		}
	}
	return template.HTML(b.String()) // both parts are escaped above
}

// TagsOrDash is the tags of a found message, for the templates.
func (m FoundMessage) TagsOrDash() string {
	if t := m.Message.Tags(); t != "" {
		return t
	}
	return "—"
}

// KeysOrDash is the keys of a found message.
func (m FoundMessage) KeysOrDash() string {
	if k := m.Properties[message.PropertyKeys]; k != "" {
		return k
	}
	return "—"
}

// Stored is the store time.
func (m FoundMessage) Stored() string { return fmtMillis(m.StoreTimestamp) }

// Born is the born time.
func (m FoundMessage) Born() string { return fmtMillis(m.BornTimestamp) }
