package tier

import (
	"context"
	"testing"

	"github.com/stratamq/strata/broker/message"
)

func fuzzSeedObject(f *testing.F) *EncodedSegment {
	g := newLogGen()
	enc, err := EncodeSegmentFrom(context.Background(), "c/g", 1, g.segment(f, 40, queueKeys(2, 3), 30), 512, 600)
	if err != nil {
		f.Fatal(err)
	}
	return enc
}

func FuzzDecodeFooter(f *testing.F) {
	enc := fuzzSeedObject(f)
	obj := enc.Main.Data
	f.Add(obj[len(obj)-FooterBytes:], int64(len(obj)))
	f.Add(make([]byte, FooterBytes), int64(FooterBytes))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		ft, err := DecodeFooter(b, size)
		if err == nil && (ft.IndexOffset+ft.IndexLength > size-FooterBytes || ft.KeysOffset+ft.KeysLength > size-FooterBytes) {
			t.Fatalf("accepted footer with sections outside the object: %+v size %d", ft, size)
		}
	})
}

func FuzzDecodeIndex(f *testing.F) {
	enc := fuzzSeedObject(f)
	fo := enc.Footer
	f.Add(enc.Main.Data[fo.IndexOffset : fo.IndexOffset+fo.IndexLength])
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := DecodeIndex(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to the same bytes.
		if got := appendIndex(nil, idx); string(got) != string(b) {
			t.Fatalf("index does not round-trip")
		}
	})
}

func FuzzDecodeKeys(f *testing.F) {
	enc := fuzzSeedObject(f)
	fo := enc.Footer
	f.Add(enc.Main.Data[fo.KeysOffset : fo.KeysOffset+fo.KeysLength])
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := DecodeKeys(b)
		if err == nil && string(appendKeys(nil, keys)) != string(b) {
			t.Fatalf("keys do not round-trip")
		}
	})
}

func FuzzDecodeBlock(f *testing.F) {
	enc := fuzzSeedObject(f)
	b := enc.Index.Queues[0].Blocks[0]
	f.Add(enc.Main.Data[b.Offset:b.Offset+b.Size], b.RawSize)
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}, int64(1<<30))
	f.Fuzz(func(t *testing.T, frame []byte, rawSize int64) {
		raw, err := DecodeBlock(frame, rawSize)
		if err == nil {
			if int64(len(raw)) != rawSize {
				t.Fatalf("decoded %d bytes, announced %d", len(raw), rawSize)
			}
			_ = SplitRecords(raw, func([]byte, *message.RecordHeader) (bool, error) { return true, nil })
		}
	})
}

func FuzzDecodeObject(f *testing.F) {
	enc := fuzzSeedObject(f)
	f.Add(enc.Main.Data)
	f.Add(enc.Companions[0].Data)
	f.Fuzz(func(t *testing.T, obj []byte) {
		_, _, _ = DecodeSegmentObject(obj)
	})
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"seq":3,"watermark":100,"segments":[{"base":0,"end":100,"object":"a/b","queues":[{"topic":"T","queue":1,"first":0,"last":9}]}]}`))
	f.Add([]byte(`{"version":1,"segments":[{"base":5,"end":1,"object":"x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err == nil {
			for i := 1; i < len(m.Segments); i++ {
				if m.Segments[i].Base < m.Segments[i-1].End {
					t.Fatal("accepted overlapping segments")
				}
			}
		}
	})
}
