package remoting

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestExtFieldsGetters(t *testing.T) {
	e := ExtFields{"off": "123", "neg": "-5", "big": "99999999999", "bad": "12x", "yes": "TRUE", "no": "false", "one": "1", "maybe": "perhaps", "empty": ""}

	if v, err := e.Int64("off"); err != nil || v != 123 {
		t.Fatalf("Int64(off) = %d, %v", v, err)
	}
	if v, err := e.Int32("neg"); err != nil || v != -5 {
		t.Fatalf("Int32(neg) = %d, %v", v, err)
	}
	if v, err := e.Int64Or("absent", 7); err != nil || v != 7 {
		t.Fatalf("Int64Or(absent) = %d, %v", v, err)
	}
	if v, err := e.Int32Or("empty", 3); err != nil || v != 3 {
		t.Fatalf("Int32Or(empty) = %d, %v", v, err)
	}
	if v, err := e.Bool("yes"); err != nil || !v {
		t.Fatalf("Bool(yes) = %v, %v", v, err)
	}
	if v, err := e.BoolOr("no", true); err != nil || v {
		t.Fatalf("BoolOr(no) = %v, %v", v, err)
	}
	if v, err := e.Bool("one"); err != nil || !v {
		t.Fatalf("Bool(one) = %v, %v", v, err)
	}
	if v, err := e.String("off"); err != nil || v != "123" {
		t.Fatalf("String(off) = %q, %v", v, err)
	}
	if v := e.StringOr("empty", "d"); v != "d" {
		t.Fatalf("StringOr(empty) = %q", v)
	}

	errCases := []struct {
		name string
		call func() error
		want string
	}{
		{"missing int64", func() error { _, err := e.Int64("queueOffset"); return err }, `"queueOffset" is required`},
		{"empty string", func() error { _, err := e.String("empty"); return err }, `"empty" is required`},
		{"int32 overflow", func() error { _, err := e.Int32("big"); return err }, `"big"="99999999999" is out of range for an int32`},
		{"not a number", func() error { _, err := e.Int64Or("bad", 0); return err }, `"bad"="12x" is not an int64`},
		{"not a bool", func() error { _, err := e.BoolOr("maybe", false); return err }, `"maybe"="perhaps" is not a boolean`},
		{"missing bool", func() error { _, err := e.Bool("absent"); return err }, `"absent" is required`},
	}
	for _, tc := range errCases {
		err := tc.call()
		if !errors.Is(err, ErrBadHeaderField) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrBadHeaderField mentioning %s", tc.name, err, tc.want)
		}
	}
}

// TestReleasedExtFieldsComeBackEmpty decodes frames into maps released by earlier commands: a
// reused map must hold only the new frame's fields, and strings read before the release keep
// their values.
func TestReleasedExtFieldsComeBackEmpty(t *testing.T) {
	frame := func(ext ExtFields) []byte {
		f, err := EncodeFrame(&Command{Code: CodeSendMessage, ExtFields: ext})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a := frame(ExtFields{"msgId": "AAAA", "queueOffset": "1", "transactionId": "t"})
	b := frame(ExtFields{"msgId": "BBBB"})
	for range 100 {
		first, err := decodeFrameBody(a[4:], true)
		if err != nil {
			t.Fatal(err)
		}
		id := first.ExtFields["msgId"]
		first.ReleaseExtFields()
		if first.ExtFields != nil {
			t.Fatal("a released command still has its map")
		}
		second, err := decodeFrameBody(b[4:], true)
		if err != nil {
			t.Fatal(err)
		}
		if want := (ExtFields{"msgId": "BBBB"}); !reflect.DeepEqual(second.ExtFields, want) {
			t.Fatalf("decoded into a reused map: %v, want %v", second.ExtFields, want)
		}
		if id != "AAAA" {
			t.Fatalf("a string read before the release changed to %q", id)
		}
		second.ReleaseExtFields()
	}
}
