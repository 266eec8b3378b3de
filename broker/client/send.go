package client

import (
	"context"
	"strconv"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

// SendResult is the broker's answer to one send.
type SendResult struct {
	OffsetMsgID string
	QueueID     int32
	QueueOffset int64
}

// Send sends one message to queue q with a SEND_MESSAGE request, as a RocketMQ producer does.
// Concurrent calls share the broker connection and are answered out of order.
func (c *Client) Send(ctx context.Context, group string, q Queue, body []byte, props map[string]string) (SendResult, error) {
	ext := remoting.ExtFields{
		"producerGroup": group, "topic": q.Topic, "queueId": strconv.Itoa(int(q.QueueID)),
		"sysFlag": "0", "bornTimestamp": strconv.FormatInt(time.Now().UnixMilli(), 10), "flag": "0",
		"properties": message.EncodeProperties(props), "reconsumeTimes": "0", "unitMode": "false",
		"maxReconsumeTimes": "0", "batch": "false", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
	}
	resp, err := c.invoke(ctx, q.Addr, remoting.NewRequest(remoting.CodeSendMessage, ext, body))
	if err != nil {
		return SendResult{}, err
	}
	r := SendResult{OffsetMsgID: resp.ExtFields["msgId"], QueueID: q.QueueID}
	if r.QueueOffset, err = resp.ExtFields.Int64("queueOffset"); err != nil {
		return r, err
	}
	return r, nil
}
