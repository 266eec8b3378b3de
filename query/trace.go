package query

import (
	"fmt"
	"strconv"
	"strings"
)

// TraceTopic is RocketMQ's message-trace topic: clients with tracing on (the Go client's
// WithTrace, Java's enableMsgTrace) send their trace records there, keyed by the traced
// message's id and keys.
const TraceTopic = "RMQ_SYS_TRACE_TOPIC"

// Trace record types, as clients write them.
const (
	TracePub       = "Pub"
	TraceSubBefore = "SubBefore"
	TraceSubAfter  = "SubAfter"
)

// TraceRecord is one record of a trace message body. Which fields are set depends on Type:
//
//	Pub        Time Region Group Topic MsgID Tags Keys StoreHost BodyLength CostMs MsgType OffsetMsgID Success ClientHost
//	SubBefore  Time Region Group RequestID MsgID RetryTimes Keys ClientHost
//	SubAfter   RequestID MsgID CostMs Success Keys ContextCode Time Group
type TraceRecord struct {
	Type        string `json:"type"`
	Time        int64  `json:"time"` // ms
	Region      string `json:"region,omitempty"`
	Group       string `json:"group"` // producer group (Pub) or consumer group
	Topic       string `json:"topic,omitempty"`
	MsgID       string `json:"msgId"`
	OffsetMsgID string `json:"offsetMsgId,omitempty"`
	Tags        string `json:"tags,omitempty"`
	Keys        string `json:"keys,omitempty"`
	StoreHost   string `json:"storeHost,omitempty"`
	ClientHost  string `json:"clientHost,omitempty"`
	BodyLength  int    `json:"bodyLength,omitempty"`
	CostMs      int64  `json:"costMs"`
	MsgType     int    `json:"msgType,omitempty"`
	Success     bool   `json:"success"`
	RequestID   string `json:"requestId,omitempty"`
	RetryTimes  int    `json:"retryTimes,omitempty"`
	ContextCode int    `json:"contextCode,omitempty"`
}

// The separators of a trace body: records end with fieldSep, fields are split by contentSep.
const (
	traceContentSep = "\x01"
	traceFieldSep   = "\x02"
)

// ParseTrace decodes a trace message body: records separated by \x02, fields by \x01, in the
// layout RocketMQ's clients write (TraceRecord). A record of an unknown type, or one with too
// few fields, is an error naming it; trailing fields a newer client adds are ignored.
func ParseTrace(body []byte) ([]TraceRecord, error) {
	var out []TraceRecord
	for i, raw := range strings.Split(string(body), traceFieldSep) {
		if strings.Trim(raw, "\r\n ") == "" {
			continue
		}
		f := strings.Split(raw, traceContentSep)
		r, err := parseTraceRecord(f)
		if err != nil {
			return out, fmt.Errorf("trace record %d (%.24q): %w", i, raw, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// traceFields counts the fields each record type has at least.
var traceFields = map[string]int{TracePub: 15, TraceSubBefore: 9, TraceSubAfter: 9}

func parseTraceRecord(f []string) (TraceRecord, error) {
	r := TraceRecord{Type: f[0]}
	want, ok := traceFields[r.Type]
	if !ok {
		return r, fmt.Errorf("unknown trace type %q; want Pub, SubBefore or SubAfter", r.Type)
	}
	if len(f) < want {
		return r, fmt.Errorf("%s record has %d fields, want %d", r.Type, len(f), want)
	}
	var p traceFieldParser
	switch r.Type {
	case TracePub:
		r.Time, r.Region, r.Group, r.Topic, r.MsgID = p.int64(f[1]), f[2], f[3], f[4], f[5]
		r.Tags, r.Keys, r.StoreHost = f[6], f[7], f[8]
		r.BodyLength, r.CostMs, r.MsgType = p.int(f[9]), p.int64(f[10]), p.int(f[11])
		r.OffsetMsgID, r.Success, r.ClientHost = f[12], p.bool(f[13]), f[14]
	case TraceSubBefore:
		r.Time, r.Region, r.Group, r.RequestID, r.MsgID = p.int64(f[1]), f[2], f[3], f[4], f[5]
		r.RetryTimes, r.Keys, r.ClientHost = p.int(f[6]), unwrapNull(f[7]), f[8]
	case TraceSubAfter:
		r.RequestID, r.MsgID, r.CostMs, r.Success = f[1], f[2], p.int64(f[3]), p.bool(f[4])
		r.Keys, r.ContextCode, r.Time, r.Group = unwrapNull(f[5]), p.int(f[6]), p.int64(f[7]), f[8]
	}
	return r, p.err
}

// unwrapNull undoes the clients' "null" for an empty value (written for Java's console).
func unwrapNull(s string) string {
	if s == "null" {
		return ""
	}
	return s
}

// traceFieldParser parses numbers and booleans, keeping the first error.
type traceFieldParser struct{ err error }

func (p *traceFieldParser) int64(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("field %q is not an integer", s)
	}
	return n
}

func (p *traceFieldParser) int(s string) int {
	n := p.int64(s)
	if (n > 1<<31-1 || n < -1<<31) && p.err == nil {
		p.err = fmt.Errorf("field %q is out of range", s)
	}
	return int(n)
}

func (p *traceFieldParser) bool(s string) bool {
	b, err := strconv.ParseBool(s)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("field %q is not true or false", s)
	}
	return b
}
