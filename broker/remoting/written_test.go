package remoting

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// TestWrittenAfterTheFrameIsOnTheWire: a response's Written hook runs only once the
// connection has written the whole frame, so a hook that reuses the body's buffer (here it
// overwrites it) never changes bytes the peer still has to receive, even when the peer reads
// slowly and the write blocks part way.
func TestWrittenAfterTheFrameIsOnTheWire(t *testing.T) {
	body := make([]byte, 32<<20) // more than the socket buffers hold: the write blocks
	for i := range body {
		body[i] = byte(i*31 + i>>8)
	}
	want := bytes.Clone(body)
	written := make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, conn *Conn, req *Command) *Command {
		resp := NewResponse(req, RespSuccess, "")
		resp.BodyParts = [][]byte{body[:1<<20], body[1<<20:]}
		resp.Written = func() {
			for i := range body {
				body[i] = 0xEE
			}
			written <- struct{}{}
		}
		return resp
	})
	_, addr := startServer(t, Config{}, h)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	req, err := AppendFrame(nil, NewRequest(CodePullMessage, ExtFields{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(req); err != nil {
		t.Fatal(err)
	}
	var head [4]byte
	if _, err := io.ReadFull(nc, head[:]); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(nc, frame[:64<<10]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-written:
		t.Fatal("Written ran while the frame was still being written")
	default:
	}
	if _, err := io.ReadFull(nc, frame[64<<10:]); err != nil {
		t.Fatal(err)
	}
	if got := frame[len(frame)-len(want):]; !bytes.Equal(got, want) {
		t.Fatal("the body arrived changed: Written ran before the frame was written")
	}
	select {
	case <-written:
	case <-testCtx(t).Done():
		t.Fatal("Written was not called")
	}
}
