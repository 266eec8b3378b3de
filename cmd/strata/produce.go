package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func produceCmd() *cobra.Command {
	return leaf("produce [BODY...]", "send messages from arguments or stdin lines", `
Sends each argument, or else each line of standard input, as one message.

Each line can carry its own key, tag and properties (as kcat's -K):
  -K :                    lines are KEY:BODY
  --line-format FORMAT    `+lineFormatHelp+`
  -H name=value           a property on every message (repeatable)`, cobra.ArbitraryArgs, produceFlags)
}

// produceOptions are the flags of `strata produce`.
type produceOptions struct {
	topic, tag, keys, keyDelim, lineFormat string
	headers                                []string
	quiet                                  bool
}

func produceFlags(fs *pflag.FlagSet) runFunc {
	o := &produceOptions{}
	fs.StringVar(&o.topic, "topic", "", "topic to send to (required)")
	fs.StringVar(&o.tag, "tag", "", "tag of every message")
	fs.StringVar(&o.keys, "keys", "", "space-separated keys of every message")
	fs.StringVarP(&o.keyDelim, "key-delimiter", "K", "", "each line is KEY<delimiter>BODY")
	fs.StringVar(&o.lineFormat, "line-format", "", "how each line splits into key, tag, properties and body (see -h)")
	fs.StringArrayVarP(&o.headers, "header", "H", nil, "name=value: a property of every message (repeatable)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "print nothing per message")
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		return runProduce(ctx, o, args, stdout)
	}
}

// format is the line format the flags ask for; nil: the whole line is the body.
func (o *produceOptions) format() (*lineFormat, error) {
	spec := o.lineFormat
	if o.keyDelim != "" {
		if spec != "" {
			return nil, errors.New("-K and --line-format exclude each other (-K : is --line-format '%k:%v')")
		}
		spec = "%k" + strings.ReplaceAll(o.keyDelim, "%", "%%") + "%v"
	}
	if spec == "" {
		return nil, nil
	}
	f, err := parseLineFormat(spec)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

func runProduce(ctx context.Context, o *produceOptions, args []string, stdout io.Writer) error {
	if o.topic == "" {
		return usageError{errors.New("--topic is required (see `strata produce -h`)")}
	}
	lf, err := o.format()
	if err != nil {
		return usageError{err}
	}
	headers := map[string]string{}
	for _, h := range o.headers {
		k, v, err := parseHeader(h)
		if err != nil {
			return usageError{err}
		}
		headers[k] = v
	}
	rlog.SetLogLevel("error")
	p, err := producer.NewDefaultProducer(append([]producer.Option{
		producer.WithNameServer(primitive.NamesrvAddr{namesrvAddr()}),
		producer.WithGroupName("strata-cli-producer"),
		producer.WithRetry(2),
	}, cliSecurity.producerOptions()...)...)
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return fmt.Errorf("start producer against name server %s (set --namesrv or STRATA_NAMESRV): %w", namesrvAddr(), err)
	}
	defer func() { _ = p.Shutdown() }()
	asJSON := jsonOutput(false)
	enc := json.NewEncoder(stdout)

	send := func(line string) error {
		fields := lineFields{Body: line}
		if lf != nil {
			if fields, err = lf.parse(line); err != nil {
				return usageError{err}
			}
		}
		msg := primitive.NewMessage(o.topic, []byte(fields.Body))
		if tag := cmpOr(fields.Tag, o.tag); tag != "" {
			msg.WithTag(tag)
		}
		keys := strings.Fields(o.keys)
		if fields.Key != "" {
			keys = append(keys, fields.Key)
		}
		if len(keys) > 0 {
			msg.WithKeys(keys)
		}
		for k, v := range headers {
			msg.WithProperty(k, v)
		}
		for k, v := range fields.Props {
			msg.WithProperty(k, v)
		}
		res, err := p.SendSync(ctx, msg)
		if err != nil {
			return fmt.Errorf("send to %s: %w", o.topic, err)
		}
		switch {
		case o.quiet:
		case asJSON:
			return enc.Encode(map[string]any{"queue": res.MessageQueue.QueueId, "offset": res.QueueOffset,
				"msgId": res.MsgID, "offsetMsgId": res.OffsetMsgID})
		default:
			fmt.Fprintf(stdout, "sent queue=%d offset=%d msgId=%s offsetMsgId=%s\n",
				res.MessageQueue.QueueId, res.QueueOffset, res.MsgID, res.OffsetMsgID)
		}
		return nil
	}
	if len(args) > 0 {
		for _, body := range args {
			if err := send(body); err != nil {
				return err
			}
		}
		return nil
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if err := send(sc.Text()); err != nil {
			var ue usageError
			if errors.As(err, &ue) {
				return fmt.Errorf("line %d: %w", n, ue.err)
			}
			return err
		}
	}
	return sc.Err()
}
