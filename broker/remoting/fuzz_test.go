package remoting

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

func addFrameSeeds(f *testing.F) {
	for _, st := range []SerializeType{SerializeJSON, SerializeRocketMQ} {
		frame, err := EncodeFrame(sampleCommand(st))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame)
		frame, _ = EncodeFrame(&Command{SerializeType: st})
		f.Add(frame)
	}
	f.Add(rawFrame(SerializeJSON, []byte(`{"code":"11","opaque":"-7","extFields":{"a":1,"b":true,"c":null}}`), []byte("x")))
	f.Add(rawFrame(SerializeJSON, []byte(`null`), nil))
	f.Add([]byte{0, 0, 0, 4, 1, 0, 0, 0})
}

// FuzzDecodeFrame checks that no input panics the decoder, and that whatever
// it accepts re-encodes into a frame that decodes to the same command.
func FuzzDecodeFrame(f *testing.F) {
	addFrameSeeds(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		cmd, err := DecodeFrame(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("decode error does not wrap ErrMalformedFrame: %v", err)
			}
			return
		}
		again, err := EncodeFrame(cmd)
		if err != nil {
			t.Fatalf("re-encode %v: %v", cmd, err)
		}
		cmd2, err := DecodeFrame(again)
		if err != nil {
			t.Fatalf("decode re-encoded frame: %v", err)
		}
		if cmd.Language == "" { // an absent language is written as ours
			cmd.Language = DefaultLanguage
		}
		if !reflect.DeepEqual(cmd, cmd2) {
			t.Fatalf("unstable round trip:\n first %+v\nsecond %+v", cmd, cmd2)
		}
	})
}

// FuzzReadFrame feeds arbitrary streams to ReadFrame with a small limit: it
// must return a command or an error, never panic or over-allocate.
func FuzzReadFrame(f *testing.F) {
	addFrameSeeds(f)
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bytes.NewReader(stream)
		for {
			_, err := ReadFrame(r, 4096)
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrMalformedFrame) && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
		}
	})
}

// FuzzJSONHeaderFastPath checks that whenever the hand-written header decoder accepts a
// header, encoding/json's general path decodes it to the same command.
func FuzzJSONHeaderFastPath(f *testing.F) {
	f.Add([]byte(`{"code":10,"language":"GO","version":317,"opaque":42,"flag":0,"remark":"","extFields":{"topic":"T","queueId":"1"}}`))
	f.Add([]byte(`{"code":0,"extFields":{},"flag":1,"opaque":-5,"serializeTypeCurrentRPC":"JSON"}`))
	f.Add([]byte(` { "code" : 1 , "remark" : "x" } `))
	f.Add([]byte(`{"code":310,"extFields":{"a":"PG","b":"T","e":"1","i":"KEYS\u0001k1\u0002UNIQ_KEY\u0001AB\u0002WAIT\u0001true\u0002"}}`))
	f.Add([]byte(`{"code":1,"remark":"caf\u00e9 \"q\" \\ \/ \b\f\n\r\t é \ud83d\ude00","extFields":{"k\u0001":"v"}}`))
	f.Fuzz(func(t *testing.T, h []byte) {
		fast, ok := decodeJSONHeaderFast(h, false)
		if !ok {
			return
		}
		slow, err := decodeJSONHeaderGeneral(h)
		if err != nil {
			t.Fatalf("general decoder failed: %v", err)
		}
		if fast.Code != slow.Code || fast.Version != slow.Version || fast.Opaque != slow.Opaque ||
			fast.Flag != slow.Flag || fast.Remark != slow.Remark || fast.Language != slow.Language ||
			!reflect.DeepEqual(fast.ExtFields, slow.ExtFields) {
			t.Fatalf("fast %+v\nslow %+v", fast, slow)
		}
	})
}

// FuzzJSONString checks the fast path's string reader against encoding/json on any bytes
// between two quotes: whatever it accepts, encoding/json reads as the same string.
func FuzzJSONString(f *testing.F) {
	for _, seed := range []string{``, `plain`, `KEYS\u0001k\u0002TAGS\u0001a\u0002`, `\u0001\u0002`,
		`\"\\\/\b\f\n\r\t`, `caf\u00E9 é`, `\ud83d\ude00`, `\u12`, "\xff", `\x`, "\u2028\u2029"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		quoted := append(append([]byte{'"'}, raw...), '"')
		s := jsonScanner{b: quoted}
		fast, ok := s.plainBytes()
		if !ok || s.pos != len(quoted) {
			return // a quote inside raw ends the string early; the header decoder then gives up
		}
		var slow string
		if err := json.Unmarshal(quoted, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json: %v", quoted, err)
		}
		if string(fast) != slow {
			t.Fatalf("%q: fast %q, encoding/json %q", quoted, fast, slow)
		}
	})
}

// FuzzAppendJSONString checks the header writer escapes every string as encoding/json does.
func FuzzAppendJSONString(f *testing.F) {
	for _, seed := range []string{"", "plain", "KEYS\x01k\x02TAGS\x01a\x02", "\"\\/\b\f\n\r\t\x00\x1f\x7f",
		"<a&b>", "café", "\u2028\u2029", "\xff\xfe", "\xe2\x82", "😀"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, encoding/json %s", s, got, want)
		}
	})
}

// chunkReader returns at most n bytes per Read, as a slow peer's socket does.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// frameOutcome is what one frame read produced: a command, or the class of error.
type frameOutcome struct {
	cmd *Command
	err string
}

func errClass(err error) string {
	switch {
	case err == io.EOF:
		return "EOF"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.Is(err, ErrMalformedFrame):
		return "malformed"
	case errors.Is(err, ErrFrameTooLarge):
		return "too large"
	}
	return "other: " + err.Error()
}

func readAllFrames(read func() (*Command, error)) []frameOutcome {
	var out []frameOutcome
	for {
		cmd, err := read()
		if err != nil {
			return append(out, frameOutcome{err: errClass(err)})
		}
		out = append(out, frameOutcome{cmd: cmd})
	}
}

// FuzzReadFrameIncremental checks that the incremental body readers read the same frames,
// and fail the same way, as decoding the stream in one piece, however the bytes arrive: the
// connection's buffered path with its frame budget, a client connection's (recycled
// buffers, no budget), the doubling path of other readers, and
// both with the reservation point in the middle of a frame. The chunk sizes are shrunk so
// that small inputs cross every boundary.
func FuzzReadFrameIncremental(f *testing.F) {
	sample, err := EncodeFrame(sampleCommand(SerializeRocketMQ))
	if err != nil {
		f.Fatal(err)
	}
	big, err := EncodeFrame(&Command{Code: CodeSendMessage, ExtFields: ExtFields{"k": "v"}, Body: bytes.Repeat([]byte("b"), 200)})
	if err != nil {
		f.Fatal(err)
	}
	resp, err := EncodeFrame(&Command{Code: RespSuccess, Flag: FlagResponse, Body: bytes.Repeat([]byte("r"), 100)})
	if err != nil {
		f.Fatal(err)
	}
	two := append(append([]byte(nil), big...), sample...)
	for _, seed := range [][]byte{sample, big, resp, two, two[:len(big)+20], big[:70], {0, 0, 0x10, 0}} {
		f.Add(seed, byte(1))
		f.Add(seed, byte(0x87))
	}
	f.Fuzz(func(t *testing.T, stream []byte, knobs byte) {
		const maxFrame = 512
		small := bodyChunks{min: 8, first: 64}
		n := int(knobs&0x1f) + 1 // bytes per Read
		bufSize := 64            // the buffered path: Peek the first chunk
		if knobs&0x80 != 0 {
			bufSize = 16 // smaller than the first chunk: the doubling path through a bufio.Reader
		}
		// Reference: slice the stream by its length prefixes and decode each frame whole.
		rest := stream
		want := readAllFrames(func() (*Command, error) {
			length, err := readFrameLength(bytes.NewReader(rest), maxFrame)
			if err != nil {
				return nil, err
			}
			if len(rest) < 4+length {
				return nil, io.ErrUnexpectedEOF
			}
			frame := rest[:4+length]
			rest = rest[4+length:]
			return DecodeFrame(frame)
		})
		slow := func() io.Reader { return &chunkReader{r: bytes.NewReader(stream), n: n} }
		got := map[string][]frameOutcome{}
		r := slow()
		got["ReadFrame"] = readAllFrames(func() (*Command, error) { return ReadFrame(r, maxFrame) })
		r2 := slow()
		got["doubling"] = readAllFrames(func() (*Command, error) {
			length, err := readFrameLength(r2, maxFrame)
			if err != nil {
				return nil, err
			}
			buf, err := readFrameBody(r2, length, small, nil, false)
			if err != nil {
				return nil, err
			}
			return decodeFrameBody(buf, false)
		})
		c := &Conn{cfg: &connConfig{maxFrameBytes: maxFrame, chunks: small, budget: newFrameBudget(maxFrame, nil)}}
		c.readCtx = context.Background()
		for name, r := range map[string]io.Reader{"connection, doubling": slow(), "connection, buffered": bufio.NewReaderSize(slow(), bufSize)} {
			got[name] = readAllFrames(func() (*Command, error) {
				cmd, charged, err := c.readFrame(r)
				c.release(charged)
				return cmd, err
			})
		}
		// The dialling side reads frames into recycled buffers, with no budget.
		cc := &Conn{cfg: &connConfig{maxFrameBytes: maxFrame, chunks: small}}
		cr := bufio.NewReaderSize(slow(), bufSize)
		got["client connection"] = readAllFrames(func() (*Command, error) {
			cmd, _, err := cc.readFrame(cr)
			if err == nil {
				cmd.frame = nil // the reference holds no recycled buffer
			}
			return cmd, err
		})
		for name, g := range got {
			if !reflect.DeepEqual(g, want) {
				t.Fatalf("%s reader, %d bytes in reads of %d:\n got %+v\nwant %+v", name, len(stream), n, g, want)
			}
		}
		if used := c.cfg.budget.inUse(); used != 0 {
			t.Fatalf("frame budget holds %d bytes after every frame was released", used)
		}
	})
}
