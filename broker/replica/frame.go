package replica

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/stratamq/strata/broker/store"
)

// Frame layout (all integers big-endian): uint32 n, then n bytes: a type byte and the body.
// n is at most the reader's frame limit, so a bad length never allocates more than that.
const (
	frameHello     = 1 // follower → master: Hello
	frameWelcome   = 2 // master → follower: Welcome
	frameData      = 3 // master → follower: Data
	frameAck       = 4 // follower → master: Ack
	frameRefuse    = 5 // master → follower: Refusal, then the master closes
	frameHeartbeat = 6 // master → follower: Heartbeat
	frameWatermark = 7 // master → follower: Watermark (protocol version 2)

	protocolVersion = 2
	maxMemberLen    = 255
	maxHistoryLen   = 1 << 16
	maxReasonLen    = 4096
	frameHeadBytes  = 5
	dataHeadBytes   = 24
)

// DefaultMaxFrame bounds a frame: a Data frame holds up to MaxChunk bytes of log, or one
// record larger than that (up to the store's maximum message size).
const DefaultMaxFrame = 16 << 20

// ErrFrame reports a malformed or oversized frame; the connection is closed.
var ErrFrame = errors.New("bad replication frame")

// Hello opens a follower's connection.
type Hello struct {
	Member  string             // the follower's member name (unique in its group)
	Oldest  int64              // its oldest local segment's base (store.MinCommitLogOffset)
	End     int64              // its commit-log end (store.EndOffset)
	Epoch   int64              // the highest master epoch it has seen
	History []store.EpochStart // its epoch history
}

// Welcome is the master's answer to Hello.
type Welcome struct {
	Epoch      int64 // the master's epoch
	TruncateTo int64 // the follower drops its log from here; Data starts here
	MasterEnd  int64 // the master's log end when it answered
	// Oldest is the master's oldest local segment's base. When TruncateTo is below it, the
	// master cannot serve the follower and closes: the follower resets its log to start at
	// Oldest (store.ResetTo) and connects again.
	Oldest int64
}

// Data carries stored log bytes at Pos, written under DataEpoch.
type Data struct {
	Epoch     int64 // the master's epoch
	DataEpoch int64 // the epoch that wrote these bytes (store.EpochAt of the master's history)
	Pos       int64
	Bytes     []byte
}

// Heartbeat is sent by an idle master.
type Heartbeat struct {
	Epoch     int64
	MasterEnd int64
}

// Watermark is the master's committed position: every record that ends at or below Pos is
// held by every member the master waits for (the in-sync set and its candidates, see
// Server.SetInSync). The master sends it when it moves; the follower serves queue reads only
// up to it (store.SetReadLimit) and does not ack it.
type Watermark struct {
	Epoch int64
	Pos   int64
}

// Ack tells the master the follower's durable log end.
type Ack struct{ End int64 }

// Refusal is the master's reason for closing a connection it will not serve.
type Refusal struct {
	Epoch  int64
	Reason string
}

func appendFrameHead(b []byte, typ byte, bodyLen int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(1+bodyLen))
	return append(b, typ)
}

func (h *Hello) appendTo(b []byte) []byte {
	b = appendFrameHead(b, frameHello, 1+2+len(h.Member)+8+8+8+4+16*len(h.History))
	b = append(b, protocolVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Member)))
	b = append(b, h.Member...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Oldest))
	b = binary.BigEndian.AppendUint64(b, uint64(h.End))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.History)))
	for _, e := range h.History {
		b = binary.BigEndian.AppendUint64(b, uint64(e.Epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.StartOffset))
	}
	return b
}

func (w *Welcome) appendTo(b []byte) []byte {
	b = appendFrameHead(b, frameWelcome, 32)
	b = binary.BigEndian.AppendUint64(b, uint64(w.Epoch))
	b = binary.BigEndian.AppendUint64(b, uint64(w.TruncateTo))
	b = binary.BigEndian.AppendUint64(b, uint64(w.MasterEnd))
	return binary.BigEndian.AppendUint64(b, uint64(w.Oldest))
}

// appendHead appends the frame head and the fixed fields; the log bytes follow unframed.
func (d *Data) appendHead(b []byte) []byte {
	b = appendFrameHead(b, frameData, dataHeadBytes+len(d.Bytes))
	b = binary.BigEndian.AppendUint64(b, uint64(d.Epoch))
	b = binary.BigEndian.AppendUint64(b, uint64(d.DataEpoch))
	return binary.BigEndian.AppendUint64(b, uint64(d.Pos))
}

func (h *Heartbeat) appendTo(b []byte) []byte {
	b = appendFrameHead(b, frameHeartbeat, 16)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Epoch))
	return binary.BigEndian.AppendUint64(b, uint64(h.MasterEnd))
}

func (w *Watermark) appendTo(b []byte) []byte {
	b = appendFrameHead(b, frameWatermark, 16)
	b = binary.BigEndian.AppendUint64(b, uint64(w.Epoch))
	return binary.BigEndian.AppendUint64(b, uint64(w.Pos))
}

func (a *Ack) appendTo(b []byte) []byte {
	b = appendFrameHead(b, frameAck, 8)
	return binary.BigEndian.AppendUint64(b, uint64(a.End))
}

func (r *Refusal) appendTo(b []byte) []byte {
	reason := r.Reason
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	b = appendFrameHead(b, frameRefuse, 8+len(reason))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Epoch))
	return append(b, reason...)
}

// frameReader reads frames of at most max bytes, reusing one buffer.
type frameReader struct {
	r   io.Reader
	max int
	buf []byte
}

// next reads one frame and decodes it: *Hello, *Welcome, *Data, *Heartbeat, *Watermark,
// *Ack or *Refusal. A Data frame's Bytes alias the reader's buffer until the next call.
func (fr *frameReader) next() (any, error) {
	var head [4]byte
	if _, err := io.ReadFull(fr.r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n == 0 || int64(n) > int64(fr.max) {
		return nil, fmt.Errorf("%w: length %d, limit %d", ErrFrame, n, fr.max)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	b := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: truncated frame: %w", ErrFrame, err)
	}
	return decodeFrame(b[0], b[1:])
}

func decodeFrame(typ byte, b []byte) (any, error) {
	be := binary.BigEndian
	need := func(n int) error {
		if len(b) != n {
			return fmt.Errorf("%w: type %d body is %d bytes, want %d", ErrFrame, typ, len(b), n)
		}
		return nil
	}
	switch typ {
	case frameHello:
		if len(b) < 1+2 {
			return nil, fmt.Errorf("%w: short hello", ErrFrame)
		}
		if b[0] != protocolVersion {
			return nil, fmt.Errorf("%w: protocol version %d, this build speaks %d", ErrFrame, b[0], protocolVersion)
		}
		ml := int(be.Uint16(b[1:]))
		if ml == 0 || ml > maxMemberLen || len(b) < 3+ml+28 {
			return nil, fmt.Errorf("%w: hello member name of %d bytes", ErrFrame, ml)
		}
		h := &Hello{Member: string(b[3 : 3+ml])}
		if !utf8.ValidString(h.Member) {
			return nil, fmt.Errorf("%w: hello member name is not UTF-8", ErrFrame)
		}
		p := b[3+ml:]
		h.Oldest, h.End, h.Epoch = int64(be.Uint64(p)), int64(be.Uint64(p[8:])), int64(be.Uint64(p[16:]))
		n := be.Uint32(p[24:])
		p = p[28:]
		if n > maxHistoryLen || len(p) != int(n)*16 {
			return nil, fmt.Errorf("%w: hello history of %d entries in %d bytes", ErrFrame, n, len(p))
		}
		if h.Oldest < 0 || h.End < h.Oldest || h.Epoch < 0 {
			return nil, fmt.Errorf("%w: hello oldest %d, end %d, epoch %d out of range", ErrFrame, h.Oldest, h.End, h.Epoch)
		}
		for i := 0; i < int(n); i++ {
			e := store.EpochStart{Epoch: int64(be.Uint64(p[16*i:])), StartOffset: int64(be.Uint64(p[16*i+8:]))}
			if e.Epoch <= 0 || e.StartOffset < 0 ||
				(i > 0 && (e.Epoch <= h.History[i-1].Epoch || e.StartOffset < h.History[i-1].StartOffset)) {
				return nil, fmt.Errorf("%w: hello history entry %d out of order", ErrFrame, i)
			}
			h.History = append(h.History, e)
		}
		return h, nil
	case frameWelcome:
		if err := need(32); err != nil {
			return nil, err
		}
		w := &Welcome{Epoch: int64(be.Uint64(b)), TruncateTo: int64(be.Uint64(b[8:])), MasterEnd: int64(be.Uint64(b[16:])),
			Oldest: int64(be.Uint64(b[24:]))}
		if w.TruncateTo < 0 || w.MasterEnd < w.TruncateTo || w.Oldest < 0 || w.Oldest > w.MasterEnd {
			return nil, fmt.Errorf("%w: welcome truncate-to %d past master end %d", ErrFrame, w.TruncateTo, w.MasterEnd)
		}
		return w, nil
	case frameData:
		if len(b) <= dataHeadBytes {
			return nil, fmt.Errorf("%w: data frame without bytes", ErrFrame)
		}
		d := &Data{Epoch: int64(be.Uint64(b)), DataEpoch: int64(be.Uint64(b[8:])), Pos: int64(be.Uint64(b[16:])), Bytes: b[dataHeadBytes:]}
		if d.Pos < 0 || d.DataEpoch < 0 || d.DataEpoch > d.Epoch {
			return nil, fmt.Errorf("%w: data at %d of epoch %d from a master of epoch %d", ErrFrame, d.Pos, d.DataEpoch, d.Epoch)
		}
		return d, nil
	case frameHeartbeat:
		if err := need(16); err != nil {
			return nil, err
		}
		return &Heartbeat{Epoch: int64(be.Uint64(b)), MasterEnd: int64(be.Uint64(b[8:]))}, nil
	case frameWatermark:
		if err := need(16); err != nil {
			return nil, err
		}
		w := &Watermark{Epoch: int64(be.Uint64(b)), Pos: int64(be.Uint64(b[8:]))}
		if w.Pos < 0 {
			return nil, fmt.Errorf("%w: watermark at %d", ErrFrame, w.Pos)
		}
		return w, nil
	case frameAck:
		if err := need(8); err != nil {
			return nil, err
		}
		a := &Ack{End: int64(be.Uint64(b))}
		if a.End < 0 {
			return nil, fmt.Errorf("%w: ack of %d", ErrFrame, a.End)
		}
		return a, nil
	case frameRefuse:
		if len(b) < 8 || len(b) > 8+maxReasonLen {
			return nil, fmt.Errorf("%w: refusal of %d bytes", ErrFrame, len(b))
		}
		return &Refusal{Epoch: int64(be.Uint64(b)), Reason: string(b[8:])}, nil
	}
	return nil, fmt.Errorf("%w: unknown type %d", ErrFrame, typ)
}
