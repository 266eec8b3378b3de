package broker

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
)

const dashboardPath = "../deployments/grafana/strata.json"

// promqlNotMetrics are the PromQL words that look like identifiers but name no series:
// aggregations (which take a parenthesised argument after an optional by/without clause),
// binary keywords and modifiers.
var promqlNotMetrics = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true,
	"limit_ratio": true, "and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true,
}

// promqlLabelLists are the keywords followed by a parenthesised list of label names.
var promqlLabelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// promqlMetricNames returns the series names an expression selects. It is a tokenizer, not a
// parser: strings, label matchers ({…}), ranges ([…]), Grafana variables ($x), numbers,
// function calls (an identifier followed by '('), aggregation words and label lists
// (by (…), on (…)) are skipped; every other identifier is a metric name.
func promqlMetricNames(expr string) ([]string, error) {
	var names []string
	i := 0
	skipTo := func(close byte) error {
		for i < len(expr) && expr[i] != close {
			if expr[i] == '"' || expr[i] == '\'' || expr[i] == '`' {
				q := expr[i]
				i++
				for i < len(expr) && expr[i] != q {
					if expr[i] == '\\' {
						i++
					}
					i++
				}
			}
			i++
		}
		if i >= len(expr) {
			return &promqlError{expr, "unclosed " + string(close)}
		}
		i++
		return nil
	}
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i++
			if err := skipTo(c); err != nil {
				return nil, err
			}
		case c == '{':
			i++
			if err := skipTo('}'); err != nil {
				return nil, err
			}
		case c == '[':
			i++
			if err := skipTo(']'); err != nil {
				return nil, err
			}
		case c == '$':
			for i++; i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '{' || expr[i] == '}'); i++ {
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdentChar(expr[i]) {
				i++
			}
			word := expr[start:i]
			j := i
			for j < len(expr) && (expr[j] == ' ' || expr[j] == '\n' || expr[j] == '\t') {
				j++
			}
			switch {
			case promqlLabelLists[strings.ToLower(word)]:
				if j < len(expr) && expr[j] == '(' {
					i = j + 1
					if err := skipTo(')'); err != nil {
						return nil, err
					}
				}
			case promqlNotMetrics[strings.ToLower(word)]:
			case j < len(expr) && expr[j] == '(': // a function call
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names, nil
}

type promqlError struct{ expr, msg string }

func (e *promqlError) Error() string { return e.msg + " in " + e.expr }

func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (le, request) (rate(a_bucket{role="broker",x=~"$x"}[$__rate_interval]))`: "a_bucket",
		`histogram_quantile(0.99, sum by (le) (rate(b_seconds_bucket[5m]))) * 1e3`:       "b_seconds_bucket",
		`-sum(rate(c_total{a="}{"}[1m])) / on (instance) group_left d`:                   "c_total d",
		`max without (queue) (lag{group=~"$group"}) > bool 0 or vector(0)`:               "lag",
		`x offset 5m unless y`: "x y",
	} {
		got, err := promqlMetricNames(expr)
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("%s: metric names %q, %v; want %q", expr, got, err, want)
		}
	}
	if _, err := promqlMetricNames(`rate(x{a="b"[5m])`); err == nil {
		t.Error("an unclosed matcher was accepted")
	}
}

// dashboardQueries returns every PromQL expression of the dashboard (panel targets, rows'
// nested panels) and the metric names its template variables read.
func dashboardQueries(t *testing.T) (exprs []string, variableMetrics []string) {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string                  `json:"title"`
		Targets []struct{ Expr string } `json:"targets"`
		Panels  []json.RawMessage       `json:"panels"`
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, r := range ps {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Fatalf("template variable query %q is not label_values(metric, label)", v.Definition)
		}
		variableMetrics = append(variableMetrics, m[1])
	}
	return exprs, variableMetrics
}

// scrapedNames fetches url and returns the series names of the Prometheus text output.
func scrapedNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if k := strings.IndexAny(line, "{ "); k > 0 {
			names[line[:k]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// Every series the Grafana dashboard queries exists on a running broker's /metrics once it
// has served sends, pulls and commits and offloaded a segment.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	exprs, varMetrics := dashboardQueries(t)
	if len(exprs) < 10 {
		t.Fatalf("the dashboard has %d queries; the walk missed its panels", len(exprs))
	}
	e := newTierEnv(t)
	env := e.start(t, t.TempDir(), nil)
	createTopic(t, env, "Dash", 1)
	for i := 0; i < 4; i++ {
		wantCode(t, send(t, env, "Dash", 0, "", strings.Repeat("d", 2000)), remoting.RespSuccess)
	}
	wantCode(t, invoke(t, env.bk, remoting.CodePullMessage, pullExt("Dash", 0, 0, "*", 0), nil), remoting.RespSuccess)
	commitOffset(t, env, "cg", "Dash", 0, 1)
	// A sealed segment offloaded (SealAfter is 100ms): the bucket requests have latencies.
	sealedCh := make(chan store.SealedSegment, 16)
	env.b.store.OnSeal(func(s store.SealedSegment) {
		select {
		case sealedCh <- s:
		default:
		}
	})
	var end int64
	if sealed := env.b.store.SealedSegments(); len(sealed) > 0 {
		end = sealed[len(sealed)-1].EndOffset
	} else {
		select {
		case s := <-sealedCh:
			end = s.EndOffset
		case <-time.After(30 * time.Second):
			t.Fatal("no segment sealed within 30s of the last send (SealAfter is 100ms)")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := env.b.tier.WaitOffloaded(ctx, end); err != nil {
		t.Fatal(err)
	}

	have := scrapedNames(t, "http://"+env.b.HTTPAddr()+"/metrics")
	var missing []string
	seen := map[string]bool{}
	check := func(name, where string) {
		seen[name] = true
		if !have[name] {
			missing = append(missing, name+" ("+where+")")
		}
	}
	for _, expr := range exprs {
		names, err := promqlMetricNames(expr)
		if err != nil {
			t.Fatal(err)
		}
		if len(names) == 0 {
			t.Errorf("query %q selects no metric", expr)
		}
		for _, n := range names {
			check(n, expr)
		}
	}
	for _, n := range varMetrics {
		check(n, "template variable")
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("the dashboard queries metrics a broker does not export:\n  %s", strings.Join(missing, "\n  "))
	}
	for _, want := range []string{"strata_broker_request_duration_seconds_bucket", "strata_broker_consumer_lag_messages",
		"strata_tier_backlog_bytes", "strata_store_flush_duration_seconds_bucket", "strata_tier_cold_read_bytes_total",
		"strata_objstore_requests_total", "strata_broker_messages_in_total"} {
		if !seen[want] {
			t.Errorf("the dashboard has no panel on %s", want)
		}
	}
}
