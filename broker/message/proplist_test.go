package message

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// checkPropertyList asserts that the list parsed from s behaves as the map DecodeProperties
// builds: same contents, same encoding, same record bytes; also after setting key to value.
func checkPropertyList(t *testing.T, s, key, value string) {
	t.Helper()
	l, ok := ParsePropertyList(s)
	want := DecodeProperties(s)
	if !ok {
		if len(want) <= MaxPropertyListLen {
			t.Fatalf("ParsePropertyList(%q) refused %d keys", s, len(want))
		}
		return
	}
	if got := l.Map(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ParsePropertyList(%q) = %v, DecodeProperties = %v", s, got, want)
	}
	if got, w := string(l.AppendEncoded(nil)), EncodeProperties(want); got != w || l.EncodedLen() != len(w) {
		t.Fatalf("encoded %q (len %d), want %q", got, l.EncodedLen(), w)
	}
	if key != "" {
		if l.Set(key, value) {
			want[key] = value
		} else if _, had := want[key]; had || len(want) < MaxPropertyListLen {
			t.Fatalf("Set(%q) refused with %d keys", key, len(want))
		}
	}
	for k, v := range want {
		if got, ok := l.Get(k); !ok || got != v {
			t.Fatalf("Get(%q) = %q, %v; want %q", k, got, ok, v)
		}
	}
	m := sampleMessage()
	m.Properties = want
	wantRec, wantErr := m.AppendEncoded([]byte("prefix"))
	m.Properties = nil
	gotRec, gotErr := m.AppendEncodedList([]byte("prefix"), &l)
	if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(gotRec, wantRec) {
		t.Fatalf("AppendEncodedList = %x, %v\nAppendEncoded     = %x, %v", gotRec, gotErr, wantRec, wantErr)
	}
}

func TestPropertyList(t *testing.T) {
	many := strings.Builder{}
	for i := range MaxPropertyListLen + 1 {
		fmt.Fprintf(&many, "k%02d\x01v\x02", i)
	}
	for _, s := range []string{
		"",
		"TAGS\x01TagA\x02",
		"WAIT\x01true\x02UNIQ_KEY\x01AB\x02TAGS\x01x\x02KEYS\x01a b\x02",
		"a\x01b",                     // no trailing separator
		"a\x01b\x02a\x01c\x02",       // repeated key: last wins
		"\x01v\x02junk\x02\x02b\x01", // empty key, no separator, empty piece, empty value
		"k\x01v\x01w\x02",            // separator inside the value
		many.String(),
	} {
		checkPropertyList(t, s, PropertyUniqKey, "0A000001")
		checkPropertyList(t, s, "a", "")
	}
	l, _ := ParsePropertyList(many.String()[len("k00\x01v\x02"):])
	if l.Len() != MaxPropertyListLen || l.Set("zz", "x") {
		t.Fatalf("a full list took a new key (len %d)", l.Len())
	}
	if !l.Set("k05", "y") {
		t.Fatal("a full list refused to replace a value")
	}
	if _, ok := ParsePropertyList(many.String()); ok {
		t.Fatalf("ParsePropertyList accepted %d keys", MaxPropertyListLen+1)
	}
}

func FuzzPropertyList(f *testing.F) {
	f.Add("WAIT\x01true\x02UNIQ_KEY\x01AB\x02TAGS\x01x\x02", "UNIQ_KEY", "CD")
	f.Add("a\x01b\x02a\x01c\x02\x01\x02x", "a", "")
	f.Fuzz(func(t *testing.T, s, key, value string) {
		if key == "" || strings.ContainsAny(key, "\x01\x02") || strings.ContainsRune(value, '\x02') {
			key = ""
		}
		checkPropertyList(t, s, key, value)
	})
}

func FuzzParseRecordHeader(f *testing.F) {
	m := sampleMessage()
	rec, _ := m.Encode()
	f.Add(rec)
	m.BornHost = netip.MustParseAddrPort("[2001:db8::1]:5555")
	m.StoreHost = netip.MustParseAddrPort("[2001:db8::2]:10911")
	m.Properties = map[string]string{PropertyKeys: "  a  b ", "x": "y"}
	rec6, _ := m.Encode()
	f.Add(rec6)
	m.Properties, m.Body = nil, nil
	rec0, _ := m.Encode()
	f.Add(rec0)
	f.Add(append(rec[:len(rec):len(rec)], 1, 2, 3))
	f.Add(rec[:len(rec)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantErr := parseRecordHeaderSlow(b)
		// PeekRecord agrees with the full parse wherever that succeeds.
		if size, qo, ok := PeekRecord(b); wantErr == nil && (!ok || size != int(want.TotalSize) || qo != want.QueueOffset) {
			t.Fatalf("PeekRecord = %d, %d, %v; the parse says %d, %d", size, qo, ok, want.TotalSize, want.QueueOffset)
		}
		// RecordProperties accepts what the parse accepts and finds the same properties.
		if props, err := RecordProperties(b); (err == nil) != (wantErr == nil) || err == nil && string(props) != want.Properties {
			t.Fatalf("RecordProperties = %q, %v; the parse says %q, %v", props, err, want.Properties, wantErr)
		}
		// PeekRecordEntry accepts only what the parse accepts, every V1 record of those, and
		// reads the same fields.
		if e, ok := PeekRecordEntry(b); ok != (wantErr == nil && int32(binary.BigEndian.Uint32(b[4:])) == MagicCodeV1) ||
			ok && e != (RecordEntry{want.TotalSize, want.QueueOffset, want.CommitLogOffset, want.StoreTimestamp}) {
			t.Fatalf("PeekRecordEntry = %+v, %v; the parse says %+v, %v", e, ok, want, wantErr)
		}
		// PeekRecordQueue accepts what PeekRecordEntry accepts and reads the same queue.
		if topic, qid, size, ok := PeekRecordQueue(b); ok != (wantErr == nil && int32(binary.BigEndian.Uint32(b[4:])) == MagicCodeV1) ||
			ok && (string(topic) != want.Topic || qid != want.QueueID || size != int(want.TotalSize)) {
			t.Fatalf("PeekRecordQueue = %q, %d, %d, %v; the parse says %+v, %v", topic, qid, size, ok, want, wantErr)
		}
		got, ok := parseRecordHeaderFast(b)
		if !ok {
			if wantErr == nil && int32(uint32(b[4])<<24|uint32(b[5])<<16|uint32(b[6])<<8|uint32(b[7])) != MagicCodeV2 {
				t.Fatalf("fast parse refused a V1 record the decoder accepts: %+v", want)
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("fast parse accepted what the decoder refuses: %v", wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast %+v\nslow %+v", got, want)
		}
	})
}
