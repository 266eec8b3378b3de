package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

func messageCmd() *cobra.Command {
	return parent("message", "look a message up by id or key, in either tier", "",
		leaf("get", "a message by its offset message id or unique key", `
Looks a message up by its offset message id (what a send returns as offsetMsgId; the broker
that stored it answers, from local disk or the bucket) or, failing that, by its unique key
(the client's msgId) in --topic, or in every topic when --topic is not given.`, nil,
			func(fs *pflag.FlagSet) runFunc { return messageFlags("get", fs) }),
		leaf("find", "a topic's messages whose keys hold K, within a time range", `
Lists a topic's messages whose KEYS hold --key, stored between --from and --to, which take
`+timeForms+`.`, nil, func(fs *pflag.FlagSet) runFunc { return messageFlags("find", fs) }),
	)
}

// messageOptions are the flags of `message get` and `message find`.
type messageOptions struct {
	id, topic, key, from, to string
	maxNum                   int
	asJSON                   bool
}

func messageFlags(sub string, fs *pflag.FlagSet) runFunc {
	o := &messageOptions{}
	if sub == "get" {
		fs.StringVar(&o.id, "id", "", "offset message id or unique key (required)")
		fs.StringVar(&o.topic, "topic", "", "topic of a unique key (default: every topic)")
	} else {
		fs.StringVar(&o.topic, "topic", "", "topic (required)")
		fs.StringVar(&o.key, "key", "", "message key (required)")
		fs.StringVar(&o.from, "from", "", "stored at or after this time (see -h)")
		fs.StringVar(&o.to, "to", "", "stored at or before this time (see -h)")
		fs.IntVar(&o.maxNum, "max", 64, "at most this many messages per broker group")
	}
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object per message (same as --format json)")
	return func(ctx context.Context, _ []string, stdout io.Writer) error { return runMessage(ctx, stdout, sub, o) }
}

func runMessage(ctx context.Context, stdout io.Writer, sub string, o *messageOptions) error {
	id, topic, key, from, to, maxNum, asJSON := o.id, o.topic, o.key, o.from, o.to, o.maxNum, jsonOutput(o.asJSON)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := dialClient(ctx, namesrvAddr())
	if err != nil {
		return err
	}
	defer c.Close()
	var msgs []*message.Message
	switch sub {
	case "get":
		if id == "" {
			return usageError{errors.New("--id is required (see `strata message get -h`)")}
		}
		msgs, err = getMessage(ctx, c, id, topic)
	case "find":
		if topic == "" || key == "" {
			return usageError{errors.New("--topic and --key are required (see `strata message find -h`)")}
		}
		begin, end := int64(0), int64(math.MaxInt64)
		if begin, err = parseTimeFlag("--from", from, begin); err != nil {
			return err
		}
		if end, err = parseTimeFlag("--to", to, end); err != nil {
			return err
		}
		msgs, err = queryByKey(ctx, c, topic, key, false, begin, end, maxNum)
		if err == nil && len(msgs) == 0 {
			err = fmt.Errorf("no message of topic %s has key %q in that time range", topic, key)
		}
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, m := range msgs {
		if err := describeMessage(stdout, enc, asJSON, m); err != nil {
			return err
		}
	}
	return nil
}

func parseTimeFlag(name, v string, def int64) (int64, error) {
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v, time.Now())
	if err != nil {
		return 0, usageError{fmt.Errorf("%s: %w", name, err)}
	}
	return t.UnixMilli(), nil
}

// getMessage tries id as an offset message id (asking the broker it names), then as a
// unique key.
func getMessage(ctx context.Context, c *client.Client, id, topic string) ([]*message.Message, error) {
	var viewErr error
	if host, off, err := message.ParseOffsetMsgID(id); err == nil {
		m, err := viewMessage(ctx, host.String(), off)
		if err == nil {
			return []*message.Message{m}, nil
		}
		viewErr = err
	}
	topics := []string{topic}
	if topic == "" {
		var err error
		if topics, err = c.Topics(ctx); err != nil {
			return nil, err
		}
	}
	for _, t := range topics {
		msgs, err := queryByKey(ctx, c, t, id, true, 0, math.MaxInt64, 32)
		if err != nil && topic != "" {
			return nil, err
		}
		if len(msgs) > 0 {
			return msgs, nil
		}
	}
	if viewErr != nil {
		return nil, fmt.Errorf("message %s: not found as an offset message id (%v) nor as a unique key", id, viewErr)
	}
	return nil, fmt.Errorf("message %s: no message has this unique key (and it is not an offset message id)", id)
}

// viewMessage sends VIEW_MESSAGE_BY_ID to the broker an offset message id names.
func viewMessage(ctx context.Context, addr string, offset int64) (*message.Message, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cl, err := dialBroker(dctx, addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("broker %s unreachable: %w", addr, err)
	}
	defer cl.Close()
	resp, err := cl.Invoke(ctx, remoting.NewRequest(remoting.CodeViewMessageByID,
		remoting.ExtFields{"offset": strconv.FormatInt(offset, 10)}, nil))
	if err != nil {
		return nil, fmt.Errorf("view message at %d on %s: %w", offset, addr, err)
	}
	if resp.Code != remoting.RespSuccess {
		return nil, fmt.Errorf("broker %s: %s", addr, resp.Remark)
	}
	m, _, err := message.Decode(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("view message at %d on %s: %w", offset, addr, err)
	}
	return m, nil
}

// queryByKey sends QUERY_MESSAGE to every broker group of the topic and merges the answers.
func queryByKey(ctx context.Context, c *client.Client, topic, key string, uniq bool, begin, end int64, maxNum int) ([]*message.Message, error) {
	route, err := c.Route(ctx, topic)
	if err != nil {
		return nil, err
	}
	var out []*message.Message
	for _, b := range route.BrokerDatas {
		addr := b.BrokerAddrs["0"]
		if addr == "" {
			continue
		}
		ext := remoting.ExtFields{"topic": topic, "key": key, "maxNum": strconv.Itoa(maxNum),
			"beginTimestamp": strconv.FormatInt(begin, 10), "endTimestamp": strconv.FormatInt(end, 10)}
		if uniq {
			ext["_UNIQUE_KEY_QUERY"] = "true"
		}
		cl, err := dialBroker(ctx, addr, 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("broker %s of group %s unreachable: %w", addr, b.BrokerName, err)
		}
		resp, err := cl.Invoke(ctx, remoting.NewRequest(remoting.CodeQueryMessage, ext, nil))
		cl.Close()
		if err != nil {
			return nil, fmt.Errorf("query broker %s: %w", addr, err)
		}
		switch resp.Code {
		case remoting.RespQueryNotFound:
			continue
		case remoting.RespSuccess:
		default:
			return nil, fmt.Errorf("query broker %s: code %d: %s", addr, resp.Code, resp.Remark)
		}
		msgs, err := message.DecodeAll(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("query broker %s: %w", addr, err)
		}
		out = append(out, msgs...)
	}
	return out, nil
}

func describeMessage(w io.Writer, enc *json.Encoder, asJSON bool, m *message.Message) error {
	if asJSON {
		return printMessage(w, enc, true, m)
	}
	_, err := fmt.Fprintf(w, "msgId=%s uniqKey=%s topic=%s queue=%d offset=%d commitLogOffset=%d tags=%s keys=%q stored=%s born=%s bornHost=%s storeHost=%s reconsumeTimes=%d\n  properties=%v\n  body=%q\n",
		m.OffsetMsgID(), m.UniqKey(), m.Topic, m.QueueID, m.QueueOffset, m.CommitLogOffset, m.Tags(),
		m.Properties[message.PropertyKeys], time.UnixMilli(m.StoreTimestamp).UTC().Format(time.RFC3339Nano),
		time.UnixMilli(m.BornTimestamp).UTC().Format(time.RFC3339Nano), m.BornHost, m.StoreHost, m.ReconsumeTimes,
		m.Properties, m.Body)
	return err
}
