package remoting

import (
	"bytes"
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
	f.Fuzz(func(t *testing.T, h []byte) {
		fast, ok := decodeJSONHeaderFast(h)
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
