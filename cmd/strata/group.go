package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/stratamq/strata/broker/client"
)

// runGroup serves `strata group reset|describe`.
func runGroup(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: strata group reset|describe --group G [flags]")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("group "+sub, flag.ContinueOnError)
	namesrv := fs.String("namesrv", defaultNamesrv, "name-server address")
	group := fs.String("group", "", "consumer group")
	topic := fs.String("topic", "", "topic (reset: required; describe: default every topic of the group)")
	toTime := fs.String("to-time", "", "reset: move to the first message stored at or after this RFC 3339 time")
	toOffset := fs.Int64("to-offset", -1, "reset: move to this queue offset (clamped to what the queues hold)")
	queue := fs.Int("queue", -1, "reset: only this queue id (default: every queue)")
	keepNewer := fs.Bool("keep-newer", false, "reset: leave a queue alone when its offset is already older than the target")
	asJSON := fs.Bool("json", false, "describe: print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *group == "" {
		return fmt.Errorf("group %s: --group is required", sub)
	}
	switch sub {
	case "reset":
		if *topic == "" {
			return errors.New("group reset: --topic is required")
		}
		if (*toTime == "") == (*toOffset < 0) {
			return errors.New("group reset: give exactly one of --to-time RFC3339 or --to-offset N")
		}
	case "describe":
	default:
		return fmt.Errorf("group: unknown subcommand %q; want reset or describe", sub)
	}
	req := client.ResetRequest{Group: *group, Topic: *topic, TimestampMs: -1, Offset: *toOffset,
		QueueID: int32(*queue), KeepNewer: *keepNewer}
	if *toTime != "" {
		t, err := time.Parse(time.RFC3339Nano, *toTime)
		if err != nil {
			return fmt.Errorf("group reset: --to-time %q is not RFC 3339 (e.g. 2024-05-01T12:00:00Z): %w", *toTime, err)
		}
		req.TimestampMs = t.UnixMilli()
	}
	c, ctx, cancel, err := dialNamesrv(ctx, *namesrv)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()

	if sub == "reset" {
		offs, err := c.ResetOffset(ctx, req)
		if err != nil {
			return err
		}
		if len(offs) == 0 {
			return fmt.Errorf("group reset: no queue of topic %s matched", *topic)
		}
		stats, err := c.ConsumeStats(ctx, *group, *topic)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC\tBROKER\tQUEUE\tNEW OFFSET\tTIER")
		for _, s := range stats {
			off, ok := offs[client.Queue{Topic: s.Topic, BrokerName: s.BrokerName, QueueID: s.QueueID, Addr: addrOf(offs, s)}]
			if !ok {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", s.Topic, s.BrokerName, s.QueueID, off, s.Tier)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "reset %d queues of group %s; connected consumers were told to restart from there\n", len(offs), *group)
		return nil
	}

	stats, err := c.ConsumeStats(ctx, *group, *topic)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(stats)
	}
	if len(stats) == 0 {
		fmt.Fprintf(stdout, "group %s has no offsets and no connected consumers\n", *group)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tBROKER\tQUEUE\tMIN\tHOT MIN\tMAX\tOFFSET\tLAG\tTIER\tCLIENTS")
	var lag int64
	for _, s := range stats {
		off, l := "—", "—"
		if s.ConsumerOffset >= 0 {
			off, l = fmt.Sprint(s.ConsumerOffset), fmt.Sprint(s.Lag)
			lag += s.Lag
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\n", s.Topic, s.BrokerName, s.QueueID,
			s.MinOffset, s.HotMinOffset, s.MaxOffset, off, l, s.Tier, s.Clients)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "total lag %d\n", lag)
	return nil
}

// addrOf finds the address ResetOffset recorded for the stats row's queue.
func addrOf(offs map[client.Queue]int64, s client.QueueStats) string {
	for q := range offs {
		if q.Topic == s.Topic && q.BrokerName == s.BrokerName && q.QueueID == s.QueueID {
			return q.Addr
		}
	}
	return ""
}
