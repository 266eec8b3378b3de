package integration

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/stratamq/strata/broker/remoting"
)

// TestErrorsAUserCanAct checks what the official client and a raw peer see on bad input: an
// oversized message and an unknown topic get errors that say what to do, an unknown request
// code is answered "not supported" on a connection that stays up, and a malformed frame closes
// only its own connection.
func TestErrorsAUserCanAct(t *testing.T) {
	dev := startDev(t, t.TempDir(), "--auto-create-topics=false")
	createTopic(t, dev.Namesrv, "known", 1)
	p := newProducer(t, dev.Namesrv)
	ctx := context.Background()

	big := make([]byte, 5<<20) // random, so the client's zlib cannot shrink it under the limit
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	_, err := p.SendSync(ctx, primitive.NewMessage("known", big))
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized send: %v", err)
	}
	_, err = p.SendSync(ctx, primitive.NewMessage("missing", []byte("x")))
	if err == nil {
		t.Fatal("send to a missing topic succeeded with auto-creation off")
	}

	cl, err := remoting.Dial(ctx, dev.Broker, remoting.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	resp, err := cl.Invoke(ctx, remoting.NewRequest(9999, nil, nil))
	if err != nil || resp.Code != remoting.RespRequestCodeNotSupported || !strings.Contains(resp.Remark, "9999") {
		t.Fatalf("unknown code: %v %+v", err, resp)
	}
	resp, err = cl.Invoke(ctx, remoting.NewRequest(remoting.CodeGetMaxOffset, remoting.ExtFields{"topic": "known", "queueId": "0"}, nil))
	if err != nil || resp.Code != remoting.RespSuccess {
		t.Fatalf("connection unusable after an unknown code: %v %+v", err, resp)
	}

	raw, err := net.Dial("tcp", dev.Broker)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// A frame that claims a 1-byte header of an unknown serialize type.
	if _, err := raw.Write([]byte{0, 0, 0, 6, 9, 0, 0, 1, 'x', 'y'}); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(raw); err != nil {
		t.Fatalf("malformed frame: connection not closed cleanly: %v", err)
	}
	if _, err := p.SendSync(ctx, primitive.NewMessage("known", []byte("still serving"))); err != nil {
		t.Fatalf("broker stopped serving after a malformed frame: %v", err)
	}
}
