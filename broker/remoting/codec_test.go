package remoting

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// rawFrame builds a frame around an arbitrary header, as a foreign client would.
func rawFrame(st SerializeType, header, body []byte) []byte {
	f := make([]byte, 8, 8+len(header)+len(body))
	binary.BigEndian.PutUint32(f, uint32(4+len(header)+len(body)))
	f[4] = byte(st)
	f[5], f[6], f[7] = byte(len(header)>>16), byte(len(header)>>8), byte(len(header))
	f = append(f, header...)
	return append(f, body...)
}

func sampleCommand(st SerializeType) *Command {
	return &Command{
		Code: CodeSendMessage, Language: "GO", Version: 317, Opaque: 42, Flag: 0,
		Remark:        "héllo \"quoted\" <tag>",
		ExtFields:     ExtFields{"producerGroup": "pg", "topic": "T", "queueId": "1", "empty": ""},
		Body:          []byte("payload\x00\xff"),
		SerializeType: st,
	}
}

func TestRoundTripBothSerializeTypes(t *testing.T) {
	for _, st := range []SerializeType{SerializeJSON, SerializeRocketMQ} {
		t.Run(st.String(), func(t *testing.T) {
			want := sampleCommand(st)
			frame, err := EncodeFrame(want)
			if err != nil {
				t.Fatal(err)
			}
			if frame[4] != byte(st) {
				t.Fatalf("serialize type byte = %d, want %d", frame[4], st)
			}
			got, err := DecodeFrame(frame)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			// The same bytes through ReadFrame, followed by a clean EOF.
			r := bytes.NewReader(frame)
			got, err = ReadFrame(r, 0)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("ReadFrame = %+v, %v", got, err)
			}
			if _, err := ReadFrame(r, 0); err != io.EOF {
				t.Fatalf("ReadFrame at end = %v, want io.EOF", err)
			}
		})
	}
}

func TestDecodeGoClientJSON(t *testing.T) {
	// PROTOCOL.md §1.3: a SEND_MESSAGE as the Go client writes it.
	header := `{"code":10,"language":"GO","version":317,"opaque":42,"flag":0,"remark":"","extFields":{"producerGroup":"pg","topic":"T","queueId":"1","sysFlag":"0","bornTimestamp":"1700000000000","flag":"0","properties":"UNIQ_KEY\u00010A\u0002","reconsumeTimes":"0","unitMode":"false","batch":"false"}}`
	cmd, err := DecodeFrame(rawFrame(SerializeJSON, []byte(header), []byte("body")))
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Code != CodeSendMessage || cmd.Opaque != 42 || cmd.Version != 317 || cmd.Language != "GO" || cmd.IsResponse() || cmd.IsOneway() {
		t.Fatalf("header decoded wrong: %v", cmd)
	}
	if cmd.ExtFields["properties"] != "UNIQ_KEY\x010A\x02" || cmd.ExtFields["topic"] != "T" {
		t.Fatalf("extFields decoded wrong: %v", cmd.ExtFields)
	}
	qid, err := cmd.ExtFields.Int32("queueId")
	if err != nil || qid != 1 {
		t.Fatalf("queueId = %d, %v", qid, err)
	}
	if string(cmd.Body) != "body" {
		t.Fatalf("body = %q", cmd.Body)
	}
}

func TestDecodeJSONQuirks(t *testing.T) {
	header := `{"code":"11","language":"JAVA","version":"479","opaque":"-7","flag":"2","remark":null,
		"extFields":{"queueOffset":123,"commitOffset":-1,"suspend":true,"gone":null,"s":"x"},
		"serializeTypeCurrentRPC":"JSON","unknownKey":[1,2]}`
	cmd, err := DecodeFrame(rawFrame(SerializeJSON, []byte(header), nil))
	if err != nil {
		t.Fatal(err)
	}
	want := &Command{Code: 11, Language: "JAVA", Version: 479, Opaque: -7, Flag: FlagOneway,
		ExtFields: ExtFields{"queueOffset": "123", "commitOffset": "-1", "suspend": "true", "s": "x"}}
	if !reflect.DeepEqual(cmd, want) {
		t.Fatalf("got %+v\nwant %+v", cmd, want)
	}
	if !cmd.IsOneway() {
		t.Fatal("flag 2 must be oneway")
	}
}

func TestEncodedJSONHasStringExtFields(t *testing.T) {
	cmd := NewResponse(&Command{Opaque: 9}, RespSuccess, "")
	cmd.ExtFields.SetInt64("offset", 77)
	cmd.ExtFields.SetBool("suspend", true)
	frame, err := EncodeFrame(cmd)
	if err != nil {
		t.Fatal(err)
	}
	hl := int(frame[5])<<16 | int(frame[6])<<8 | int(frame[7])
	header := frame[8 : 8+hl]
	// The Go client's decoder: extFields must be map[string]string, version int16.
	var goClient struct {
		Code      int16             `json:"code"`
		Version   int16             `json:"version"`
		Opaque    int32             `json:"opaque"`
		Flag      int32             `json:"flag"`
		Remark    string            `json:"remark"`
		ExtFields map[string]string `json:"extFields"`
	}
	if err := json.Unmarshal(header, &goClient); err != nil {
		t.Fatalf("Go client would fail to decode %s: %v", header, err)
	}
	if goClient.Opaque != 9 || goClient.Flag != FlagResponse || goClient.ExtFields["offset"] != "77" || goClient.ExtFields["suspend"] != "true" {
		t.Fatalf("decoded %+v from %s", goClient, header)
	}
	// A nil map must be written as {} not null.
	frame, err = EncodeFrame(&Command{Code: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(frame, []byte(`"extFields":{}`)) {
		t.Fatalf("nil extFields encoded as %s", frame[8:])
	}
}

func TestDecodeMalformed(t *testing.T) {
	goodBin, _ := EncodeFrame(sampleCommand(SerializeRocketMQ))
	binHeader := func(f []byte) []byte {
		hl := int(f[5])<<16 | int(f[6])<<8 | int(f[7])
		return append([]byte(nil), f[8:8+hl]...)
	}
	hdr := binHeader(goodBin)
	negRemark := append([]byte(nil), hdr...)
	binary.BigEndian.PutUint32(negRemark[13:], 0xFFFFFFFF)
	trailing := append(append([]byte(nil), hdr...), 0)
	shortExt := append([]byte(nil), hdr[:len(hdr)-1]...)

	cases := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"too short", []byte{0, 0, 0, 4}, "shorter than"},
		{"length mismatch", append(rawFrame(SerializeJSON, []byte(`{}`), nil), 'x'), "does not match"},
		{"length below minimum", []byte{0, 0, 0, 2, 0, 0, 0, 0}, "does not match"},
		{"header longer than frame", func() []byte { f := rawFrame(SerializeJSON, []byte(`{}`), nil); f[7] = 99; return f }(), "header length 99 exceeds"},
		{"unknown serialize type", rawFrame(7, []byte(`{}`), nil), "unknown serialize type 7"},
		{"bad JSON", rawFrame(SerializeJSON, []byte(`{"code":`), nil), "JSON header"},
		{"JSON not object", rawFrame(SerializeJSON, []byte(`null`), nil), "not an object"},
		{"JSON code out of range", rawFrame(SerializeJSON, []byte(`{"code":70000}`), nil), "code=70000 is not an int16"},
		{"JSON code float", rawFrame(SerializeJSON, []byte(`{"code":1.5}`), nil), "not an int16"},
		{"JSON ext object", rawFrame(SerializeJSON, []byte(`{"extFields":{"a":{"b":1}}}`), nil), `extFields["a"]`},
		{"JSON remark number", rawFrame(SerializeJSON, []byte(`{"remark":5}`), nil), "remark=5 is not a string"},
		{"binary truncated", rawFrame(SerializeRocketMQ, hdr[:10], nil), "needs 4 bytes"},
		{"binary negative remark", rawFrame(SerializeRocketMQ, negRemark, nil), "negative"},
		{"binary trailing", rawFrame(SerializeRocketMQ, trailing, nil), "trailing"},
		{"binary ext truncated", rawFrame(SerializeRocketMQ, shortExt, nil), "needs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeFrame(tc.frame)
			if err == nil {
				t.Fatal("decoded a malformed frame")
			}
			if !errors.Is(err, ErrMalformedFrame) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want ErrMalformedFrame mentioning %q", err, tc.want)
			}
		})
	}
}

func TestReadFrameLimits(t *testing.T) {
	frame, _ := EncodeFrame(&Command{Body: make([]byte, 1000)})
	if _, err := ReadFrame(bytes.NewReader(frame), 100); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v, want ErrFrameTooLarge", err)
	}
	if _, err := ReadFrame(bytes.NewReader(frame[:len(frame)-1]), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 3}), 0); !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("length 3: %v, want ErrMalformedFrame", err)
	}
}

func TestLanguageCodes(t *testing.T) {
	cmd := sampleCommand(SerializeRocketMQ)
	for _, lang := range []string{"JAVA", "GO", "NODE_JS", "OTHER"} {
		cmd.Language = lang
		f, _ := EncodeFrame(cmd)
		got, err := DecodeFrame(f)
		if err != nil || got.Language != lang {
			t.Fatalf("language %s came back as %q, %v", lang, got.Language, err)
		}
	}
	cmd.Language = "COBOL" // no binary code: written as OTHER
	f, _ := EncodeFrame(cmd)
	if got, _ := DecodeFrame(f); got.Language != "OTHER" {
		t.Fatalf("unknown language came back as %q", got.Language)
	}
	got, err := DecodeFrame(rawFrame(SerializeJSON, []byte(`{"language":0}`), nil))
	if err != nil || got.Language != "JAVA" {
		t.Fatalf("numeric JSON language: %q, %v", got.Language, err)
	}
}

func TestResponseHelpers(t *testing.T) {
	req := &Command{Code: 9999, Opaque: 31, SerializeType: SerializeRocketMQ}
	resp := NewNotSupportedResponse(req)
	if resp.Code != RespRequestCodeNotSupported || resp.Opaque != 31 || !resp.IsResponse() ||
		resp.SerializeType != SerializeRocketMQ || resp.Remark != "request code 9999 not supported" {
		t.Fatalf("not-supported response: %v", resp)
	}
}

// The Go client's send header, properties joined with \u0001 and \u0002 as every client
// writes them, takes the fast path and decodes to what encoding/json reads.
func TestJSONHeaderFastPathTakesEscapedProperties(t *testing.T) {
	h := []byte(`{"code":310,"language":"GO","version":317,"opaque":7,"flag":0,"remark":"",` +
		`"extFields":{"a":"PG","b":"T","i":"KEYS\u0001k1\u0002UNIQ_KEY\u0001AB\u0002WAIT\u0001true\u0002"},` +
		`"serializeTypeCurrentRPC":"JSON"}`)
	cmd, ok := decodeJSONHeaderFast(h, false)
	if !ok {
		t.Fatal("fast path gave up on escaped properties")
	}
	if want := "KEYS\x01k1\x02UNIQ_KEY\x01AB\x02WAIT\x01true\x02"; cmd.ExtFields["i"] != want {
		t.Fatalf("properties = %q, want %q", cmd.ExtFields["i"], want)
	}
	out, err := AppendFrame(nil, &Command{SerializeType: SerializeJSON, Code: 1, ExtFields: cmd.ExtFields})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"i":"KEYS\u0001k1\u0002UNIQ_KEY\u0001AB\u0002WAIT\u0001true\u0002"`)) {
		t.Fatalf("re-encoded header does not escape the separators as clients do: %s", out)
	}
}

// A command with body parts encodes as the same command with the parts joined as its body.
func TestAppendFrameJoinsBodyParts(t *testing.T) {
	joined := NewResponse(NewRequest(CodePullMessage, nil, nil), RespSuccess, "")
	joined.Body = []byte("abcdef")
	split := NewResponse(NewRequest(CodePullMessage, nil, nil), RespSuccess, "")
	split.BodyParts = [][]byte{[]byte("ab"), nil, []byte("cdef")}
	if split.BodyLen() != 6 {
		t.Fatalf("BodyLen = %d, want 6", split.BodyLen())
	}
	for _, st := range []SerializeType{SerializeJSON, SerializeRocketMQ} {
		joined.SerializeType, split.SerializeType = st, st
		a, err := EncodeFrame(joined)
		if err != nil {
			t.Fatal(err)
		}
		b, err := EncodeFrame(split)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: parts encode as %q, joined body as %q", st, b, a)
		}
	}
}

// TestHeaderOnlyFramesDecodeInPlace reads header-only frames out of a small bufio.Reader that
// a one-byte reader refills, so the bytes of each frame are overwritten by the next: a decoded
// command that still pointed into the buffer would change under the test.
func TestHeaderOnlyFramesDecodeInPlace(t *testing.T) {
	first, second := sampleCommand(SerializeJSON), sampleCommand(SerializeRocketMQ)
	first.Body, second.Body = nil, nil
	second.Remark, second.ExtFields = "other remark", ExtFields{"msgId": "0A0B0C", "queueOffset": "7"}
	withBody := sampleCommand(SerializeJSON)
	var stream []byte
	for _, c := range []*Command{first, second, withBody} {
		f, err := EncodeFrame(c)
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, f...)
	}
	br := bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(stream)), 256)
	var got []*Command
	for range 2 {
		length, err := readFrameLength(br, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd, ok, err := decodeHeaderOnly(br, length, false)
		if !ok || err != nil {
			t.Fatalf("header-only frame: ok %v, err %v", ok, err)
		}
		got = append(got, cmd)
	}
	length, err := readFrameLength(br, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cmd, ok, err := decodeHeaderOnly(br, length, false); ok {
		t.Fatalf("a frame with a body was taken: %+v, %v", cmd, err)
	}
	buf, err := readFrameBody(br, length, defaultChunks, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	last, err := decodeFrameBody(buf, false)
	if err != nil || !reflect.DeepEqual(last, withBody) {
		t.Fatalf("the frame after: %+v, %v", last, err)
	}
	if !reflect.DeepEqual(got[0], first) || !reflect.DeepEqual(got[1], second) {
		t.Fatalf("decoded in place, then the buffer moved on:\n got %+v\n     %+v\nwant %+v\n     %+v", got[0], got[1], first, second)
	}
	// A frame larger than the reader's buffer is left to readFrameBody.
	big := sampleCommand(SerializeJSON)
	big.Body, big.Remark = nil, strings.Repeat("r", 300)
	f, _ := EncodeFrame(big)
	br = bufio.NewReaderSize(bytes.NewReader(f), 256)
	length, _ = readFrameLength(br, 0)
	if _, ok, _ := decodeHeaderOnly(br, length, false); ok {
		t.Fatal("a frame larger than the read buffer was decoded in place")
	}
}

// A command's ExtOrdered fields decode as the same map ExtFields would, in the order given.
func TestExtOrderedEncodesAsExtFields(t *testing.T) {
	for _, st := range []SerializeType{SerializeJSON, SerializeRocketMQ} {
		t.Run(st.String(), func(t *testing.T) {
			want := sampleCommand(st)
			ordered := *want
			ordered.ExtFields = nil
			ordered.ExtOrdered = []string{"topic", "T", "producerGroup", "pg", "empty", "", "queueId", "1"}
			frame, err := EncodeFrame(&ordered)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeFrame(frame)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %+v\nwant %+v", got, want)
			}
			if st == SerializeJSON && !bytes.Contains(frame, []byte(`"extFields":{"topic":"T","producerGroup":"pg","empty":"","queueId":"1"}`)) {
				t.Fatalf("extFields not in the given order: %s", frame)
			}
		})
	}
}

// Signing covers ExtOrdered's fields: they move into the map the signature is made over.
func TestSignFoldsExtOrderedIntoExtFields(t *testing.T) {
	req := &Command{Code: CodeSendMessageV2, ExtOrdered: []string{"b", "T", "a", "pg"}}
	Credentials{AccessKey: "ak", SecretKey: "secret-key-1"}.Sign(req)
	if req.ExtOrdered != nil || req.ExtFields["b"] != "T" || req.ExtFields["a"] != "pg" || req.ExtFields[ExtSignature] == "" {
		t.Fatalf("signed request: ordered %v, fields %v", req.ExtOrdered, req.ExtFields)
	}
	plain := &Command{Code: CodeSendMessageV2, ExtFields: ExtFields{"b": "T", "a": "pg"}}
	Credentials{AccessKey: "ak", SecretKey: "secret-key-1"}.Sign(plain)
	if plain.ExtFields[ExtSignature] != req.ExtFields[ExtSignature] {
		t.Fatalf("signature over ExtOrdered %q differs from the one over the same map %q", req.ExtFields[ExtSignature], plain.ExtFields[ExtSignature])
	}
}
