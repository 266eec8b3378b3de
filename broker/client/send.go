package client

import (
	"context"
	"fmt"
	"strconv"
	"sync"
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

// Send sends one message to queue q with a SEND_MESSAGE_V2 request (the short field names
// RocketMQ's Java producer sends by default), as a RocketMQ producer does. Concurrent calls
// share the broker connection and are answered out of order.
func (c *Client) Send(ctx context.Context, group string, q Queue, body []byte, props map[string]string) (SendResult, error) {
	hp := sendHeaders.Get().(*[sendHeaderLen]string)
	defer sendHeaders.Put(hp) // free again once invoke returns: the frame is encoded
	resp, err := c.invoke(ctx, q.Addr, sendRequest(hp, group, q, body, props))
	if err != nil {
		return SendResult{}, err
	}
	return sendResult(q, resp)
}

// DefaultSendTimeout is how long SendAsync waits for an answer when ctx has no deadline:
// RocketMQ producers' default.
const DefaultSendTimeout = 3 * time.Second

// SendAsync is Send without the wait, as a RocketMQ producer's asynchronous send: it returns
// once the request is queued on the connection, and done is called once with the broker's
// answer or the failure. done runs on the connection's reading goroutine and must not block.
// ctx bounds the dial; the answer is awaited until ctx's deadline, or DefaultSendTimeout
// without one. On an error done is not called.
func (c *Client) SendAsync(ctx context.Context, group string, q Queue, body []byte, props map[string]string, done func(SendResult, error)) error {
	cl, err := c.conn(ctx, q.Addr)
	if err != nil {
		return err
	}
	timeout := DefaultSendTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	hp := sendHeaders.Get().(*[sendHeaderLen]string)
	defer sendHeaders.Put(hp) // free again once the call returns: the frame is encoded
	return cl.InvokeAsync(sendRequest(hp, group, q, body, props), timeout, func(resp *remoting.Command, err error) {
		if err != nil {
			done(SendResult{}, fmt.Errorf("%s: %w", q.Addr, err))
			return
		}
		if err := answerError(q.Addr, resp); err != nil {
			done(SendResult{}, err)
			return
		}
		done(sendResult(q, resp))
	})
}

// sendRequest fills the header *hp with a send of body to q and returns the request.
func sendRequest(hp *[sendHeaderLen]string, group string, q Queue, body []byte, props map[string]string) *remoting.Command {
	h := hp[:]
	h[1], h[3], h[5], h[7] = group, q.Topic, "TBW102", "4"
	h[9], h[11], h[13], h[15] = strconv.Itoa(int(q.QueueID)), "0", strconv.FormatInt(time.Now().UnixMilli(), 10), "0"
	h[17], h[19], h[21], h[23], h[25] = message.EncodeProperties(props), "0", "false", "0", "false"
	return &remoting.Command{Code: remoting.CodeSendMessageV2, Language: remoting.DefaultLanguage, Version: remoting.DefaultVersion,
		ExtOrdered: h, Body: body}
}

// sendResult reads a successful send's answer and releases its header.
func sendResult(q Queue, resp *remoting.Command) (SendResult, error) {
	r := SendResult{OffsetMsgID: resp.ExtFields["msgId"], QueueID: q.QueueID}
	var err error
	r.QueueOffset, err = resp.ExtFields.Int64("queueOffset")
	resp.ReleaseExtFields()
	return r, err
}

// sendHeaderLen is a SEND_MESSAGE_V2 header's keys and values.
const sendHeaderLen = 26

// sendHeaders recycles Send's headers: the keys stay, Send fills in the values.
var sendHeaders = sync.Pool{New: func() any {
	return &[sendHeaderLen]string{
		0: "a", 2: "b", 4: "c", 6: "d", 8: "e", 10: "f", 12: "g", 14: "h", 16: "i", 18: "j", 20: "k", 22: "l", 24: "m",
	}
}}
