package remoting

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"testing"
)

func BenchmarkEncodeFrame(b *testing.B) {
	for _, st := range []SerializeType{SerializeJSON, SerializeRocketMQ} {
		b.Run(st.String(), func(b *testing.B) {
			cmd := sampleCommand(st)
			cmd.Body = make([]byte, 1024)
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = AppendFrame(buf[:0], cmd); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	for _, st := range []SerializeType{SerializeJSON, SerializeRocketMQ} {
		b.Run(st.String(), func(b *testing.B) {
			cmd := sampleCommand(st)
			cmd.Body = make([]byte, 1024)
			frame, err := EncodeFrame(cmd)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeFrame(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTrip measures one request and its response over loopback,
// sequentially and with parallel callers sharing the connection.
func BenchmarkRoundTrip(b *testing.B) {
	srv, err := NewServer(Config{}, echo)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close(context.Background())
	c, err := Dial(context.Background(), ln.Addr().String(), ClientConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ext := ExtFields{"topic": "T", "queueId": "0", "queueOffset": "100"}
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Invoke(context.Background(), NewRequest(CodeGetMaxOffset, ext, nil)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Invoke(context.Background(), NewRequest(CodeGetMaxOffset, ext, nil)); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// cycleReader repeats b forever, so a benchmark can read as many frames as it needs.
type cycleReader struct {
	b   []byte
	off int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, c.b[c.off:])
	c.off = (c.off + n) % len(c.b)
	return n, nil
}

// BenchmarkReadFrame measures ReadFrame through a connection-sized bufio.Reader, for a
// frame that fits the buffer and one that does not.
func BenchmarkReadFrame(b *testing.B) {
	for _, size := range []int{1 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("body=%dKiB", size>>10), func(b *testing.B) {
			cmd := sampleCommand(SerializeRocketMQ)
			cmd.Body = make([]byte, size)
			frame, err := EncodeFrame(cmd)
			if err != nil {
				b.Fatal(err)
			}
			r := bufio.NewReaderSize(&cycleReader{b: frame}, 64<<10)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ReadFrame(r, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkServerReadFrame is BenchmarkReadFrame on a server connection's path: the same
// decoding plus the frame budget's reservation and release.
func BenchmarkServerReadFrame(b *testing.B) {
	for _, size := range []int{1 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("body=%dKiB", size>>10), func(b *testing.B) {
			cmd := sampleCommand(SerializeRocketMQ)
			cmd.Body = make([]byte, size)
			frame, err := EncodeFrame(cmd)
			if err != nil {
				b.Fatal(err)
			}
			c := &Conn{cfg: &connConfig{maxFrameBytes: DefaultMaxFrameBytes, budget: newFrameBudget(DefaultMaxInFlightFrameBytes, nil)}}
			r := bufio.NewReaderSize(&cycleReader{b: frame}, 64<<10)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				_, charged, err := c.readFrame(r)
				if err != nil {
					b.Fatal(err)
				}
				c.release(charged)
			}
		})
	}
}

// sendV2Command is a SEND_MESSAGE_V2 request as the official Go client writes it: one-letter
// header keys, properties separated by \u0001 and \u0002.
func sendV2Command() *Command {
	return &Command{
		Code: CodeSendMessageV2, Language: "GO", Version: 317, Opaque: 42,
		ExtFields: ExtFields{
			"a": "bench-producer", "b": "bench-topic", "c": "TBW102", "d": "4", "e": "1", "f": "0",
			"g": "1796230738123", "h": "0", "i": "UNIQ_KEY\x017F00000100002A9F0000000000000001\x02WAIT\x01true\x02",
			"j": "0", "k": "false", "l": "0", "m": "false",
		},
		Body:          make([]byte, 1024),
		SerializeType: SerializeJSON,
	}
}

// BenchmarkDecodeSendHeader decodes a realistic send frame: the broker does this once per
// message.
//
//	go test -run '^$' -bench DecodeSendHeader -benchmem ./broker/remoting/
func BenchmarkDecodeSendHeader(b *testing.B) {
	frame, err := EncodeFrame(sendV2Command())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}
