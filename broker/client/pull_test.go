package client

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
)

// pullBody is the body the fake broker below sends for a pull at offset: 64 records of
// 2 KiB, each body filled with a byte of its offset, so a body overwritten by a later
// response shows.
func pullBody(t *testing.T, offset int64) []byte {
	host := netip.MustParseAddrPort("127.0.0.1:10911")
	var out []byte
	for i := range int64(64) {
		m := &message.Message{Topic: "T", QueueOffset: offset + i, BornHost: host, StoreHost: host,
			Body: bytes.Repeat([]byte{byte(offset + i)}, 2048), Properties: map[string]string{"k": strconv.FormatInt(offset+i, 10)}}
		var err error
		if out, err = m.AppendEncoded(out); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// startPullServer answers every PULL_MESSAGE with pullBody of its offset.
func startPullServer(t *testing.T) string {
	h := remoting.HandlerFunc(func(ctx context.Context, conn *remoting.Conn, req *remoting.Command) *remoting.Command {
		off, _ := req.ExtFields.Int64("queueOffset")
		resp := remoting.NewResponse(req, remoting.RespSuccess, "")
		resp.ExtFields.SetInt64("nextBeginOffset", off+64)
		resp.Body = pullBody(t, off)
		return resp
	})
	return startFakeBroker(t, h)
}

// startFakeBroker serves h on a free loopback port until the test ends.
func startFakeBroker(t *testing.T, h remoting.Handler) string {
	srv, err := remoting.NewServer(remoting.Config{}, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("server close: %v", err)
		}
		if err := <-served; !errors.Is(err, remoting.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return ln.Addr().String()
}

// TestPullReleaseKeepsUnreleasedMessages pulls one queue to the end, releasing every pull
// but the first few, whose messages it keeps: a released response's buffer takes later
// responses, a kept one's never does.
func TestPullReleaseKeepsUnreleasedMessages(t *testing.T) {
	addr := startPullServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &Client{conns: map[string]*remoting.Client{}}
	defer c.Close()
	q := Queue{Topic: "T", BrokerName: "b", Addr: addr}
	check := func(msgs []*message.Message, offset int64) {
		t.Helper()
		if len(msgs) != 64 {
			t.Fatalf("pull at %d: %d messages, want 64", offset, len(msgs))
		}
		for i, m := range msgs {
			want := offset + int64(i)
			if m.QueueOffset != want || !bytes.Equal(m.Body, bytes.Repeat([]byte{byte(want)}, 2048)) ||
				m.Properties["k"] != strconv.FormatInt(want, 10) {
				t.Fatalf("message %d of the pull at %d: offset %d, body %x…, properties %v", i, offset, m.QueueOffset, m.Body[:4], m.Properties)
			}
		}
	}
	kept := map[int64][]*message.Message{}
	for off := int64(0); off < 64*40; {
		pr, err := c.Pull(ctx, "g", q, off, 64, 0, "*")
		if err != nil {
			t.Fatal(err)
		}
		check(pr.Messages, off)
		if off < 64*4 {
			kept[off] = pr.Messages
		} else {
			pr.Release()
			if pr.Messages != nil {
				t.Fatal("Messages survive Release")
			}
			pr.Release() // a second call does nothing
		}
		off = pr.NextOffset
	}
	for off, msgs := range kept {
		check(msgs, off)
	}
}
