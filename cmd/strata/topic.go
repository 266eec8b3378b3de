package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/stratamq/strata/broker/client"
)

const defaultNamesrv = "127.0.0.1:9876"

func dialNamesrv(ctx context.Context, addr string) (*client.Client, context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, err := client.Dial(ctx, addr)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return c, ctx, cancel, nil
}

func runTopic(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: strata topic create|list|describe [flags]")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("topic "+sub, flag.ContinueOnError)
	namesrv := fs.String("namesrv", defaultNamesrv, "name-server address")
	topic := fs.String("topic", "", "topic name")
	queues := fs.Int("queues", 4, "queues of the topic across all broker groups (create)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sub != "list" && *topic == "" {
		return fmt.Errorf("topic %s: --topic is required", sub)
	}
	c, ctx, cancel, err := dialNamesrv(ctx, *namesrv)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	switch sub {
	case "create":
		if *queues < 1 || *queues > 1024 {
			return fmt.Errorf("--queues %d: want 1..1024", *queues)
		}
		if err := c.CreateTopic(ctx, *topic, *queues); err != nil {
			return fmt.Errorf("create topic %s: %w", *topic, err)
		}
		fmt.Fprintf(stdout, "created topic %s with %d queues\n", *topic, *queues)
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
		return fmt.Errorf("unknown topic subcommand %q: want create, list or describe", sub)
	}
	return nil
}
