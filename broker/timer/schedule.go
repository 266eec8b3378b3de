package timer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/message"
)

// System topics of scheduled delivery. Producers may not send to them.
const (
	// ParkTopic holds every scheduled message until it is due, in queue 0: delay levels,
	// delivery times and retry backoff alike (RocketMQ 5's timer topic).
	ParkTopic = "rmq_sys_wheel_timer"
	// CheckpointTopic holds the fired-state records (FORMAT.md), in queue 0.
	CheckpointTopic = "rmq_sys_timer_checkpoint"
	// scheduleTopic is RocketMQ 4's delay-level topic; Strata parks in ParkTopic but refuses
	// sends to it too, as RocketMQ does.
	scheduleTopic = "SCHEDULE_TOPIC_XXXX"
)

// Message properties of scheduled delivery (RocketMQ's MessageConst names).
const (
	PropertyTimerDeliverMs   = "TIMER_DELIVER_MS"   // absolute delivery time, ms (RocketMQ 5, Go WithDelayTimestamp)
	PropertyTimerDelaySec    = "TIMER_DELAY_SEC"    // relative delay, seconds (RocketMQ 5)
	PropertyTimerDelayMs     = "TIMER_DELAY_MS"     // relative delay, ms (RocketMQ 5)
	PropertyStartDeliverTime = "__STARTDELIVERTIME" // absolute delivery time, ms (Aliyun ONS clients)
	// PropertyTimerOutMs is the due time (ms) of a parked message, written by the broker.
	PropertyTimerOutMs = "TIMER_OUT_MS"
	// PropertyTimerEnqueueMs and PropertyTimerDequeueMs are added to a delivered copy of a
	// delivery-time message, as RocketMQ 5 does: when it was parked and when it fired.
	PropertyTimerEnqueueMs = "TIMER_ENQUEUE_MS"
	PropertyTimerDequeueMs = "TIMER_DEQUEUE_MS"
)

// ErrTooFar rejects a delivery scheduled beyond Config.MaxDelay.
var ErrTooFar = errors.New("scheduled delivery is too far ahead")

// ErrBadSchedule rejects a delay property that is not a number.
var ErrBadSchedule = errors.New("bad scheduled-delivery property")

// IsSystemTopic reports whether producers must not send to topic.
func IsSystemTopic(topic string) bool {
	return topic == ParkTopic || topic == CheckpointTopic || topic == scheduleTopic
}

// WantsSchedule reports whether a message with these properties may need scheduling: it
// carries a delay level or a delivery time. It costs a few lookups and is meant for every
// send; Intercept decides.
func WantsSchedule(get func(key string) string) bool {
	return get(message.PropertyDelayLevel) != "" || get(PropertyTimerDeliverMs) != "" ||
		get(PropertyTimerDelaySec) != "" || get(PropertyTimerDelayMs) != "" || get(PropertyStartDeliverTime) != ""
}

// Parked is where Intercept put a scheduled message and when it is due.
type Parked struct {
	Topic   string
	QueueID int32
	DueMs   int64
	// Level is the delay level (clamped to the table), 0 for a delivery time.
	Level int
}

// plan decides whether a message is scheduled and when, by RocketMQ's rules: a delay level
// above 0 wins (and the delivery-time properties are dropped); otherwise TIMER_DELAY_SEC,
// then TIMER_DELAY_MS, then TIMER_DELIVER_MS, then __STARTDELIVERTIME. A time not after
// now is delivered at once.
func plan(get func(string) string, nowMs int64, levels []time.Duration, maxDelay time.Duration) (Parked, bool, error) {
	if v := strings.TrimSpace(get(message.PropertyDelayLevel)); v != "" {
		level, err := strconv.Atoi(v)
		if err != nil {
			return Parked{}, false, fmt.Errorf("%w: DELAY=%q is not a delay level; send a level of 1..%d (0 or less: no delay)", ErrBadSchedule, v, len(levels))
		}
		if level > 0 {
			level = min(level, len(levels))
			return Parked{DueMs: nowMs + levels[level-1].Milliseconds(), Level: level}, true, nil
		}
	}
	maxMs := maxDelay.Milliseconds()
	var due int64
	switch {
	case get(PropertyTimerDelaySec) != "":
		n, err := parseMillis(get, PropertyTimerDelaySec)
		if err != nil {
			return Parked{}, false, err
		}
		if n > maxMs/1000+1 {
			return Parked{}, false, tooFar(time.Duration(min(n, 1<<33))*time.Second, maxDelay)
		}
		due = nowMs + n*1000
	case get(PropertyTimerDelayMs) != "":
		n, err := parseMillis(get, PropertyTimerDelayMs)
		if err != nil {
			return Parked{}, false, err
		}
		if n > maxMs {
			return Parked{}, false, tooFar(time.Duration(min(n, 1<<43))*time.Millisecond, maxDelay)
		}
		due = nowMs + n
	case get(PropertyTimerDeliverMs) != "":
		n, err := parseMillis(get, PropertyTimerDeliverMs)
		if err != nil {
			return Parked{}, false, err
		}
		due = n
	case get(PropertyStartDeliverTime) != "":
		n, err := parseMillis(get, PropertyStartDeliverTime)
		if err != nil {
			return Parked{}, false, err
		}
		due = n
	default:
		return Parked{}, false, nil
	}
	if due <= nowMs {
		return Parked{}, false, nil
	}
	if due-nowMs > maxMs {
		return Parked{}, false, tooFar(time.Duration(min(due-nowMs, 1<<43))*time.Millisecond, maxDelay)
	}
	return Parked{DueMs: due}, true, nil
}

func parseMillis(get func(string) string, key string) (int64, error) {
	v := strings.TrimSpace(get(key))
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not a whole number", ErrBadSchedule, key, v)
	}
	return n, nil
}

func tooFar(d, limit time.Duration) error {
	return fmt.Errorf("%w: delivery %s ahead is over this broker's limit of %s (timer max_delay); schedule it nearer or raise the limit",
		ErrTooFar, d.Round(time.Second), limit)
}

// rewriteParked turns the properties of a message for (topic, queueID) into those of its
// parked record, as RocketMQ's HookUtils does: REAL_TOPIC and REAL_QID remember the
// destination, TIMER_OUT_MS the due time; a delay level is stored clamped and makes the
// delivery-time properties go.
func rewriteParked(props map[string]string, p Parked, topic string, queueID int32) {
	if p.Level > 0 {
		props[message.PropertyDelayLevel] = strconv.Itoa(p.Level)
		delete(props, PropertyTimerDeliverMs)
		delete(props, PropertyTimerDelaySec)
		delete(props, PropertyTimerDelayMs)
	}
	props[message.PropertyRealTopic] = topic
	props[message.PropertyRealQueueID] = strconv.Itoa(int(queueID))
	props[PropertyTimerOutMs] = strconv.FormatInt(p.DueMs, 10)
}

// errUndeliverable marks a parked record that can never be delivered (it lacks its
// destination): firing drops it rather than retrying forever.
var errUndeliverable = errors.New("parked record cannot be delivered")

// deliverable builds the copy of a parked record that goes to its real topic and queue.
// Consumers see what RocketMQ shows them: for a delay level (RocketMQ 4's schedule service)
// DELAY is removed and REAL_TOPIC / REAL_QID stay; for a delivery time (RocketMQ 5's timer
// wheel) REAL_TOPIC / REAL_QID are removed, TIMER_OUT_MS stays and TIMER_ENQUEUE_MS /
// TIMER_DEQUEUE_MS are added. UNIQ_KEY, keys, tags, body, flag, born host and time and
// reconsume times are kept.
func deliverable(parked []byte, storeHost netip.AddrPort, nowMs int64) ([]byte, error) {
	m, _, err := message.Decode(parked)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUndeliverable, err)
	}
	props := m.Properties
	topic := props[message.PropertyRealTopic]
	qid, err := strconv.ParseInt(props[message.PropertyRealQueueID], 10, 32)
	if topic == "" || err != nil || qid < 0 {
		return nil, fmt.Errorf("%w: record at commit-log offset %d has REAL_TOPIC=%q REAL_QID=%q", errUndeliverable,
			m.CommitLogOffset, topic, props[message.PropertyRealQueueID])
	}
	if lvl, err := strconv.Atoi(props[message.PropertyDelayLevel]); err == nil && lvl > 0 {
		delete(props, message.PropertyDelayLevel)
		delete(props, PropertyTimerOutMs)
	} else {
		delete(props, message.PropertyRealTopic)
		delete(props, message.PropertyRealQueueID)
		props[PropertyTimerEnqueueMs] = strconv.FormatInt(m.StoreTimestamp, 10)
		props[PropertyTimerDequeueMs] = strconv.FormatInt(nowMs, 10)
	}
	if !storeHost.IsValid() {
		storeHost = m.StoreHost
	}
	out := &message.Message{
		Topic: topic, QueueID: int32(qid), Flag: m.Flag,
		SysFlag:       m.SysFlag &^ (message.FlagBornHostV6 | message.FlagStoreHostV6),
		BornTimestamp: m.BornTimestamp, BornHost: m.BornHost, StoreHost: storeHost,
		ReconsumeTimes: m.ReconsumeTimes, Body: m.Body, Properties: props,
	}
	rec, err := out.AppendEncoded(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUndeliverable, err)
	}
	return rec, nil
}
