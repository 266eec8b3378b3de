package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/message"
)

func runConsume(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	namesrv := fs.String("namesrv", defaultNamesrv, "name-server address")
	topic := fs.String("topic", "", "topic to read")
	queue := fs.Int("queue", -1, "read only this queue id (default: every queue)")
	fromOffset := fs.Int64("from-offset", -1, "start at this queue offset (default: the oldest held)")
	fromTime := fs.String("from-time", "", "start at the first message stored at or after this RFC 3339 time")
	follow := fs.Bool("follow", false, "keep waiting for new messages")
	count := fs.Int("count", 0, "stop after this many messages (0: no limit)")
	tags := fs.String("tag", "*", "tag filter, e.g. \"TagA || TagB\"")
	where := fs.String("where", "", "SQL92 property filter, e.g. \"a BETWEEN 10 AND 20 AND color = 'red'\" (the broker evaluates it)")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *topic == "" {
		return errors.New("--topic is required")
	}
	exprType, expr, err := subscriptionFlags(*tags, *where)
	if err != nil {
		return err
	}
	if *fromOffset >= 0 && *fromTime != "" {
		return errors.New("--from-offset and --from-time exclude each other")
	}
	var fromMillis int64 = -1
	if *fromTime != "" {
		t, err := time.Parse(time.RFC3339Nano, *fromTime)
		if err != nil {
			return fmt.Errorf("--from-time %q: want RFC 3339, e.g. 2026-11-26T10:00:00Z", *fromTime)
		}
		fromMillis = t.UnixMilli()
	}
	c, err := dialClient(ctx, *namesrv)
	if err != nil {
		return err
	}
	defer c.Close()
	route, err := c.Route(ctx, *topic)
	if err != nil {
		return err
	}
	var queues []client.Queue
	for _, q := range route.Queues(*topic) {
		if *queue < 0 || int(q.QueueID) == *queue {
			queues = append(queues, q)
		}
	}
	if len(queues) == 0 {
		return fmt.Errorf("topic %s has no queue %d", *topic, *queue)
	}
	// Position every queue, and note where each ends now so a non-following read stops.
	next := make([]int64, len(queues))
	end := make([]int64, len(queues))
	for i, q := range queues {
		switch {
		case fromMillis >= 0:
			next[i], err = c.OffsetForTime(ctx, q, fromMillis)
		case *fromOffset >= 0:
			next[i] = *fromOffset
		default:
			next[i], err = c.MinOffset(ctx, q)
		}
		if err != nil {
			return fmt.Errorf("position queue %d: %w", q.QueueID, err)
		}
		if end[i], err = c.MaxOffset(ctx, q); err != nil {
			return err
		}
	}
	printed := 0
	enc := json.NewEncoder(stdout)
	for {
		progressed := false
		for i, q := range queues {
			if !*follow && next[i] >= end[i] {
				continue
			}
			var suspend int64
			if *follow && len(queues) == 1 {
				suspend = 15000
			}
			res, err := c.PullFilter(ctx, "strata-cli-consume", q, next[i], 64, suspend, exprType, expr)
			if err != nil {
				return err
			}
			if res.NextOffset > next[i] {
				progressed = true
			}
			next[i] = res.NextOffset
			for _, m := range res.Messages {
				if err := printMessage(stdout, enc, *asJSON, m); err != nil {
					return err
				}
				printed++
				if *count > 0 && printed >= *count {
					return nil
				}
			}
		}
		done := true
		for i := range queues {
			done = done && next[i] >= end[i]
		}
		if !*follow && done {
			return nil
		}
		if !progressed {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// subscriptionFlags turns --tag and --where into one subscription: a pull carries one
// expression, so they exclude each other (the tag is a property in SQL92). --where is
// compiled here so a mistake is reported, with its column, before anything is dialled.
func subscriptionFlags(tags, where string) (exprType, expr string, err error) {
	if where == "" {
		return filter.TypeTag, tags, nil
	}
	if t := strings.TrimSpace(tags); t != "" && t != "*" {
		var quoted []string
		for _, tag := range strings.Split(t, "||") {
			if tag = strings.TrimSpace(tag); tag != "" {
				quoted = append(quoted, "'"+strings.ReplaceAll(tag, "'", "''")+"'")
			}
		}
		return "", "", fmt.Errorf("--tag and --where exclude each other; filter on the tag inside --where: --where \"TAGS IN (%s) AND (%s)\"", strings.Join(quoted, ", "), where)
	}
	if _, err := filter.Compile(where); err != nil {
		return "", "", fmt.Errorf("--where: %w", err)
	}
	return filter.TypeSQL92, where, nil
}

func printMessage(w io.Writer, enc *json.Encoder, asJSON bool, m *message.Message) error {
	if asJSON {
		return enc.Encode(map[string]any{
			"topic": m.Topic, "queueId": m.QueueID, "queueOffset": m.QueueOffset,
			"msgId": m.OffsetMsgID(), "uniqKey": m.UniqKey(), "tags": m.Tags(), "keys": m.Keys(),
			"storeTime":  time.UnixMilli(m.StoreTimestamp).UTC().Format(time.RFC3339Nano),
			"properties": m.Properties, "body": string(m.Body),
		})
	}
	_, err := fmt.Fprintf(w, "queue=%d offset=%d tags=%s %s\n", m.QueueID, m.QueueOffset, m.Tags(), m.Body)
	return err
}
