package client

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/remoting"
)

// startSendServer answers SEND_MESSAGE_V2 with the queue offset the body names, and refuses
// a body of "refuse"; it records the headers of the sends while headers has room.
func startSendServer(t *testing.T, headers chan<- remoting.ExtFields) string {
	h := remoting.HandlerFunc(func(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
		if req.Code != remoting.CodeSendMessageV2 {
			return remoting.NewResponse(req, remoting.RespRequestCodeNotSupported, "not a V2 send")
		}
		select {
		case headers <- req.ExtFields:
		default: // the test reads the first ones only
		}
		if string(req.Body) == "refuse" {
			return remoting.NewResponse(req, remoting.RespNoPermission, "topic T is not writable")
		}
		resp := remoting.NewResponse(req, remoting.RespSuccess, "")
		resp.ExtFields["msgId"] = "ID-" + string(req.Body)
		resp.ExtFields["queueOffset"] = string(req.Body)
		return resp
	})
	return startFakeBroker(t, h)
}

func TestSendAsyncAnswersEverySend(t *testing.T) {
	const n = 100
	headers := make(chan remoting.ExtFields, 1)
	addr := startSendServer(t, headers)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &Client{conns: map[string]*remoting.Client{}}
	defer c.Close()
	q := Queue{Topic: "T", BrokerName: "b", QueueID: 3, Addr: addr}

	var wg sync.WaitGroup
	results := make([]SendResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		if err := c.SendAsync(ctx, "pg", q, []byte(strconv.Itoa(i)), map[string]string{"KEYS": "k"}, func(r SendResult, err error) {
			results[i], errs[i] = r, err
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := range n {
		want := SendResult{OffsetMsgID: "ID-" + strconv.Itoa(i), QueueID: 3, QueueOffset: int64(i)}
		if errs[i] != nil || results[i] != want {
			t.Fatalf("send %d: %+v, %v; want %+v", i, results[i], errs[i], want)
		}
	}
	// The header is RocketMQ's V2 send: short names, the fields a producer sends.
	h := <-headers
	for k, want := range map[string]string{"a": "pg", "b": "T", "e": "3", "f": "0", "h": "0", "j": "0", "m": "false", "i": "KEYS\x01k\x02"} {
		if h[k] != want {
			t.Errorf("header field %s = %q, want %q (header %v)", k, h[k], want, h)
		}
	}
	if born, err := h.Int64("g"); err != nil || time.Since(time.UnixMilli(born)) > time.Minute {
		t.Errorf("born timestamp %q: %v", h["g"], err)
	}

	// A refused send reaches done as an error with the broker's remark; Send says the same.
	got := make(chan error, 1)
	if err := c.SendAsync(ctx, "pg", q, []byte("refuse"), nil, func(_ SendResult, err error) { got <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("refused async send: %v", err)
	}
	if _, err := c.Send(ctx, "pg", q, []byte("refuse"), nil); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("refused send: %v", err)
	}
	if r, err := c.Send(ctx, "pg", q, []byte("7"), nil); err != nil || r.QueueOffset != 7 {
		t.Fatalf("send: %+v, %v", r, err)
	}
}
