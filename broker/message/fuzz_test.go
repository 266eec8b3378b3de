package message

import (
	"bytes"
	"reflect"
	"testing"
)

func FuzzDecode(f *testing.F) {
	rec, _ := sampleMessage().Encode()
	f.Add(rec)
	f.Add(rec[:50])
	f.Add([]byte{0, 0, 0, 91})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := Decode(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		if _, err := ParseRecordHeader(b); err != nil {
			t.Fatalf("Decode accepted what ParseRecordHeader refused: %v", err)
		}
		// Re-encoding a decoded record gives a record that decodes to the same message.
		again, err := m.Encode()
		if err != nil {
			return // e.g. an empty-key property that the encoder cannot express
		}
		m2, _, err := Decode(again)
		if err != nil || m2.Topic != m.Topic || !bytes.Equal(m2.Body, m.Body) || m2.QueueOffset != m.QueueOffset {
			t.Fatalf("re-encode mismatch: %v", err)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	body, _ := AppendBatch(nil, []BatchEntry{{Body: []byte("x"), Properties: map[string]string{"a": "b"}}})
	f.Add(body)
	f.Add([]byte{0, 0, 0, 22, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := DecodeBatch(b, 1000)
		if err != nil {
			return
		}
		re, err := AppendBatch(nil, entries)
		if err != nil {
			return
		}
		if again, err := DecodeBatch(re, 1000); err != nil || len(again) != len(entries) {
			t.Fatalf("re-encoded batch: %d entries, %v", len(again), err)
		}
	})
}

func FuzzParseOffsetMsgID(f *testing.F) {
	f.Add("0A000001000027130000000000000001")
	f.Fuzz(func(t *testing.T, id string) {
		h, off, err := ParseOffsetMsgID(id)
		if err != nil {
			return
		}
		if got := OffsetMsgID(h, off); len(got) != len(id) {
			t.Fatalf("%q → %s", id, got)
		}
	})
}

// FuzzDecoderReuse checks that a Decoder that decoded another body first decodes any bytes
// as DecodeAll does.
func FuzzDecoderReuse(f *testing.F) {
	rec, _ := sampleMessage().Encode()
	two := append(append([]byte(nil), rec...), rec...)
	f.Add(rec, two)
	f.Add(two, rec[:60])
	f.Add(two[:len(two)-1], two)
	f.Fuzz(func(t *testing.T, first, b []byte) {
		var d Decoder
		_, _ = d.DecodeAll(first)
		want, wantErr := DecodeAll(b)
		got, err := d.DecodeAll(b)
		if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("reused Decoder: %d messages, %v; DecodeAll: %d, %v", len(got), err, len(want), wantErr)
		}
	})
}
