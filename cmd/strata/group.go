package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/remoting"
)

func groupCmd() *cobra.Command {
	return parent("group", "consumer groups: list, describe offsets and lag, reset to a time or offset, delete", "",
		leaf("list", "every consumer group with its total lag and connected consumers", "", nil, groupListFlags),
		leaf("describe", "a group's offsets, lag and the tier each lies in, queue by queue", "", nil, groupDescribeFlags),
		leaf("reset", "move a group's offsets on a topic to a time, an offset, the oldest or the newest", `
Moves a consumer group's committed offsets on a topic and tells its connected consumers to
restart from there. --to takes oldest, newest, a queue offset or a time: `+timeForms+`.`, nil, groupResetFlags),
		leaf("delete", "delete a group's subscription config and its committed offsets", "", nil, groupDeleteFlags),
	)
}

func groupListFlags(fs *pflag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print JSON (same as --format json)")
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		c, ctx, cancel, err := dialNamesrv(ctx, namesrvAddr())
		if err != nil {
			return err
		}
		defer cancel()
		defer c.Close()
		names, err := groupNames(ctx, c)
		if err != nil {
			return err
		}
		type row struct {
			Group   string `json:"group"`
			Topics  int    `json:"topics"`
			Lag     int64  `json:"lag"`
			Clients int    `json:"clients"`
		}
		rows := []row{}
		for _, g := range names {
			stats, err := c.ConsumeStats(ctx, g, "")
			if err != nil {
				return err
			}
			r := row{Group: g}
			topics := map[string]bool{}
			clients := map[string]int{}
			for _, s := range stats {
				topics[s.Topic] = true
				clients[s.BrokerName] = s.Clients
				if s.ConsumerOffset >= 0 {
					r.Lag += s.Lag
				}
			}
			for _, n := range clients {
				r.Clients += n
			}
			r.Topics = len(topics)
			rows = append(rows, r)
		}
		if jsonOutput(*asJSON) {
			return printJSON(stdout, rows)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tTOPICS\tLAG\tCLIENTS")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", r.Group, r.Topics, r.Lag, r.Clients)
		}
		return tw.Flush()
	}
}

// groupNames lists the subscription groups every broker group knows (GET_ALL_SUBSCRIPTIONGROUP_CONFIG).
func groupNames(ctx context.Context, c *client.Client) ([]string, error) {
	brokers, err := c.BrokerGroups(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for name, addr := range brokers {
		resp, err := adminInvoke(ctx, addr, remoting.CodeGetAllSubscriptionGroupConfig, nil)
		if err != nil {
			return nil, fmt.Errorf("groups of broker %s: %w", name, err)
		}
		var body struct {
			Table map[string]json.RawMessage `json:"subscriptionGroupTable"`
		}
		if err := json.Unmarshal(resp.Body, &body); err != nil {
			return nil, fmt.Errorf("groups of broker %s: bad JSON: %w", name, err)
		}
		for g := range body.Table {
			seen[g] = true
		}
	}
	out := make([]string, 0, len(seen))
	for g := range seen {
		out = append(out, g)
	}
	sort.Strings(out)
	return out, nil
}

func groupDeleteFlags(fs *pflag.FlagSet) runFunc {
	group := fs.String("group", "", "consumer group (required)")
	keep := fs.Bool("keep-offsets", false, "delete only the subscription config, keep the committed offsets")
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		if *group == "" {
			return usageError{errors.New("--group is required (see `strata group delete -h`)")}
		}
		c, ctx, cancel, err := dialNamesrv(ctx, namesrvAddr())
		if err != nil {
			return err
		}
		defer cancel()
		defer c.Close()
		brokers, err := c.BrokerGroups(ctx)
		if err != nil {
			return err
		}
		for name, addr := range brokers {
			ext := remoting.ExtFields{"groupName": *group}
			ext.SetBool("cleanOffset", !*keep)
			if _, err := adminInvoke(ctx, addr, remoting.CodeDeleteSubscriptionGroup, ext); err != nil {
				return fmt.Errorf("delete group %s on broker %s: %w", *group, name, err)
			}
		}
		what := "its subscription config and committed offsets"
		if *keep {
			what = "its subscription config (offsets kept)"
		}
		fmt.Fprintf(stdout, "deleted group %s: %s on %d broker groups\n", *group, what, len(brokers))
		return nil
	}
}

func groupResetFlags(fs *pflag.FlagSet) runFunc {
	group := fs.String("group", "", "consumer group (required)")
	topic := fs.String("topic", "", "topic (required)")
	to := fs.String("to", "", "oldest, newest, a queue offset or a time (see -h)")
	toTime := fs.String("to-time", "", "move to the first message stored at or after this time (as --to)")
	toOffset := fs.Int64("to-offset", -1, "move to this queue offset (clamped to what the queues hold)")
	queue := fs.Int("queue", -1, "only this queue id (default: every queue)")
	keepNewer := fs.Bool("keep-newer", false, "leave a queue alone when its offset is already older than the target")
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		if *group == "" || *topic == "" {
			return usageError{errors.New("--group and --topic are required (see `strata group reset -h`)")}
		}
		given := 0
		for _, set := range []bool{*to != "", *toTime != "", *toOffset >= 0} {
			if set {
				given++
			}
		}
		if given != 1 {
			return usageError{errors.New("give exactly one of --to (oldest, newest, an offset or a time), --to-time TIME or --to-offset N")}
		}
		req := client.ResetRequest{Group: *group, Topic: *topic, TimestampMs: -1, Offset: *toOffset,
			QueueID: int32(*queue), KeepNewer: *keepNewer}
		switch {
		case *toTime != "":
			t, err := parseTime(*toTime, time.Now())
			if err != nil {
				return usageError{fmt.Errorf("--to-time: %w", err)}
			}
			req.TimestampMs = t.UnixMilli()
		case *to != "":
			p, err := parsePosition(*to, time.Now())
			if err != nil {
				return usageError{fmt.Errorf("--to: %w", err)}
			}
			switch p.kind {
			case posOldest:
				req.Offset = 0
			case posNewest:
				req.Offset = math.MaxInt64
			case posOffset:
				req.Offset = p.n
			case posTime:
				req.TimestampMs = p.timeMs
			case posLast:
				return usageError{errors.New("--to: -N (last N) is for consume --from; give oldest, newest, an offset or a time")}
			}
		}
		c, ctx, cancel, err := dialNamesrv(ctx, namesrvAddr())
		if err != nil {
			return err
		}
		defer cancel()
		defer c.Close()
		offs, err := c.ResetOffset(ctx, req)
		if err != nil {
			return err
		}
		if len(offs) == 0 {
			return fmt.Errorf("no queue of topic %s matched (see `strata topic describe --topic %s`)", *topic, *topic)
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
}

func groupDescribeFlags(fs *pflag.FlagSet) runFunc {
	group := fs.String("group", "", "consumer group (required)")
	topic := fs.String("topic", "", "only this topic (default: every topic of the group)")
	asJSON := fs.Bool("json", false, "print JSON (same as --format json)")
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		if *group == "" {
			return usageError{errors.New("--group is required (see `strata group describe -h`; `strata group list` names them)")}
		}
		c, ctx, cancel, err := dialNamesrv(ctx, namesrvAddr())
		if err != nil {
			return err
		}
		defer cancel()
		defer c.Close()
		stats, err := c.ConsumeStats(ctx, *group, *topic)
		if err != nil {
			return err
		}
		if jsonOutput(*asJSON) {
			if stats == nil {
				stats = []client.QueueStats{}
			}
			return printJSON(stdout, stats)
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
