package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/remoting"
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

func topicCmd() *cobra.Command {
	sub := func(name, short string) *cobra.Command {
		return leaf(name, short, "", nil, func(fs *pflag.FlagSet) runFunc { return topicFlags(name, fs) })
	}
	return parent("topic", "create, update, delete, list or describe topics", "",
		sub("create", "create a topic (refuses an existing one unless --update)"),
		sub("update", "change an existing topic's queue count or broker groups"),
		sub("delete", "delete a topic and its messages in both tiers, and the groups' offsets of it"),
		sub("list", "list every topic"),
		sub("describe", "a topic's queues: broker group, address, min and max offsets"),
	)
}

// topicFlags declares the flags of `topic <sub>` and returns its run function.
func topicFlags(sub string, fs *pflag.FlagSet) runFunc {
	var topic, groupList string
	var queues int
	var update, asJSON bool
	if sub != "list" {
		fs.StringVar(&topic, "topic", "", "topic name (required)")
	}
	if sub == "create" || sub == "update" {
		fs.IntVar(&queues, "queues", 4, "queues per broker group")
		fs.StringVar(&groupList, "groups", "", "comma-separated broker groups to place the topic on (create: default every live group; update: default the groups it is on)")
	}
	if sub == "create" {
		fs.BoolVar(&update, "update", false, "if the topic exists, update it to these settings instead of refusing")
	}
	if sub == "list" || sub == "describe" {
		fs.BoolVar(&asJSON, "json", false, "print JSON (same as --format json)")
	}
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		if sub != "list" && topic == "" {
			return usageError{fmt.Errorf("--topic is required (see `strata topic %s -h`)", sub)}
		}
		var groups []string
		if groupList != "" {
			groups = strings.Split(groupList, ",")
		}
		c, ctx, cancel, err := dialNamesrv(ctx, namesrvAddr())
		if err != nil {
			return err
		}
		defer cancel()
		defer c.Close()
		switch sub {
		case "create", "update":
			return createTopic(ctx, c, stdout, sub, topic, queues, groups, update)
		case "delete":
			if _, err := c.Route(ctx, topic); err != nil {
				if errors.Is(err, client.ErrTopicNotFound) {
					return fmt.Errorf("topic %s does not exist (see `strata topic list`)", topic)
				}
				return err
			}
			if _, err := adminInvoke(ctx, namesrvAddr(), remoting.CodeDeleteTopicInNameSrv, remoting.ExtFields{"topic": topic}); err != nil {
				return fmt.Errorf("delete topic %s: %w", topic, err)
			}
			fmt.Fprintf(stdout, "deleted topic %s: every broker group drops its messages (hot and cold) and the groups' offsets of it\n", topic)
			return nil
		case "list":
			topics, err := c.Topics(ctx)
			if err != nil {
				return err
			}
			if jsonOutput(asJSON) {
				return printJSON(stdout, topics)
			}
			for _, t := range topics {
				fmt.Fprintln(stdout, t)
			}
			return nil
		default: // describe
			return describeTopic(ctx, c, stdout, topic, jsonOutput(asJSON))
		}
	}
}

func createTopic(ctx context.Context, c *client.Client, stdout io.Writer, sub, topic string, queues int, groups []string, update bool) error {
	if queues < 1 || queues > 1024 {
		return usageError{fmt.Errorf("--queues %d: want 1..1024", queues)}
	}
	_, rerr := c.Route(ctx, topic)
	exists := rerr == nil
	if rerr != nil && !errors.Is(rerr, client.ErrTopicNotFound) {
		return rerr
	}
	if sub == "create" && exists && !update {
		return fmt.Errorf("topic %s already exists and was left as it is; change it with `strata topic update --topic %s --queues N` (or create --update)", topic, topic)
	}
	if sub == "update" && !exists {
		return fmt.Errorf("topic %s does not exist; create it with `strata topic create --topic %s`", topic, topic)
	}
	if err := c.CreateTopic(ctx, topic, queues, groups...); err != nil {
		return fmt.Errorf("%s topic %s: %w", sub, topic, err)
	}
	if !exists {
		fmt.Fprintf(stdout, "created topic %s with %d queues per broker group\n", topic, queues)
	} else {
		fmt.Fprintf(stdout, "updated topic %s to %d queues per broker group (a shrink stops writes to the removed queues now and stops reads once consumers drained them)\n", topic, queues)
	}
	return nil
}

// topicQueue is one row of `topic describe`.
type topicQueue struct {
	Broker    string `json:"broker"`
	Address   string `json:"address"`
	Queue     int32  `json:"queue"`
	MinOffset int64  `json:"minOffset"`
	MaxOffset int64  `json:"maxOffset"`
}

// routeOf is c.Route, with what to do when the topic does not exist.
func routeOf(ctx context.Context, c *client.Client, topic string) (client.Route, error) {
	r, err := c.Route(ctx, topic)
	if errors.Is(err, client.ErrTopicNotFound) {
		return r, fmt.Errorf("topic %s does not exist: `strata topic list` shows the topics, `strata topic create --topic %s` creates it", topic, topic)
	}
	return r, err
}

func describeTopic(ctx context.Context, c *client.Client, stdout io.Writer, topic string, asJSON bool) error {
	route, err := routeOf(ctx, c, topic)
	if err != nil {
		return err
	}
	var rows []topicQueue
	for _, q := range route.Queues(topic) {
		minOff, err1 := c.MinOffset(ctx, q)
		maxOff, err2 := c.MaxOffset(ctx, q)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("offsets of queue %d: %w", q.QueueID, err)
		}
		rows = append(rows, topicQueue{q.BrokerName, q.Addr, q.QueueID, minOff, maxOff})
	}
	if asJSON {
		return printJSON(stdout, map[string]any{"topic": topic, "queues": rows})
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "topic %s\n", topic)
	fmt.Fprintln(tw, "BROKER\tADDRESS\tQUEUE\tMIN OFFSET\tMAX OFFSET")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", r.Broker, r.Address, r.Queue, r.MinOffset, r.MaxOffset)
	}
	return tw.Flush()
}
