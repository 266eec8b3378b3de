package remoting

import (
	"context"
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
