package console

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/stratamq/strata/broker/message"
)

// bodyPreview is how a message body is shown: as text when it is valid UTF-8 without
// control characters (other than tabs and line ends), else as a hex dump.
type bodyPreview struct {
	// Size is the stored body's length; Shown the bytes previewed (after decompression).
	Size  int
	Shown int
	// Truncated says the body is longer than the preview.
	Truncated bool
	// Compressed names the compression the producer applied ("" for none).
	Compressed string
	Text       string
	IsText     bool
	Hex        string
	// Note explains a body that could not be decompressed.
	Note string
}

// Compression types in sysFlag bits 8..10 (RocketMQ 5's MessageSysFlag.COMPRESSION_*);
// 0 is zlib, what every client of the remoting protocol writes.
const (
	compressionTypeMask  = 0x7 << 8
	compressionTypeZlib  = 0
	compressionTypeShift = 8
)

// previewBody shows up to maxBytes of body, inflating it first when sysFlag marks it
// compressed. A body that does not inflate is shown raw, with a note.
func previewBody(body []byte, sysFlag int32, maxBytes int) bodyPreview {
	p := bodyPreview{Size: len(body)}
	data := body
	if sysFlag&message.FlagCompressed != 0 {
		kind := (sysFlag & compressionTypeMask) >> compressionTypeShift
		if kind == compressionTypeZlib {
			p.Compressed = "zlib"
			inflated, more, err := inflate(body, maxBytes)
			if err != nil {
				p.Note = fmt.Sprintf("the body is marked zlib-compressed but does not inflate (%v); shown as stored", err)
			} else {
				data, p.Truncated = inflated, more
			}
		} else {
			p.Compressed = fmt.Sprintf("type %d", kind)
			p.Note = fmt.Sprintf("compression type %d is not one the console reads; shown as stored", kind)
		}
	}
	if len(data) > maxBytes {
		data, p.Truncated = data[:maxBytes], true
	}
	if p.Truncated {
		data = trimPartialRune(data)
	}
	p.Shown = len(data)
	if isText(data) {
		p.IsText, p.Text = true, string(data)
	} else {
		p.Hex = hex.Dump(data)
	}
	return p
}

// inflate decompresses at most maxBytes of a zlib stream; more reports that it holds more.
func inflate(b []byte, maxBytes int) (out []byte, more bool, err error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, false, err
	}
	defer zr.Close()
	out, err = io.ReadAll(io.LimitReader(zr, int64(maxBytes)+1))
	if err != nil {
		return nil, false, err
	}
	if len(out) > maxBytes {
		return out[:maxBytes], true, nil
	}
	return out, false, nil
}

// trimPartialRune drops an incomplete UTF-8 sequence that a cut left at the end.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return b // ASCII: whole
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}

// isText reports whether b reads as text: valid UTF-8 with no control characters but
// tab, line feed and carriage return.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
