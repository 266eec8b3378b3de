package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	local := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.Local)
	}
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"2026-11-26T10:00:00Z", time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)},
		{"2026-11-26T11:00:00+01:00", time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)},
		{"2026-11-26T10:00:00.250Z", time.Date(2026, 11, 26, 10, 0, 0, 250e6, time.UTC)},
		{"20261126100000", local(2026, 11, 26, 10, 0, 0)},
		{"20240229235959", local(2024, 2, 29, 23, 59, 59)},
		{"-1h", now.Add(-time.Hour)},
		{"1h", now.Add(-time.Hour)},
		{"2h ago", now.Add(-2 * time.Hour)},
		{"30m", now.Add(-30 * time.Minute)},
		{" 1h30m ago ", now.Add(-90 * time.Minute)},
		{"-90s", now.Add(-90 * time.Second)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"1.5h", now.Add(-90 * time.Minute)},
		{"500ms ago", now.Add(-500 * time.Millisecond)},
		{"2H AGO", now.Add(-2 * time.Hour)},
	} {
		got, err := parseTime(c.in, now)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !got.Equal(c.want) {
			t.Errorf("%q = %v, want %v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-11-26", "2026-11-26 10:00", "20261326100000", "20261126250000",
		"1y", "h", "ago", "1h ago ago", "--1h", "99999999999d", "2026-11-26T10:00:00"} {
		_, err := parseTime(bad, now)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "RFC 3339") || !strings.Contains(msg, "yyyyMMddHHmmss") || !strings.Contains(msg, "2h ago") {
			t.Errorf("%q: the error does not list the accepted forms: %v", bad, err)
		}
		if strings.Contains(msg, "2006") || strings.Contains(msg, "parsing time") {
			t.Errorf("%q: the error leaks Go's layout: %v", bad, err)
		}
	}
}

func TestParsePosition(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want position
	}{
		{"oldest", position{kind: posOldest}},
		{"newest", position{kind: posNewest}},
		{"Latest", position{kind: posNewest}},
		{"-10", position{kind: posLast, n: 10}},
		{"0", position{kind: posOffset}},
		{"1234", position{kind: posOffset, n: 1234}},
		{"-1h", position{kind: posTime, timeMs: now.Add(-time.Hour).UnixMilli()}},
		{"2026-11-26T10:00:00Z", position{kind: posTime, timeMs: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).UnixMilli()}},
		// Fourteen digits are a RocketMQ time, not an offset.
		{"20261126100000", position{kind: posTime, timeMs: time.Date(2026, 11, 26, 10, 0, 0, 0, time.Local).UnixMilli()}},
	} {
		got, err := parsePosition(c.in, now)
		if err != nil || got != c.want {
			t.Errorf("%q = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "soon", "1e3", "12.5"} {
		if _, err := parsePosition(bad, now); err == nil || !strings.Contains(err.Error(), "oldest, newest, -N") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzParseTime: any input either fails with the list of forms or gives a time that is not
// after now when it is relative; RFC 3339 and yyyyMMddHHmmss outputs format back to an input
// that parses to the same instant.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-11-26T10:00:00Z", "20261126100000", "-1h", "2h ago", "30m", "7d", "1h30m ago", "x", "", "1.5h", "99999999999999d"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTime(s, now)
		if err != nil {
			if !strings.Contains(err.Error(), timeForms) {
				t.Fatalf("%q: error without the forms: %v", s, err)
			}
			return
		}
		if again, err := parseTime(got.Format(time.RFC3339Nano), now); err != nil || !again.Equal(got) {
			t.Fatalf("%q = %v, which does not read back (%v, %v)", s, got, again, err)
		}
		if _, err := parsePosition(s, now); err != nil {
			t.Fatalf("%q is a time but not a position: %v", s, err)
		}
	})
}
