package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stratamq/strata/broker/client"
)

const defaultNamesrv = "127.0.0.1:9876"

func dialNamesrv(ctx context.Context, addr string) (*client.Client, context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := dialClient(ctx, addr)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return c, ctx, cancel, nil
}

func runTopic(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: strata topic create|update|list|describe [flags]")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("topic "+sub, flag.ContinueOnError)
	namesrv := fs.String("namesrv", defaultNamesrv, "name-server address")
	topic := fs.String("topic", "", "topic name")
	queues := fs.Int("queues", 4, "queues per broker group (create, update)")
	groupList := fs.String("groups", "", "comma-separated broker groups to place the topic on (create: default every live group; update: default the groups it is on)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sub != "list" && *topic == "" {
		return fmt.Errorf("topic %s: --topic is required", sub)
	}
	var groups []string
	if *groupList != "" {
		groups = strings.Split(*groupList, ",")
	}
	c, ctx, cancel, err := dialNamesrv(ctx, *namesrv)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	switch sub {
	case "create", "update":
		if *queues < 1 || *queues > 1024 {
			return fmt.Errorf("--queues %d: want 1..1024", *queues)
		}
		_, rerr := c.Route(ctx, *topic)
		exists := rerr == nil
		if rerr != nil && !errors.Is(rerr, client.ErrTopicNotFound) {
			return rerr
		}
		if sub == "create" && exists {
			return fmt.Errorf("topic %s already exists; change its queues with `strata topic update --topic %s --queues N`", *topic, *topic)
		}
		if sub == "update" && !exists {
			return fmt.Errorf("topic %s does not exist; create it with `strata topic create --topic %s`", *topic, *topic)
		}
		if err := c.CreateTopic(ctx, *topic, *queues, groups...); err != nil {
			return fmt.Errorf("%s topic %s: %w", sub, *topic, err)
		}
		if sub == "create" {
			fmt.Fprintf(stdout, "created topic %s with %d queues per broker group\n", *topic, *queues)
		} else {
			fmt.Fprintf(stdout, "updated topic %s to %d queues per broker group (a shrink stops writes to the removed queues now and stops reads once consumers drained them)\n", *topic, *queues)
		}
	case "list":
		topics, err := c.Topics(ctx)
		if err != nil {
			return err
		}
		for _, t := range topics {
			fmt.Fprintln(stdout, t)
		}
	case "describe":
		route, err := c.Route(ctx, *topic)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "topic %s\n", *topic)
		fmt.Fprintln(tw, "BROKER\tADDRESS\tQUEUE\tMIN OFFSET\tMAX OFFSET")
		for _, q := range route.Queues(*topic) {
			minOff, err1 := c.MinOffset(ctx, q)
			maxOff, err2 := c.MaxOffset(ctx, q)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("offsets of queue %d: %w", q.QueueID, err)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", q.BrokerName, q.Addr, q.QueueID, minOff, maxOff)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("unknown topic subcommand %q: want create, update, list or describe", sub)
	}
	return nil
}
