package console

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stratamq/strata/broker/message"
)

func zlibbed(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPreviewBody(t *testing.T) {
	long := strings.Repeat("é", 10) // 20 bytes, two per rune
	cases := []struct {
		name      string
		body      []byte
		sysFlag   int32
		max       int
		text      string // want text preview with this content
		hexHas    string // want hex preview containing this
		truncated bool
		comp      string
		note      string
	}{
		{name: "text", body: []byte("hello\tworld\n"), max: 64, text: "hello\tworld\n"},
		{name: "empty", body: nil, max: 64, text: ""},
		{name: "invalid utf-8", body: []byte{0xff, 0xfe, 'a'}, max: 64, hexHas: "ff fe 61"},
		{name: "control characters", body: []byte("a\x00b"), max: 64, hexHas: "61 00 62"},
		{name: "cut inside a rune", body: []byte(long), max: 5, text: "éé", truncated: true},
		{name: "cut on a rune", body: []byte(long), max: 4, text: "éé", truncated: true},
		{name: "zlib", body: zlibbed(t, []byte("inflated text")), sysFlag: message.FlagCompressed, max: 64, text: "inflated text", comp: "zlib"},
		{name: "zlib truncated", body: zlibbed(t, []byte(strings.Repeat("x", 100))), sysFlag: message.FlagCompressed, max: 10,
			text: strings.Repeat("x", 10), truncated: true, comp: "zlib"},
		{name: "bad zlib", body: []byte("not zlib"), sysFlag: message.FlagCompressed, max: 64, text: "not zlib", comp: "zlib", note: "does not inflate"},
		{name: "other compression", body: []byte("lz4?"), sysFlag: message.FlagCompressed | 1<<8, max: 64, text: "lz4?", comp: "type 1", note: "type 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := previewBody(tc.body, tc.sysFlag, tc.max)
			if p.Size != len(tc.body) {
				t.Errorf("Size %d, want %d", p.Size, len(tc.body))
			}
			if tc.hexHas != "" {
				if p.IsText || !strings.Contains(p.Hex, tc.hexHas) {
					t.Errorf("want hex with %q, got text=%v %q hex %q", tc.hexHas, p.IsText, p.Text, p.Hex)
				}
			} else if !p.IsText || p.Text != tc.text {
				t.Errorf("want text %q, got text=%v %q hex %q", tc.text, p.IsText, p.Text, p.Hex)
			}
			if p.Truncated != tc.truncated {
				t.Errorf("Truncated %v, want %v", p.Truncated, tc.truncated)
			}
			if p.Compressed != tc.comp {
				t.Errorf("Compressed %q, want %q", p.Compressed, tc.comp)
			}
			if !strings.Contains(p.Note, tc.note) || (tc.note == "") != (p.Note == "") {
				t.Errorf("Note %q, want one containing %q", p.Note, tc.note)
			}
		})
	}
}

// FuzzPreviewBody: stored bodies come from clients and the bucket; the preview never
// panics, stays within its bound, and calls text only what is valid UTF-8.
func FuzzPreviewBody(f *testing.F) {
	f.Add([]byte("hello"), int32(0), 16)
	f.Add(zlibbed(f, []byte("compressed body")), message.FlagCompressed, 8)
	f.Add([]byte{0x78, 0x9c, 0xff}, message.FlagCompressed, 64)
	f.Add([]byte("ééé"), int32(0), 3)
	f.Fuzz(func(t *testing.T, body []byte, sysFlag int32, maxBytes int) {
		if maxBytes <= 0 || maxBytes > 1<<16 {
			return
		}
		p := previewBody(body, sysFlag, maxBytes)
		if p.Shown > maxBytes {
			t.Fatalf("shown %d bytes, bound %d", p.Shown, maxBytes)
		}
		if p.IsText && !utf8.ValidString(p.Text) {
			t.Fatalf("text preview %q is not valid UTF-8", p.Text)
		}
		if !p.IsText && p.Shown > 0 && p.Hex == "" {
			t.Fatal("binary preview without hex")
		}
	})
}

func TestRateMeter(t *testing.T) {
	m := newRateMeter(time.Minute)
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	topics := func(n int64) []TopicSummary { return []TopicSummary{{Name: "T", MessagesIn: n}} }

	ts := topics(100)
	m.observe(ts, at(0), time.Time{})
	if ts[0].ProduceRate >= 0 {
		t.Fatalf("first sample gave rate %v, want unknown (<0)", ts[0].ProduceRate)
	}
	ts = topics(110)
	m.observe(ts, at(3*time.Second), time.Time{})
	if ts[0].ProduceRate >= 0 {
		t.Fatalf("3s into a 1m window gave rate %v, want unknown", ts[0].ProduceRate)
	}
	ts = topics(200)
	m.observe(ts, at(10*time.Second), time.Time{})
	if got := ts[0].ProduceRate; got != 10 {
		t.Fatalf("100 messages in 10s: rate %v, want 10", got)
	}
	// Past the window, the rate is over about the last minute, not since the first sample.
	for s := 15; s <= 120; s += 5 {
		ts = topics(200 + int64(s-10)*2)
		m.observe(ts, at(time.Duration(s)*time.Second), time.Time{})
	}
	if got := ts[0].ProduceRate; got < 1.99 || got > 2.01 {
		t.Fatalf("2 msg/s for the last 110s: rate %v, want 2", got)
	}
	if n := len(m.series["T"]); n > samplesPerWindow+2 {
		t.Fatalf("%d samples kept for one topic, want at most %d", n, samplesPerWindow+2)
	}
	// A counter that goes back starts over.
	ts = topics(5)
	m.observe(ts, at(125*time.Second), time.Time{})
	if ts[0].ProduceRate >= 0 {
		t.Fatalf("after a counter reset: rate %v, want unknown", ts[0].ProduceRate)
	}
	// Until the window has samples, the average since the broker started stands in.
	ts = []TopicSummary{{Name: "U", MessagesIn: 300}}
	m.observe(ts, at(130*time.Second), at(30*time.Second))
	if ts[0].ProduceRate != 3 || !ts[0].RateSinceStart {
		t.Fatalf("300 messages since a start 100s ago, no samples yet: rate %v (since start %v), want 3 since start", ts[0].ProduceRate, ts[0].RateSinceStart)
	}
	// A topic gone from the list is forgotten.
	m.observe(nil, at(130*time.Second), time.Time{})
	if len(m.series) != 0 {
		t.Fatalf("series of deleted topics kept: %v", m.series)
	}
}

func TestParseResetForm(t *testing.T) {
	when := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		form    url.Values
		want    ResetRequest
		wantErr string
	}{
		{url.Values{"topic": {"T"}, "mode": {"offset"}, "offset": {"42"}},
			ResetRequest{Group: "G", Topic: "T", ToOffset: 42, QueueID: -1}, ""},
		{url.Values{"topic": {"T"}, "mode": {"offset"}, "offset": {"0"}, "queue": {"3"}, "keep_newer": {"on"}},
			ResetRequest{Group: "G", Topic: "T", ToOffset: 0, QueueID: 3, KeepNewer: true}, ""},
		{url.Values{"topic": {"T"}, "mode": {"time"}, "time": {"2026-05-01T12:00"}},
			ResetRequest{Group: "G", Topic: "T", ToOffset: -1, QueueID: -1, ToTime: when}, ""},
		{url.Values{"topic": {"T"}, "mode": {"time"}, "time": {"2026-05-01T14:00:00+02:00"}},
			ResetRequest{Group: "G", Topic: "T", ToOffset: -1, QueueID: -1, ToTime: when}, ""},
		{url.Values{"mode": {"offset"}, "offset": {"1"}}, ResetRequest{}, "choose the topic"},
		{url.Values{"topic": {"T"}, "mode": {"offset"}, "offset": {"-1"}}, ResetRequest{}, "not a queue offset"},
		{url.Values{"topic": {"T"}, "mode": {"offset"}, "offset": {""}}, ResetRequest{}, "not a queue offset"},
		{url.Values{"topic": {"T"}, "mode": {"time"}, "time": {"yesterday"}}, ResetRequest{}, "is not a time"},
		{url.Values{"topic": {"T"}, "mode": {"time"}}, ResetRequest{}, "give the time"},
		{url.Values{"topic": {"T"}, "offset": {"1"}}, ResetRequest{}, "choose an offset or a time"},
		{url.Values{"topic": {"T"}, "mode": {"offset"}, "offset": {"1"}, "queue": {"x"}}, ResetRequest{}, "not a queue id"},
	}
	for _, tc := range cases {
		_, got, err := parseResetForm("G", tc.form)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: error %v, want one about %q", tc.form, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.form, err)
			continue
		}
		if !got.ToTime.Equal(tc.want.ToTime) {
			t.Errorf("%v: time %v, want %v", tc.form, got.ToTime, tc.want.ToTime)
		}
		got.ToTime, tc.want.ToTime = time.Time{}, time.Time{}
		if got != tc.want {
			t.Errorf("%v: %+v, want %+v", tc.form, got, tc.want)
		}
	}
}

// TestResetFormRoundTrip: the confirmation page re-posts the form from hidden fields, and
// the request it asks for is the one the first post asked for.
func TestResetFormRoundTrip(t *testing.T) {
	in := url.Values{"topic": {"T"}, "mode": {"time"}, "time": {"2026-05-01T12:00:05"}, "queue": {"1"}, "keep_newer": {"on"}}
	f, first, err := parseResetForm("G", in)
	if err != nil {
		t.Fatal(err)
	}
	html := string(hiddenFields(f.values()))
	again := url.Values{}
	for _, m := range regexp.MustCompile(`name="([^"]*)" value="([^"]*)"`).FindAllStringSubmatch(html, -1) {
		again.Add(m[1], m[2])
	}
	_, second, err := parseResetForm("G", again)
	if err != nil {
		t.Fatalf("re-posted form %v: %v", again, err)
	}
	if first != second {
		t.Fatalf("re-posted form asks for %+v, the first for %+v", second, first)
	}
	if got := describeTarget(first); got != "the first message stored at or after 2026-05-01 12:00:05.000 UTC on queue 1, leaving queues already older alone" {
		t.Fatalf("target described as %q", got)
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC)
	for _, s := range []string{"2026-05-01T12:30", "2026-05-01T12:30:00", "2026-05-01 12:30:00", "2026-05-01T12:30:00Z",
		"2026-05-01T14:30:00+02:00", "1777638600000"} {
		got, err := parseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if got, err := parseTime(""); err != nil || !got.IsZero() {
		t.Errorf("parseTime(\"\") = %v, %v; want the zero time", got, err)
	}
	for _, s := range []string{"tomorrow", "2026-13-01T00:00", "-5"} {
		if _, err := parseTime(s); err == nil {
			t.Errorf("parseTime(%q) accepted", s)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.RefreshInterval != DefaultRefreshInterval || c.MaxSearchResults != DefaultMaxSearchResults || c.BodyPreviewBytes != DefaultBodyPreviewBytes ||
		c.TxnPendingLimit != DefaultTxnPendingLimit || c.RateWindow != DefaultRateWindow || c.MaxTraceRecords != DefaultMaxTraceRecords {
		t.Fatalf("defaults not filled: %+v", c)
	}
	for _, bad := range []Config{{MaxSearchResults: -1}, {MaxSearchResults: 5000}, {BodyPreviewBytes: 2 << 20}, {TxnPendingLimit: -3},
		{RateWindow: time.Millisecond}, {MaxTraceRecords: -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate accepted %+v", bad)
		}
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Error("New accepted a nil Source")
	}
}

// TestVendoredHTMXMatchesMakefile: the htmx file served is the one the Makefile pins
// (version and checksum), so `make htmx` reproduces it byte for byte.
func TestVendoredHTMXMatchesMakefile(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `\s*:=\s*(\S+)`).FindSubmatch(mk)
		if m == nil {
			t.Fatalf("Makefile has no %s", name)
		}
		return string(m[1])
	}
	version, sum := field("HTMX_VERSION"), field("HTMX_SHA256")
	if want := "htmx-" + version + ".min.js"; HTMXAsset != want {
		t.Fatalf("console serves %s, the Makefile pins %s", HTMXAsset, want)
	}
	b, err := fs.ReadFile(assetFS, "assets/"+HTMXAsset)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.Sum256(b)
	if hex.EncodeToString(got[:]) != sum {
		t.Fatalf("assets/%s has sha256 %x, the Makefile pins %s; run make htmx", HTMXAsset, got, sum)
	}
	if _, err := fs.Stat(assetFS, "assets/htmx-"+version+".LICENSE"); err != nil {
		t.Fatalf("htmx's licence is not beside it: %v", err)
	}
}
