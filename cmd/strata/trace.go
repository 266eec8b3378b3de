package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/query"
)

const traceUsage = `usage: strata trace (--id MSGID | --key KEY) [flags]

Prints a message's trace: its publish record (producer group and host, send time and cost,
broker) and each consumer group's deliveries and results, read from RMQ_SYS_TRACE_TOPIC in
either tier. Clients write these records when tracing is on (the Go client's WithTrace, Java's
enableMsgTrace). --id is the message id the producer got (the unique key); --key finds every
traced message whose KEYS hold KEY.
`

func traceCmd() *cobra.Command {
	return leaf("trace", "a message's trace: publish and each consumer group's deliveries (--id or --key)", traceUsage, nil, traceFlags)
}

func traceFlags(fs *pflag.FlagSet) runFunc {
	id := fs.String("id", "", "message id (unique key) to trace")
	key := fs.String("key", "", "message key to trace")
	topic := fs.String("trace-topic", query.TraceTopic, "the trace topic clients write to")
	asJSON := fs.Bool("json", false, "print one JSON object per trace record")
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		if (*id == "") == (*key == "") {
			return errors.New("trace: give exactly one of --id and --key")
		}
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		c, err := dialClient(ctx, namesrvAddr())
		if err != nil {
			return err
		}
		defer c.Close()
		lookup := *id
		if lookup == "" {
			lookup = *key
		}
		recs, err := traceRecords(ctx, c, *topic, lookup)
		if err != nil {
			return err
		}
		if *key != "" {
			// The records found by key name the traced messages; their deliveries are keyed by id.
			ids := map[string]bool{}
			for _, r := range recs {
				if containsToken(r.Keys, *key) {
					ids[r.MsgID] = true
				}
			}
			recs = recs[:0]
			for mid := range ids {
				more, err := traceRecords(ctx, c, *topic, mid)
				if err != nil {
					return err
				}
				recs = append(recs, more...)
			}
		} else {
			kept := recs[:0]
			for _, r := range recs {
				if r.MsgID == *id {
					kept = append(kept, r)
				}
			}
			recs = kept
		}
		if len(recs) == 0 {
			return fmt.Errorf("no trace of %s in %s; is tracing on in the producer and consumers (WithTrace)?", lookup, *topic)
		}
		sortTrace(recs)
		if jsonOutput(*asJSON) {
			enc := json.NewEncoder(stdout)
			for _, r := range recs {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
			return nil
		}
		return printTrace(stdout, recs)
	}
}

// traceRecords finds the trace messages keyed by lookup and decodes their records.
func traceRecords(ctx context.Context, c *client.Client, topic, lookup string) ([]query.TraceRecord, error) {
	msgs, err := queryByKey(ctx, c, topic, lookup, false, 0, math.MaxInt64, 256)
	if errors.Is(err, client.ErrTopicNotFound) {
		return nil, fmt.Errorf("trace topic %s does not exist: no client has traced a message here (is the broker's trace topic enabled?)", topic)
	}
	if err != nil {
		return nil, err
	}
	var out []query.TraceRecord
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[m.OffsetMsgID()] {
			continue
		}
		seen[m.OffsetMsgID()] = true
		recs, err := query.ParseTrace(m.Body)
		if err != nil {
			return nil, fmt.Errorf("trace message %s: %w", m.OffsetMsgID(), err)
		}
		out = append(out, recs...)
	}
	return out, nil
}

func containsToken(keys, k string) bool {
	for _, t := range strings.Fields(keys) {
		if t == k {
			return true
		}
	}
	return false
}

// sortTrace orders records by message, then publish before deliveries, then time.
func sortTrace(recs []query.TraceRecord) {
	rank := map[string]int{query.TracePub: 0, query.TraceSubBefore: 1, query.TraceSubAfter: 2}
	sort.SliceStable(recs, func(i, j int) bool {
		a, b := recs[i], recs[j]
		if a.MsgID != b.MsgID {
			return a.MsgID < b.MsgID
		}
		if a.Time != b.Time {
			return a.Time < b.Time
		}
		return rank[a.Type] < rank[b.Type]
	})
}

func printTrace(w io.Writer, recs []query.TraceRecord) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	// A delivery is a SubBefore (received) and its SubAfter (consumed), joined by request id.
	after := map[string]query.TraceRecord{}
	for _, r := range recs {
		if r.Type == query.TraceSubAfter {
			after[r.RequestID+"/"+r.MsgID] = r
		}
	}
	last := ""
	for _, r := range recs {
		if r.MsgID != last {
			fmt.Fprintf(tw, "message %s\n", r.MsgID)
			last = r.MsgID
		}
		at := time.UnixMilli(r.Time).UTC().Format(time.RFC3339Nano)
		switch r.Type {
		case query.TracePub:
			fmt.Fprintf(tw, "  publish\t%s\tgroup %s\thost %s\ttopic %s\ttags %s\tkeys %s\tbroker %s\tcost %dms\tsuccess %v\n",
				at, r.Group, r.ClientHost, r.Topic, r.Tags, r.Keys, r.StoreHost, r.CostMs, r.Success)
		case query.TraceSubBefore:
			res := "no result recorded"
			if a, ok := after[r.RequestID+"/"+r.MsgID]; ok {
				res = fmt.Sprintf("consumed in %dms, success %v", a.CostMs, a.Success)
			}
			fmt.Fprintf(tw, "  deliver\t%s\tgroup %s\thost %s\tretry %d\t%s\n", at, r.Group, r.ClientHost, r.RetryTimes, res)
		}
	}
	return tw.Flush()
}
