package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
	"github.com/apache/rocketmq-client-go/v2/rlog"
)

func runProduce(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	namesrv := fs.String("namesrv", defaultNamesrv, "name-server address")
	topic := fs.String("topic", "", "topic to send to")
	tag := fs.String("tag", "", "tag of every message")
	keys := fs.String("keys", "", "space-separated keys of every message")
	quiet := fs.Bool("q", false, "print nothing per message")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *topic == "" {
		return fmt.Errorf("--topic is required")
	}
	rlog.SetLogLevel("error")
	p, err := producer.NewDefaultProducer(append([]producer.Option{
		producer.WithNameServer(primitive.NamesrvAddr{*namesrv}),
		producer.WithGroupName("strata-cli-producer"),
		producer.WithRetry(2),
	}, cliSecurity.producerOptions()...)...)
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return fmt.Errorf("start producer against %s: %w", *namesrv, err)
	}
	defer func() { _ = p.Shutdown() }()

	send := func(body string) error {
		msg := primitive.NewMessage(*topic, []byte(body))
		if *tag != "" {
			msg.WithTag(*tag)
		}
		if *keys != "" {
			msg.WithKeys(strings.Fields(*keys))
		}
		res, err := p.SendSync(ctx, msg)
		if err != nil {
			return fmt.Errorf("send to %s: %w", *topic, err)
		}
		if !*quiet {
			fmt.Fprintf(stdout, "sent queue=%d offset=%d msgId=%s offsetMsgId=%s\n",
				res.MessageQueue.QueueId, res.QueueOffset, res.MsgID, res.OffsetMsgID)
		}
		return nil
	}
	if fs.NArg() > 0 {
		for _, body := range fs.Args() {
			if err := send(body); err != nil {
				return err
			}
		}
		return nil
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if err := send(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}
