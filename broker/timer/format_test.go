package timer

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
)

func TestParseDelayLevels(t *testing.T) {
	got, err := ParseDelayLevels(DefaultDelayLevels)
	if err != nil || len(got) != 18 || got[0] != time.Second || got[2] != 10*time.Second || got[17] != 2*time.Hour {
		t.Fatalf("default table: %v %v", got, err)
	}
	got, err = ParseDelayLevels(" 250ms  3s 2m 1h 1d ")
	if want := []time.Duration{250 * time.Millisecond, 3 * time.Second, 2 * time.Minute, time.Hour, 24 * time.Hour}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v %v", got, err)
	}
	for _, bad := range []string{"", "  ", "1x", "s", "0s", "-1s", "1.5s", "10", "99999999999d"} {
		if _, err := ParseDelayLevels(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestPlanRules(t *testing.T) {
	levels, _ := ParseDelayLevels("1s 5s 10s")
	const now = int64(1_000_000)
	for _, c := range []struct {
		props map[string]string
		due   int64 // 0: delivered now
		level int
		err   error
	}{
		{props: map[string]string{}},
		{props: map[string]string{"DELAY": "2"}, due: now + 5000, level: 2},
		{props: map[string]string{"DELAY": "99"}, due: now + 10000, level: 3},
		{props: map[string]string{"DELAY": "0", PropertyTimerDelayMs: "7"}, due: now + 7},
		{props: map[string]string{"DELAY": "-1"}},
		{props: map[string]string{"DELAY": "x"}, err: ErrBadSchedule},
		// A delay level wins over delivery times (RocketMQ drops them).
		{props: map[string]string{"DELAY": "1", PropertyTimerDeliverMs: strconv.FormatInt(now+99000, 10)}, due: now + 1000, level: 1},
		// TIMER_DELAY_SEC, then TIMER_DELAY_MS, then TIMER_DELIVER_MS, then __STARTDELIVERTIME.
		{props: map[string]string{PropertyTimerDelaySec: "3", PropertyTimerDelayMs: "5", PropertyTimerDeliverMs: "9"}, due: now + 3000},
		{props: map[string]string{PropertyTimerDelayMs: "5", PropertyTimerDeliverMs: strconv.FormatInt(now+9, 10)}, due: now + 5},
		{props: map[string]string{PropertyTimerDeliverMs: strconv.FormatInt(now+9, 10), PropertyStartDeliverTime: "1"}, due: now + 9},
		{props: map[string]string{PropertyStartDeliverTime: strconv.FormatInt(now+11, 10)}, due: now + 11},
		{props: map[string]string{PropertyTimerDeliverMs: strconv.FormatInt(now, 10)}},
		{props: map[string]string{PropertyTimerDelaySec: "-5"}},
		{props: map[string]string{PropertyTimerDelaySec: "3601"}, err: ErrTooFar},
		{props: map[string]string{PropertyTimerDelaySec: "3600"}, due: now + 3600000},
		{props: map[string]string{PropertyTimerDeliverMs: "9223372036854775807"}, err: ErrTooFar},
		{props: map[string]string{PropertyTimerDelayMs: "1e3"}, err: ErrBadSchedule},
	} {
		p, ok, err := plan(func(k string) string { return c.props[k] }, now, levels, time.Hour)
		if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) || ok != (c.due != 0) || p.DueMs != c.due || p.Level != c.level {
			t.Errorf("%v: %+v ok=%v err=%v; want due %d level %d err %v", c.props, p, ok, err, c.due, c.level, c.err)
		}
		if WantsSchedule(func(k string) string { return c.props[k] }) != (len(c.props) > 0) {
			t.Errorf("%v: WantsSchedule wrong", c.props)
		}
	}
}

func TestDeliverableKeepsWhatConsumersSee(t *testing.T) {
	born := netip.MustParseAddrPort("10.1.2.3:4567")
	park := func(props map[string]string, p Parked) []byte {
		rewriteParked(props, p, "real", 5)
		m := &message.Message{Topic: ParkTopic, Flag: 3, SysFlag: message.FlagCompressed, BornTimestamp: 42, BornHost: born,
			StoreHost: testHost, StoreTimestamp: 777, ReconsumeTimes: 2, Body: []byte("body"), Properties: props}
		rec, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	base := func() map[string]string {
		return map[string]string{message.PropertyUniqKey: "U1", message.PropertyKeys: "a b", message.PropertyTags: "T", "x": "y",
			PropertyTimerDelayMs: "5000"}
	}
	check := func(rec []byte) *message.Message {
		out, err := deliverable(rec, testHost, 9000)
		if err != nil {
			t.Fatal(err)
		}
		m, _, err := message.Decode(out)
		if err != nil {
			t.Fatal(err)
		}
		p := m.Properties
		if m.Topic != "real" || m.QueueID != 5 || m.Flag != 3 || m.SysFlag != message.FlagCompressed || m.BornTimestamp != 42 ||
			m.BornHost != born || m.ReconsumeTimes != 2 || string(m.Body) != "body" || p[message.PropertyUniqKey] != "U1" ||
			p[message.PropertyKeys] != "a b" || p[message.PropertyTags] != "T" || p["x"] != "y" {
			t.Fatalf("delivered %+v", m)
		}
		return m
	}
	// A delay level: DELAY goes, REAL_TOPIC and REAL_QID stay, delivery times were dropped.
	props := base()
	props[message.PropertyDelayLevel] = "3"
	p := check(park(props, Parked{DueMs: 5000, Level: 3})).Properties
	if p[message.PropertyDelayLevel] != "" || p[message.PropertyRealTopic] != "real" || p[message.PropertyRealQueueID] != "5" ||
		p[PropertyTimerOutMs] != "" || p[PropertyTimerDelayMs] != "" {
		t.Fatalf("delay-level copy properties %v", p)
	}
	// A delivery time: REAL_TOPIC and REAL_QID go; the times stay and two are added.
	p = check(park(base(), Parked{DueMs: 5000})).Properties
	if p[message.PropertyRealTopic] != "" || p[message.PropertyRealQueueID] != "" || p[PropertyTimerOutMs] != "5000" ||
		p[PropertyTimerDelayMs] != "5000" || p[PropertyTimerEnqueueMs] != "777" || p[PropertyTimerDequeueMs] != "9000" {
		t.Fatalf("delivery-time copy properties %v", p)
	}
	// Without a destination the record cannot be delivered, and that is final.
	m := &message.Message{Topic: ParkTopic, Body: []byte("x"), Properties: map[string]string{PropertyTimerOutMs: "1"}}
	rec, _ := m.Encode()
	if _, err := deliverable(rec, testHost, 1); !permanent(err) {
		t.Fatalf("no REAL_TOPIC: %v", err)
	}
}

func TestFormatsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		e := entry{due: rng.Int64(), pos: rng.Int64(), qoff: rng.Int64(), size: rng.Int32()}
		got, err := decodeEntry(appendEntry(nil, e))
		if err != nil || got != e {
			t.Fatalf("entry %+v -> %+v %v", e, got, err)
		}
	}
	h := runHeader{seq: 9, count: 3, minDue: 1, maxDue: 5, minQoff: 2, maxQoff: 8}
	if got, err := decodeRunHeader(encodeRunHeader(h)); err != nil || got != h {
		t.Fatalf("run header %+v %v", got, err)
	}
	m := manifest{indexedBelow: 77, nextSeq: 5, runs: []manifestRun{{1, 10}, {4, 0}}}
	if got, err := decodeManifest(encodeManifest(m)); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("manifest %+v %v", got, err)
	}
	c := checkpoint{indexedBelow: 10, firedThrough: 1234, lowOffset: 3}
	if got, err := decodeCheckpoint(encodeCheckpoint(c)); err != nil || got != c {
		t.Fatalf("checkpoint %+v %v", got, err)
	}
	// Every single-bit flip is caught.
	for _, enc := range [][]byte{appendEntry(nil, entry{1, 2, 3, 4}), encodeRunHeader(h), encodeManifest(m), encodeCheckpoint(c)} {
		for i := range len(enc) * 8 {
			b := bytes.Clone(enc)
			b[i/8] ^= 1 << (i % 8)
			var err error
			switch len(enc) {
			case entryBytes:
				_, err = decodeEntry(b)
			case runHeaderBytes:
				if i/8 >= 60 {
					continue // reserved
				}
				_, err = decodeRunHeader(b)
			case checkpointBytes:
				_, err = decodeCheckpoint(b)
			default:
				_, err = decodeManifest(b)
			}
			if err == nil {
				t.Fatalf("bit %d flip of a %d-byte encoding went unnoticed", i, len(enc))
			}
		}
	}
}

func TestCheckpointCovers(t *testing.T) {
	c := checkpoint{indexedBelow: 10, firedThrough: 100, lowOffset: 4}
	for _, x := range []struct {
		e    entry
		want bool
	}{
		{entry{due: 5000, qoff: 3}, true}, // below the low offset
		{entry{due: 100, qoff: 9}, true},  // indexed and due by the fired-through time
		{entry{due: 101, qoff: 9}, false}, // due later
		{entry{due: 50, qoff: 10}, false}, // indexed after the checkpoint (a late arrival)
		{entry{due: 100, qoff: 4}, true},  // at the low offset, covered by the time rule
		{entry{due: 1 << 40, qoff: 4}, false},
	} {
		if got := c.covers(x.e); got != x.want {
			t.Errorf("covers(%+v) = %v", x.e, got)
		}
	}
}

func TestHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var h entryHeap
	var want []entry
	for i := range 5000 {
		e := entry{due: rng.Int64N(100), qoff: int64(i)}
		h.push(e)
		want = append(want, e)
	}
	slices.SortFunc(want, cmpEntry)
	for i, w := range want {
		if got := h.pop(); got != w {
			t.Fatalf("pop %d = %+v, want %+v", i, got, w)
		}
	}
	if _, ok := h.top(); ok {
		t.Fatal("heap not empty")
	}
}

func TestRecordProperty(t *testing.T) {
	for _, props := range []map[string]string{
		{PropertyTimerOutMs: "123"},
		{"A": "1", PropertyTimerOutMs: "123", "Z": ""},
		{"TIMER_OUT_MSX": "9", PropertyTimerOutMs: "123"},
	} {
		m := &message.Message{Topic: ParkTopic, Body: []byte("b"), Properties: props, CommitLogOffset: 64, QueueOffset: 3}
		rec, _ := m.Encode()
		e, err := parkedEntry(rec)
		if err != nil || e.due != 123 || e.pos != 64 || e.qoff != 3 || e.size != int32(len(rec)) {
			t.Fatalf("%v: %+v %v", props, e, err)
		}
	}
	m := &message.Message{Topic: ParkTopic, Properties: map[string]string{"other": "1"}}
	rec, _ := m.Encode()
	if _, err := parkedEntry(rec); err == nil {
		t.Fatal("a record without TIMER_OUT_MS has an entry")
	}
}
