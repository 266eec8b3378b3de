package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

func consumeCmd() *cobra.Command {
	return leaf("consume", "print a topic's messages from a position, optionally following, optionally as a group", `
Prints a topic's messages. --from picks where each queue starts: `+positionForms+`.
Without --from it starts at the oldest message held.

With --group G it reads as consumer group G: a queue with a committed offset starts there
(--from then applies only to queues the group has not committed yet), and the offsets it
reads past are committed as it goes, so the next run, or any RocketMQ consumer of G, carries
on where it stopped. `+"`strata group describe --group G`"+` shows them; `+"`strata group reset`"+` moves them.`, nil, consumeFlags)
}

// consumeOptions are the flags of `strata consume`.
type consumeOptions struct {
	topic, group, from, fromTime, tags, where string
	queue, count                              int
	fromOffset                                int64
	follow, asJSON                            bool
}

func consumeFlags(fs *pflag.FlagSet) runFunc {
	o := &consumeOptions{}
	fs.StringVar(&o.topic, "topic", "", "topic to read (required)")
	fs.StringVar(&o.group, "group", "", "read as this consumer group: start at its committed offsets and commit as it goes")
	fs.StringVar(&o.from, "from", "", "where to start: oldest, newest, -N (last N per queue), an offset or a time (see -h)")
	fs.IntVar(&o.queue, "queue", -1, "read only this queue id (default: every queue)")
	fs.Int64Var(&o.fromOffset, "from-offset", -1, "start at this queue offset (as --from N)")
	fs.StringVar(&o.fromTime, "from-time", "", "start at the first message stored at or after this time (as --from TIME)")
	fs.BoolVarP(&o.follow, "follow", "f", false, "keep waiting for new messages")
	fs.IntVarP(&o.count, "count", "n", 0, "stop after this many messages (0: no limit)")
	fs.StringVar(&o.tags, "tag", "*", "tag filter, e.g. \"TagA || TagB\"")
	fs.StringVar(&o.where, "where", "", "SQL92 property filter, e.g. \"a BETWEEN 10 AND 20 AND color = 'red'\" (the broker evaluates it)")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object per message (same as --format json)")
	return func(ctx context.Context, _ []string, stdout io.Writer) error { return runConsume(ctx, o, stdout) }
}

// startPosition folds --from, --from-offset and --from-time into one position.
func (o *consumeOptions) startPosition(now time.Time) (position, error) {
	given := 0
	for _, set := range []bool{o.from != "", o.fromOffset >= 0, o.fromTime != ""} {
		if set {
			given++
		}
	}
	switch {
	case given > 1:
		return position{}, usageError{errors.New("--from, --from-offset and --from-time exclude each other")}
	case o.fromOffset >= 0:
		return position{kind: posOffset, n: o.fromOffset}, nil
	case o.fromTime != "":
		t, err := parseTime(o.fromTime, now)
		if err != nil {
			return position{}, usageError{fmt.Errorf("--from-time: %w", err)}
		}
		return position{kind: posTime, timeMs: t.UnixMilli()}, nil
	case o.from != "":
		p, err := parsePosition(o.from, now)
		if err != nil {
			return position{}, usageError{fmt.Errorf("--from: %w", err)}
		}
		return p, nil
	}
	return position{kind: posOldest}, nil
}

// seek finds the offset p names in queue q, within [minOff, maxOff].
func seek(ctx context.Context, c *client.Client, q client.Queue, p position) (int64, error) {
	minOff, err := c.MinOffset(ctx, q)
	if err != nil {
		return 0, err
	}
	maxOff, err := c.MaxOffset(ctx, q)
	if err != nil {
		return 0, err
	}
	switch p.kind {
	case posNewest:
		return maxOff, nil
	case posLast:
		return max(minOff, maxOff-p.n), nil
	case posOffset:
		return min(max(p.n, minOff), maxOff), nil
	case posTime:
		return c.OffsetForTime(ctx, q, p.timeMs)
	}
	return minOff, nil
}

func runConsume(ctx context.Context, o *consumeOptions, stdout io.Writer) error {
	if o.topic == "" {
		return usageError{errors.New("--topic is required (see `strata consume -h`)")}
	}
	exprType, expr, err := subscriptionFlags(o.tags, o.where)
	if err != nil {
		return usageError{err}
	}
	start, err := o.startPosition(time.Now())
	if err != nil {
		return err
	}
	c, err := dialClient(ctx, namesrvAddr())
	if err != nil {
		return err
	}
	defer c.Close()
	route, err := routeOf(ctx, c, o.topic)
	if err != nil {
		return err
	}
	var queues []client.Queue
	for _, q := range route.Queues(o.topic) {
		if o.queue < 0 || int(q.QueueID) == o.queue {
			queues = append(queues, q)
		}
	}
	if len(queues) == 0 {
		return fmt.Errorf("topic %s has no queue %d (see `strata topic describe --topic %s`)", o.topic, o.queue, o.topic)
	}
	committed := map[client.Queue]int64{}
	if o.group != "" {
		// Join the group as a RocketMQ pull consumer does: the brokers create its config (so
		// `group list` shows it) and count this connection among its clients while it reads.
		hb, err := joinGroup(ctx, queues, o.group, o.topic, exprType, expr)
		if err != nil {
			return err
		}
		defer hb()
		stats, err := c.ConsumeStats(ctx, o.group, o.topic)
		if err != nil {
			return fmt.Errorf("committed offsets of group %s: %w", o.group, err)
		}
		for _, s := range stats {
			if s.ConsumerOffset >= 0 {
				for _, q := range queues {
					if q.BrokerName == s.BrokerName && q.QueueID == s.QueueID {
						committed[q] = s.ConsumerOffset
					}
				}
			}
		}
	}
	// Position every queue, and note where each ends now so a non-following read stops.
	next := make([]int64, len(queues))
	end := make([]int64, len(queues))
	for i, q := range queues {
		if off, ok := committed[q]; ok {
			next[i] = off
		} else if next[i], err = seek(ctx, c, q, start); err != nil {
			return fmt.Errorf("position queue %d: %w", q.QueueID, err)
		}
		if end[i], err = c.MaxOffset(ctx, q); err != nil {
			return err
		}
	}
	pullGroup := cmpOr(o.group, "strata-cli-consume")
	commit := func(q client.Queue, off int64) error {
		if o.group == "" {
			return nil
		}
		ext := remoting.ExtFields{"consumerGroup": o.group, "topic": q.Topic}
		ext.SetInt64("queueId", int64(q.QueueID))
		ext.SetInt64("commitOffset", off)
		if _, err := adminInvoke(ctx, q.Addr, remoting.CodeUpdateConsumerOffset, ext); err != nil {
			return fmt.Errorf("commit offset %d of group %s on queue %d: %w", off, o.group, q.QueueID, err)
		}
		return nil
	}
	asJSON := jsonOutput(o.asJSON)
	printed := 0
	enc := json.NewEncoder(stdout)
	for {
		progressed := false
		for i, q := range queues {
			if !o.follow && next[i] >= end[i] {
				continue
			}
			var suspend int64
			if o.follow && len(queues) == 1 {
				suspend = 15000
			}
			res, err := c.PullFilter(ctx, pullGroup, q, next[i], 64, suspend, exprType, expr)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			moved := res.NextOffset > next[i]
			for _, m := range res.Messages {
				if err := printMessage(stdout, enc, asJSON, m); err != nil {
					return err
				}
				printed++
				if o.count > 0 && printed >= o.count {
					return commit(q, m.QueueOffset+1)
				}
			}
			next[i] = res.NextOffset
			res.Release() // printed
			if moved {
				progressed = true
				if err := commit(q, next[i]); err != nil {
					return err
				}
			}
		}
		done := true
		for i := range queues {
			done = done && next[i] >= end[i]
		}
		if !o.follow && done {
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

// joinGroup sends a consumer heartbeat for group to every broker serving queues, over
// connections held open until the returned function closes them.
func joinGroup(ctx context.Context, queues []client.Queue, group, topic, exprType, expr string) (func(), error) {
	host, _ := os.Hostname()
	body, err := json.Marshal(map[string]any{
		"clientID":        fmt.Sprintf("%s@strata-cli-%d", host, os.Getpid()),
		"producerDataSet": []any{},
		"consumerDataSet": []any{map[string]any{
			"groupName": group, "consumeType": "CONSUME_ACTIVELY", "messageModel": "CLUSTERING",
			"consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET", "unitMode": false,
			"subscriptionDataSet": []any{map[string]any{"topic": topic, "subString": expr, "expressionType": exprType,
				"classFilterMode": false, "tagsSet": []string{}, "codeSet": []int{}, "subVersion": time.Now().UnixMilli()}},
		}},
	})
	if err != nil {
		return nil, err
	}
	var conns []*remoting.Client
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	seen := map[string]bool{}
	for _, q := range queues {
		if seen[q.Addr] {
			continue
		}
		seen[q.Addr] = true
		rc, err := dialBroker(ctx, q.Addr, 10*time.Second)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("dial broker %s: %w", q.Addr, err)
		}
		conns = append(conns, rc)
		resp, err := rc.Invoke(ctx, remoting.NewRequest(remoting.CodeHeartBeat, nil, body))
		if err == nil && resp.Code != remoting.RespSuccess {
			err = fmt.Errorf("code %d: %s", resp.Code, resp.Remark)
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("join group %s on broker %s: %w", group, q.BrokerName, err)
		}
	}
	return closeAll, nil
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
	if keys := m.Keys(); len(keys) > 0 {
		_, err := fmt.Fprintf(w, "queue=%d offset=%d tags=%s keys=%s %s\n", m.QueueID, m.QueueOffset, m.Tags(), strings.Join(keys, ","), m.Body)
		return err
	}
	_, err := fmt.Fprintf(w, "queue=%d offset=%d tags=%s %s\n", m.QueueID, m.QueueOffset, m.Tags(), m.Body)
	return err
}
