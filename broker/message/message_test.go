package message

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strconv"
	"testing"
)

func sampleMessage() *Message {
	return &Message{
		Topic: "orders", QueueID: 3, Flag: 7, QueueOffset: 42, CommitLogOffset: 1 << 40, SysFlag: FlagCompressed,
		BornTimestamp: 1700000000123, BornHost: netip.MustParseAddrPort("10.1.2.3:5555"),
		StoreTimestamp: 1700000000456, StoreHost: netip.MustParseAddrPort("192.168.0.9:10911"),
		ReconsumeTimes: 2, PreparedTransactionOffset: 99, Body: []byte("hello world"),
		Properties: map[string]string{PropertyTags: "TagA", PropertyKeys: "k1 k2", PropertyUniqKey: "ABCDEF"},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cases := map[string]func(*Message){
		"ipv4":          func(*Message) {},
		"ipv6 born":     func(m *Message) { m.BornHost = netip.MustParseAddrPort("[2001:db8::1]:80") },
		"ipv6 store":    func(m *Message) { m.StoreHost = netip.MustParseAddrPort("[::1]:10911") },
		"ipv4 mapped":   func(m *Message) { m.StoreHost = netip.MustParseAddrPort("[::ffff:1.2.3.4]:1") },
		"empty body":    func(m *Message) { m.Body = nil },
		"no properties": func(m *Message) { m.Properties = nil },
		"max topic":     func(m *Message) { m.Topic = string(bytes.Repeat([]byte("t"), MaxTopicBytes)) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			m := sampleMessage()
			mutate(m)
			rec, err := m.Encode()
			if err != nil {
				t.Fatal(err)
			}
			size, _ := m.EncodedSize()
			if len(rec) != size {
				t.Fatalf("EncodedSize %d, encoded %d", size, len(rec))
			}
			got, n, err := Decode(rec)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(rec) {
				t.Fatalf("consumed %d of %d", n, len(rec))
			}
			want := *m
			want.SysFlag = got.SysFlag // host bits are derived
			if want.Properties == nil {
				want.Properties = map[string]string{}
			}
			if want.Body == nil {
				want.Body = []byte{}
			}
			if m.StoreHost.Addr().Is4In6() {
				want.StoreHost = netip.AddrPortFrom(m.StoreHost.Addr().Unmap(), m.StoreHost.Port())
			}
			if !reflect.DeepEqual(*got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", *got, want)
			}
			if got.SysFlag&FlagCompressed == 0 {
				t.Fatal("compressed flag lost")
			}
			if v6 := m.StoreHost.Addr().Is6() && !m.StoreHost.Addr().Is4In6(); v6 != (got.SysFlag&FlagStoreHostV6 != 0) {
				t.Fatalf("store host v6 flag %v, sysflag %#x", v6, got.SysFlag)
			}
			if err := VerifyBodyCRC(rec); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFixedSizeIs91(t *testing.T) {
	m := &Message{Topic: "t"}
	rec, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != MinRecordBytes+1 {
		t.Fatalf("record with a 1-byte topic is %d bytes, want %d", len(rec), MinRecordBytes+1)
	}
}

func TestEncodeRejectsOutOfLayout(t *testing.T) {
	for name, m := range map[string]*Message{
		"empty topic":     {Topic: ""},
		"long topic":      {Topic: string(bytes.Repeat([]byte("t"), MaxTopicBytes+1))},
		"huge properties": {Topic: "t", Properties: map[string]string{"k": string(bytes.Repeat([]byte("v"), MaxPropertiesBytes))}},
	} {
		if _, err := m.Encode(); err == nil {
			t.Errorf("%s: encoded without error", name)
		}
	}
}

func TestParseRecordHeaderAndPatch(t *testing.T) {
	m := sampleMessage()
	m.StoreHost = netip.MustParseAddrPort("[2001:db8::2]:10911")
	rec, _ := m.Encode()
	if err := PatchAppendFields(rec, 1000, 2000, 3000); err != nil {
		t.Fatal(err)
	}
	h, err := ParseRecordHeader(rec)
	if err != nil {
		t.Fatal(err)
	}
	if h.QueueOffset != 1000 || h.CommitLogOffset != 2000 || h.StoreTimestamp != 3000 {
		t.Fatalf("patched fields: %+v", h)
	}
	if h.Topic != "orders" || h.Tags != "TagA" || h.UniqKey != "ABCDEF" || !reflect.DeepEqual(h.Keys, []string{"k1", "k2"}) {
		t.Fatalf("indexed fields: %+v", h)
	}
	if string(rec[h.BodyOffset:h.BodyOffset+h.BodyLen]) != "hello world" || int(h.TotalSize) != len(rec) {
		t.Fatalf("body position %d+%d, size %d", h.BodyOffset, h.BodyLen, h.TotalSize)
	}
	if got, _, _ := Decode(rec); got.BornTimestamp != m.BornTimestamp {
		t.Fatal("patch clobbered the born timestamp")
	}
}

func TestDecodeRejectsDamage(t *testing.T) {
	rec, _ := sampleMessage().Encode()
	for i := 0; i < len(rec); i++ {
		if _, _, err := Decode(rec[:i]); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
	bad := append([]byte(nil), rec...)
	bad[5] ^= 0xFF
	if _, _, err := Decode(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad magic: %v", err)
	}
	bad = append([]byte(nil), rec...)
	bad[len(bad)-1] ^= 0xFF
	bad[posBodyCRC] ^= 1
	if err := VerifyBodyCRC(bad); err == nil {
		t.Fatal("body crc mismatch not detected")
	}
}

func TestDecodeAll(t *testing.T) {
	var buf []byte
	for i := 0; i < 5; i++ {
		m := sampleMessage()
		m.QueueOffset = int64(i)
		buf, _ = m.AppendEncoded(buf)
	}
	msgs, err := DecodeAll(buf)
	if err != nil || len(msgs) != 5 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	for i, m := range msgs {
		if m.QueueOffset != int64(i) {
			t.Fatalf("message %d has offset %d", i, m.QueueOffset)
		}
	}
	if _, err := DecodeAll(append(buf, 1, 2, 3)); err == nil {
		t.Fatal("trailing garbage accepted")
	}
}

// DecodeAll decodes each record as Decode does, whatever topics they carry, and keeps the
// records before a bad one.
func TestDecodeAllMatchesDecode(t *testing.T) {
	var buf []byte
	var want []*Message
	for i, topic := range []string{"orders", "orders", "payments", "orders", "orders"} {
		m := sampleMessage()
		m.Topic, m.QueueOffset = topic, int64(i)
		if i == 3 {
			m.Properties = nil
		}
		start := len(buf)
		buf, _ = m.AppendEncoded(buf)
		d, _, err := Decode(buf[start:])
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, d)
	}
	got, err := DecodeAll(buf)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeAll = %+v, %v; want %+v", got, err, want)
	}
	got, err = DecodeAll(buf[:len(buf)-1])
	if err == nil || !reflect.DeepEqual(got, want[:4]) {
		t.Fatalf("truncated: %d messages, %v; want the first 4 and an error", len(got), err)
	}
}

// A Decoder decodes every body as DecodeAll does, however the bodies before it went: larger,
// smaller, with and without properties, truncated, and with more records than it counted.
func TestDecoderReusesMessages(t *testing.T) {
	body := func(n int, props bool) []byte {
		var buf []byte
		for i := range n {
			m := sampleMessage()
			m.QueueOffset, m.Body = int64(n*1000+i), []byte(strconv.Itoa(n*1000+i))
			if !props {
				m.Properties = nil
			}
			buf, _ = m.AppendEncoded(buf)
		}
		return buf
	}
	var d Decoder
	for _, b := range [][]byte{body(8, true), body(3, false), body(300, true), body(1, true), body(300, false)[:5000], body(64, false)} {
		want, wantErr := DecodeAll(b)
		got, err := d.DecodeAll(b)
		if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("Decoder: %d messages, %v; DecodeAll: %d, %v", len(got), err, len(want), wantErr)
		}
	}
}

// BenchmarkDecodeAll decodes a pull body of 256 records of 1000-byte bodies, as a consumer does:
// into fresh messages each time, and into a Decoder's.
func BenchmarkDecodeAll(b *testing.B) {
	var buf []byte
	for i := range 256 {
		m := sampleMessage()
		m.QueueOffset, m.Body = int64(i), make([]byte, 1000)
		buf, _ = m.AppendEncoded(buf)
	}
	b.Run("fresh", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeAll(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Decoder", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		var d Decoder
		for b.Loop() {
			if _, err := d.DecodeAll(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestProperties(t *testing.T) {
	props := map[string]string{"a": "1", "KEYS": "x y", "empty": ""}
	s := EncodeProperties(props)
	if s != "KEYS\x01x y\x02a\x011\x02empty\x01\x02" {
		t.Fatalf("encoded %q", s)
	}
	if got := DecodeProperties(s); !reflect.DeepEqual(got, props) {
		t.Fatalf("decoded %v", got)
	}
	if got := DecodeProperties("junk\x02k\x01v"); !reflect.DeepEqual(got, map[string]string{"k": "v"}) {
		t.Fatalf("lenient decode %v", got)
	}
	if v, ok := propertyValue(s, "a"); !ok || v != "1" {
		t.Fatalf("propertyValue a = %q %v", v, ok)
	}
	if _, ok := propertyValue(s, "KEY"); ok {
		t.Fatal("prefix of a key matched")
	}
}

func TestTagHashCode(t *testing.T) {
	for tag, want := range map[string]int64{"": 0, "TagA": 2598919, "a": 97, "hello world": 1794106052, "😀": 1772899} {
		if got := TagHashCode(tag); got != want {
			t.Errorf("TagHashCode(%q) = %d, want %d", tag, got, want)
		}
	}
	// Java's hash wraps into negative int32 values; they must sign-extend.
	if TagHashCode("zzzzzzzzzzzz") >= 0 && TagHashCode("polygenelubricants") >= 0 {
		t.Error("no negative hash found; sign extension untested")
	}
}

func TestOffsetMsgID(t *testing.T) {
	host := netip.MustParseAddrPort("10.0.0.1:10911")
	id := OffsetMsgID(host, 123456789)
	if id != "0A00000100002A9F00000000075BCD15" {
		t.Fatalf("id %s", id)
	}
	h, off, err := ParseOffsetMsgID(id)
	if err != nil || h != host || off != 123456789 {
		t.Fatalf("parsed %v %d %v", h, off, err)
	}
	h6 := netip.MustParseAddrPort("[2001:db8::1]:10911")
	id6 := OffsetMsgID(h6, 5)
	if len(id6) != 56 {
		t.Fatalf("ipv6 id %s", id6)
	}
	if h, off, err := ParseOffsetMsgID(id6); err != nil || h != h6 || off != 5 {
		t.Fatalf("ipv6 parsed %v %d %v", h, off, err)
	}
	for _, bad := range []string{"", "XYZ", "0A000001000027", "ZZ000001000027130000000000000001"} {
		if _, _, err := ParseOffsetMsgID(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestBatchRoundTrip(t *testing.T) {
	entries := []BatchEntry{
		{Flag: 1, Body: []byte("one"), Properties: map[string]string{"KEYS": "a"}},
		{Flag: 2, Body: []byte{}, Properties: map[string]string{}},
	}
	body, err := AppendBatch(nil, entries)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(body, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, entries) {
		t.Fatalf("got %+v", got)
	}
	if _, err := DecodeBatch(body, 1); !errors.Is(err, ErrBatchTooLong) {
		t.Fatalf("entry limit not enforced: %v", err)
	}
	firstLen := batchEntryFixedBytes + 3 + len(EncodeProperties(entries[0].Properties))
	for i := 1; i < len(body); i++ {
		if _, err := DecodeBatch(body[:i], 0); err == nil && i != firstLen {
			t.Fatalf("truncated batch at %d decoded", i)
		}
	}
}
