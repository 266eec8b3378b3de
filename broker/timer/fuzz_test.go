package timer

import (
	"testing"

	"github.com/stratamq/strata/broker/message"
)

func FuzzDecodeEntry(f *testing.F) {
	f.Add(appendEntry(nil, entry{due: 1, pos: 2, qoff: 3, size: 4}))
	f.Add(make([]byte, entryBytes))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		if again, err := decodeEntry(appendEntry(nil, e)); err != nil || again != e {
			t.Fatalf("re-encoding %+v: %+v %v", e, again, err)
		}
	})
}

func FuzzDecodeRunHeader(f *testing.F) {
	f.Add(encodeRunHeader(runHeader{seq: 1, count: 2, minDue: 3, maxDue: 4, minQoff: 5, maxQoff: 6}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeRunHeader(b)
		if err != nil {
			return
		}
		if again, err := decodeRunHeader(encodeRunHeader(h)); err != nil || again != h {
			t.Fatalf("re-encoding %+v: %+v %v", h, again, err)
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(encodeManifest(manifest{indexedBelow: 9, nextSeq: 3, runs: []manifestRun{{0, 4}, {2, 8}}}))
	f.Add(encodeManifest(manifest{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest(b)
		if err != nil {
			return
		}
		if _, err := decodeManifest(encodeManifest(m)); err != nil {
			t.Fatalf("re-encoding %+v: %v", m, err)
		}
	})
}

func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add(encodeCheckpoint(checkpoint{indexedBelow: 5, firedThrough: 6, lowOffset: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCheckpoint(b)
		if err != nil {
			return
		}
		if again, err := decodeCheckpoint(encodeCheckpoint(c)); err != nil || again != c {
			t.Fatalf("re-encoding %+v: %+v %v", c, again, err)
		}
	})
}

// FuzzParkedEntry feeds parked-record bytes (from the log or the bucket) to the index's
// reader and the delivery path.
func FuzzParkedEntry(f *testing.F) {
	m := &message.Message{Topic: ParkTopic, Body: []byte("b"), Properties: map[string]string{
		PropertyTimerOutMs: "123", message.PropertyRealTopic: "t", message.PropertyRealQueueID: "1"}}
	rec, _ := m.Encode()
	f.Add(rec)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parkedEntry(b)
		_, _ = deliverable(b, testHost, 1)
	})
}

// FuzzPlan feeds producer-chosen property values to the scheduling rules.
func FuzzPlan(f *testing.F) {
	f.Add("3", "", "", "", "")
	f.Add("", "10", "", "", "")
	f.Add("", "", "-9223372036854775808", "9223372036854775807", "1")
	levels, _ := ParseDelayLevels(DefaultDelayLevels)
	const now = int64(1_700_000_000_000)
	f.Fuzz(func(t *testing.T, delay, sec, ms, deliver, start string) {
		props := map[string]string{"DELAY": delay, PropertyTimerDelaySec: sec, PropertyTimerDelayMs: ms,
			PropertyTimerDeliverMs: deliver, PropertyStartDeliverTime: start}
		p, ok, err := plan(func(k string) string { return props[k] }, now, levels, DefaultMaxDelay)
		if err != nil || !ok {
			return
		}
		if p.DueMs <= now || p.Level == 0 && p.DueMs-now > DefaultMaxDelay.Milliseconds() || p.Level > len(levels) {
			t.Fatalf("plan %+v for %v", p, props)
		}
		if p.Level > 0 && p.DueMs != now+levels[p.Level-1].Milliseconds() {
			t.Fatalf("level %d due %d", p.Level, p.DueMs)
		}
	})
}
