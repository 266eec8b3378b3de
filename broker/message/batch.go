package message

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// BatchEntry is one message of a SEND_BATCH_MESSAGE body; topic and queue come from the
// request header.
type BatchEntry struct {
	Flag       int32
	Body       []byte
	Properties map[string]string
}

// batchEntryFixedBytes: total size, magic, body crc, flag, body length, properties length.
const batchEntryFixedBytes = 4 + 4 + 4 + 4 + 4 + 2

// AppendBatch appends entries in the batch body layout (PROTOCOL.md §4.5).
func AppendBatch(dst []byte, entries []BatchEntry) ([]byte, error) {
	be := binary.BigEndian
	for i, e := range entries {
		props := EncodeProperties(e.Properties)
		if len(props) > MaxPropertiesBytes {
			return dst, fmt.Errorf("batch entry %d: properties of %d bytes exceed %d", i, len(props), MaxPropertiesBytes)
		}
		dst = be.AppendUint32(dst, uint32(batchEntryFixedBytes+len(e.Body)+len(props)))
		dst = be.AppendUint32(dst, 0)
		dst = be.AppendUint32(dst, 0)
		dst = be.AppendUint32(dst, uint32(e.Flag))
		dst = be.AppendUint32(dst, uint32(len(e.Body)))
		dst = append(dst, e.Body...)
		dst = be.AppendUint16(dst, uint16(len(props)))
		dst = append(dst, props...)
	}
	return dst, nil
}

// ErrBatchTooLong is returned by DecodeBatch for a batch of more than its maxEntries.
var ErrBatchTooLong = errors.New("batch holds too many messages")

// DecodeBatch splits a batch body into its entries. Bodies alias body. maxEntries bounds the
// count (0 means no bound) so one request cannot allocate without limit; a longer batch gives
// ErrBatchTooLong.
func DecodeBatch(body []byte, maxEntries int) ([]BatchEntry, error) {
	var out []BatchEntry
	be := binary.BigEndian
	for off := 0; off < len(body); {
		if maxEntries > 0 && len(out) == maxEntries {
			return nil, fmt.Errorf("%w: more than %d", ErrBatchTooLong, maxEntries)
		}
		rest := body[off:]
		if len(rest) < batchEntryFixedBytes {
			return nil, fmt.Errorf("%w: batch entry %d at byte %d: %d bytes left, need %d", ErrMalformed, len(out), off, len(rest), batchEntryFixedBytes)
		}
		total := int(int32(be.Uint32(rest)))
		if total < batchEntryFixedBytes || total > len(rest) {
			return nil, fmt.Errorf("%w: batch entry %d at byte %d: size %d outside %d..%d", ErrMalformed, len(out), off, total, batchEntryFixedBytes, len(rest))
		}
		r := recordReader{b: rest[:total], pos: 12}
		e := BatchEntry{Flag: int32(r.u32("flag"))}
		e.Body = r.take(int(int32(r.u32("body length"))), "body")
		var propLen int
		if v := r.take(2, "properties length"); v != nil {
			propLen = int(int16(be.Uint16(v)))
		}
		props := r.take(propLen, "properties")
		if r.err != nil {
			return nil, fmt.Errorf("batch entry %d: %w", len(out), r.err)
		}
		if r.pos != total {
			return nil, fmt.Errorf("%w: batch entry %d: fields end at %d, size is %d", ErrMalformed, len(out), r.pos, total)
		}
		e.Properties = DecodeProperties(string(props))
		out = append(out, e)
		off += total
	}
	return out, nil
}
