package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// One time syntax for every command that takes a time (consume --from, group reset --to,
// message find --from/--to, export --from/--to).

// timeForms lists what parseTime accepts; every error about a time says it.
const timeForms = "an RFC 3339 time (2026-11-26T10:00:00Z, 2026-11-26T11:00:00+01:00), " +
	"yyyyMMddHHmmss in local time as RocketMQ's tools take it (20261126100000), " +
	"or a time ago (-1h, 2h ago, 30m, 1h30m, 7d)"

// rocketmqLayout is RocketMQ's yyyyMMddHHmmss.
const rocketmqLayout = "20060102150405"

// agoRE is a relative time: an optional minus, then number-unit pairs (units d, h, m, s, ms),
// then an optional "ago".
var agoRE = regexp.MustCompile(`^-?\s*((?:\d+(?:\.\d+)?(?:ms|d|h|m|s)\s*)+)(?:\s*ago)?$`)

var agoPartRE = regexp.MustCompile(`(\d+(?:\.\d+)?)(ms|d|h|m|s)`)

// parseTime reads a time in one of timeForms; relative forms count back from now.
func parseTime(s string, now time.Time) (time.Time, error) {
	v := strings.TrimSpace(s)
	if v == "" {
		return time.Time{}, fmt.Errorf("empty time: want %s", timeForms)
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if isRocketMQTime(v) {
		if t, err := time.ParseInLocation(rocketmqLayout, v, time.Local); err == nil {
			return t, nil
		}
		return time.Time{}, fmt.Errorf("%q is not a valid yyyyMMddHHmmss date (month 01-12, day, hour 00-23, minute and second 00-59): want %s", s, timeForms)
	}
	if m := agoRE.FindStringSubmatch(strings.ToLower(v)); m != nil {
		var d time.Duration
		for _, p := range agoPartRE.FindAllStringSubmatch(m[1], -1) {
			n, err := strconv.ParseFloat(p[1], 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("%q: %q is not a number: want %s", s, p[1], timeForms)
			}
			unit := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[p[2]]
			part := n * float64(unit)
			if part > float64(200*365*24*time.Hour) || d+time.Duration(part) < d {
				return time.Time{}, fmt.Errorf("%q reaches back too far (more than 200 years): want %s", s, timeForms)
			}
			d += time.Duration(part)
		}
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want %s", s, timeForms)
}

// isRocketMQTime says whether s has the shape of yyyyMMddHHmmss: fourteen digits.
func isRocketMQTime(s string) bool {
	if len(s) != len(rocketmqLayout) {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// position is where a read starts (consume --from) or a group is moved to (group reset
// --to): the oldest or newest offset, the last N of each queue, one queue offset, or the first
// message stored at or after a time.
type position struct {
	kind   positionKind
	n      int64 // offset or last-N count
	timeMs int64
}

type positionKind int

const (
	posOldest positionKind = iota
	posNewest
	posLast
	posOffset
	posTime
)

const positionForms = "oldest, newest, -N (the last N of each queue), a queue offset, or a time: " + timeForms

// parsePosition reads --from/--to values: oldest, newest, -N, an offset, or a time. Fourteen
// digits are a yyyyMMddHHmmss time, not an offset; a minus and digits alone are last N.
func parsePosition(s string, now time.Time) (position, error) {
	v := strings.TrimSpace(s)
	switch strings.ToLower(v) {
	case "oldest", "earliest", "start", "beginning":
		return position{kind: posOldest}, nil
	case "newest", "latest", "end":
		return position{kind: posNewest}, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && !isRocketMQTime(v) {
		if n < 0 {
			return position{kind: posLast, n: -n}, nil
		}
		return position{kind: posOffset, n: n}, nil
	}
	t, err := parseTime(v, now)
	if err != nil {
		return position{}, fmt.Errorf("%q is not a position: want %s", s, positionForms)
	}
	return position{kind: posTime, timeMs: t.UnixMilli()}, nil
}
