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
	ext := remoting.PooledExtFields(16) // free again once invoke returns: the frame is encoded
	defer remoting.ReleaseExtFields(ext)
	ext["producerGroup"], ext["topic"], ext["queueId"] = group, q.Topic, strconv.Itoa(int(q.QueueID))
	ext["sysFlag"], ext["bornTimestamp"], ext["flag"] = "0", strconv.FormatInt(time.Now().UnixMilli(), 10), "0"
	ext["properties"], ext["reconsumeTimes"], ext["unitMode"] = message.EncodeProperties(props), "0", "false"
	ext["maxReconsumeTimes"], ext["batch"], ext["defaultTopic"], ext["defaultTopicQueueNums"] = "0", "false", "TBW102", "4"
	resp, err := c.invoke(ctx, q.Addr, remoting.NewRequest(remoting.CodeSendMessage, ext, body))
	if err != nil {
		return SendResult{}, err
	}
	r := SendResult{OffsetMsgID: resp.ExtFields["msgId"], QueueID: q.QueueID}
	r.QueueOffset, err = resp.ExtFields.Int64("queueOffset")
	resp.ReleaseExtFields()
	return r, err
}
