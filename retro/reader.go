package retro

import (
	"context"
	"errors"
	"fmt"

	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/tier"
)

// ReadRequest asks for a run of one queue's messages from Offset, in whichever tier holds
// them.
type ReadRequest struct {
	Topic       string
	QueueID     int32
	Offset      int64
	MaxMessages int // 0: 32
	MaxBytes    int // 0: 1 MiB; the first message is returned even if larger
	// TagCodes keeps only messages whose tag hash code (message.TagHashCode) is listed;
	// empty keeps everything.
	TagCodes []int64
}

// ReadResult holds stored records (broker/message layout) in queue order.
type ReadResult struct {
	Records [][]byte
	// NextOffset is where the next read continues: one past the last message examined
	// (filtered-out ones included), the minimum offset if Offset was below it, and Offset
	// itself when the queue has nothing newer.
	NextOffset int64
	// From is the tier the records came from (Nowhere when there were none).
	From Where
}

// Read returns messages of one queue from req.Offset on, from the cold tier while the offset
// is only there and from the hot tier from the first hot offset on, so that reading on from
// NextOffset again and again crosses the boundary with no gap and no duplicate. An offset
// below the minimum continues at the minimum.
func (l *Log) Read(ctx context.Context, req ReadRequest) (ReadResult, error) {
	if req.MaxMessages <= 0 {
		req.MaxMessages = 32
	}
	if req.MaxBytes <= 0 {
		req.MaxBytes = 1 << 20
	}
	for attempt := 0; ; attempt++ {
		b := l.Bounds(req.Topic, req.QueueID)
		off := max(req.Offset, b.Min)
		if off >= b.Max {
			return ReadResult{NextOffset: off}, nil
		}
		where := b.Locate(off)
		if where == Nowhere {
			// Between the cold end and the hot start: those offsets are held nowhere.
			off, where = b.HotMin, Hot
		}
		var res ReadResult
		var err error
		if where == Cold {
			res, err = l.readCold(ctx, req, off)
		} else {
			res, err = l.readHot(ctx, req, off)
		}
		// Local retention or tier retention can move a bound between Bounds and the read;
		// look again a few times.
		if errors.Is(err, errMoved) && attempt < 3 {
			continue
		}
		return res, err
	}
}

var errMoved = errors.New("queue bounds moved during the read")

func (l *Log) readHot(ctx context.Context, req ReadRequest, off int64) (ReadResult, error) {
	r, err := l.store.Read(ctx, store.ReadRequest{Topic: req.Topic, QueueID: req.QueueID, Offset: off,
		MaxMessages: req.MaxMessages, MaxBytes: req.MaxBytes, TagCodes: req.TagCodes})
	if err != nil {
		return ReadResult{}, fmt.Errorf("retro: read %s/%d at %d: %w", req.Topic, req.QueueID, off, err)
	}
	switch r.Status {
	case store.ReadOffsetTooSmall:
		return ReadResult{NextOffset: off}, errMoved
	case store.ReadNoMessageInQueue, store.ReadNoNewMessage, store.ReadOffsetOverflow:
		return ReadResult{NextOffset: off}, nil
	}
	res := ReadResult{NextOffset: r.NextOffset, From: Hot}
	pos := 0
	for _, e := range r.Entries {
		res.Records = append(res.Records, r.Records[pos:pos+int(e.Size):pos+int(e.Size)])
		pos += int(e.Size)
	}
	if len(res.Records) == 0 {
		res.From = Nowhere
	}
	return res, nil
}

func (l *Log) readCold(ctx context.Context, req ReadRequest, off int64) (ReadResult, error) {
	treq := tier.ReadRequest{Topic: req.Topic, QueueID: req.QueueID, Offset: off,
		MaxCount: req.MaxMessages, MaxBytes: req.MaxBytes}
	if len(req.TagCodes) > 0 {
		codes := req.TagCodes
		treq.TagFilter = func(c int64) bool {
			for _, x := range codes {
				if x == c {
					return true
				}
			}
			return false
		}
	}
	r, err := l.tier.Read(ctx, treq)
	if errors.Is(err, tier.ErrNotInTier) {
		return ReadResult{NextOffset: off}, errMoved
	}
	if err != nil {
		return ReadResult{}, fmt.Errorf("retro: %w", err)
	}
	res := ReadResult{Records: r.Records, NextOffset: r.NextOffset, From: Cold}
	if len(res.Records) == 0 {
		res.From = Nowhere
	}
	return res, nil
}

// Reader replays one queue sequentially across the tiers. The cold tier reads ahead the
// block after each one it serves, so a replay streams from the bucket. Not safe for
// concurrent use.
type Reader struct {
	log  *Log
	req  ReadRequest
	cold int64 // messages served from the cold tier
	hot  int64
}

// SetTagCodes makes the reader keep only messages with these tag hash codes
// (message.TagHashCode); none keeps everything.
func (r *Reader) SetTagCodes(codes ...int64) { r.req.TagCodes = codes }

// NewReader returns a reader of topic/queueID starting at offset (clamped up to the minimum
// offset on the first read). maxMessages and maxBytes bound each batch (0: defaults of Read).
func (l *Log) NewReader(topic string, queueID int32, offset int64, maxMessages, maxBytes int) *Reader {
	return &Reader{log: l, req: ReadRequest{Topic: topic, QueueID: queueID, Offset: offset,
		MaxMessages: maxMessages, MaxBytes: maxBytes}}
}

// Next returns the next batch; an empty batch means the reader has caught up with the
// maximum offset (call again later for newer messages).
func (r *Reader) Next(ctx context.Context) (ReadResult, error) {
	var res ReadResult
	for {
		var err error
		res, err = r.log.Read(ctx, r.req)
		if err != nil {
			return res, err
		}
		moved := res.NextOffset > r.req.Offset
		r.req.Offset = res.NextOffset
		// A filter that rejected a whole run returns nothing but moves on: keep going
		// unless caught up.
		if len(res.Records) > 0 || !moved || res.NextOffset >= r.log.MaxOffset(r.req.Topic, r.req.QueueID) {
			break
		}
	}
	switch res.From {
	case Cold:
		r.cold += int64(len(res.Records))
	case Hot:
		r.hot += int64(len(res.Records))
	}
	return res, nil
}

// Offset is the next offset the reader will read.
func (r *Reader) Offset() int64 { return r.req.Offset }

// Served returns how many messages the reader has returned from each tier.
func (r *Reader) Served() (cold, hot int64) { return r.cold, r.hot }
