package query

import (
	"net/netip"
	"sort"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/stratamq/strata/broker/message"
)

// Column positions of Schema.
const (
	colTopic = iota
	colQueueID
	colQueueOffset
	colCommitLogOffset
	colMsgID
	colKeys
	colTags
	colBornTimestamp
	colStoreTimestamp
	colBornHost
	colStoreHost
	colReconsumeTimes
	colProperties
	colBody
)

// Schema is the layout of an export: one row per message. Timestamps are milliseconds since
// the Unix epoch, in UTC; msg_id is the offset message id (store host and commit-log
// offset); keys is the KEYS property as stored (space-separated); properties holds every
// property, the ones with their own column included, with keys sorted.
var Schema = arrow.NewSchema([]arrow.Field{
	{Name: "topic", Type: arrow.BinaryTypes.String},
	{Name: "queue_id", Type: arrow.PrimitiveTypes.Int32},
	{Name: "queue_offset", Type: arrow.PrimitiveTypes.Int64},
	{Name: "commitlog_offset", Type: arrow.PrimitiveTypes.Int64},
	{Name: "msg_id", Type: arrow.BinaryTypes.String},
	{Name: "keys", Type: arrow.BinaryTypes.String},
	{Name: "tags", Type: arrow.BinaryTypes.String},
	{Name: "born_timestamp", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "store_timestamp", Type: arrow.FixedWidthTypes.Timestamp_ms},
	{Name: "born_host", Type: arrow.BinaryTypes.String},
	{Name: "store_host", Type: arrow.BinaryTypes.String},
	{Name: "reconsume_times", Type: arrow.PrimitiveTypes.Int32},
	{Name: "properties", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
	{Name: "body", Type: arrow.BinaryTypes.Binary},
}, nil)

// rowBuilder accumulates rows of Schema into one record batch.
type rowBuilder struct {
	b      *array.RecordBuilder
	topic  *array.StringBuilder
	qid    *array.Int32Builder
	qoff   *array.Int64Builder
	clog   *array.Int64Builder
	msgID  *array.StringBuilder
	keys   *array.StringBuilder
	tags   *array.StringBuilder
	born   *array.TimestampBuilder
	store  *array.TimestampBuilder
	bhost  *array.StringBuilder
	shost  *array.StringBuilder
	recons *array.Int32Builder
	props  *array.MapBuilder
	pkeys  *array.StringBuilder
	pvals  *array.StringBuilder
	body   *array.BinaryBuilder

	rows, bytes int
	names       []string // reused for sorting property keys
}

func newRowBuilder(mem memory.Allocator) *rowBuilder {
	b := array.NewRecordBuilder(mem, Schema)
	r := &rowBuilder{
		b:      b,
		topic:  b.Field(colTopic).(*array.StringBuilder),
		qid:    b.Field(colQueueID).(*array.Int32Builder),
		qoff:   b.Field(colQueueOffset).(*array.Int64Builder),
		clog:   b.Field(colCommitLogOffset).(*array.Int64Builder),
		msgID:  b.Field(colMsgID).(*array.StringBuilder),
		keys:   b.Field(colKeys).(*array.StringBuilder),
		tags:   b.Field(colTags).(*array.StringBuilder),
		born:   b.Field(colBornTimestamp).(*array.TimestampBuilder),
		store:  b.Field(colStoreTimestamp).(*array.TimestampBuilder),
		bhost:  b.Field(colBornHost).(*array.StringBuilder),
		shost:  b.Field(colStoreHost).(*array.StringBuilder),
		recons: b.Field(colReconsumeTimes).(*array.Int32Builder),
		props:  b.Field(colProperties).(*array.MapBuilder),
		body:   b.Field(colBody).(*array.BinaryBuilder),
	}
	r.pkeys = r.props.KeyBuilder().(*array.StringBuilder)
	r.pvals = r.props.ItemBuilder().(*array.StringBuilder)
	return r
}

func hostString(h netip.AddrPort) string {
	if !h.IsValid() {
		return ""
	}
	return h.String()
}

// add appends one message as a row.
func (r *rowBuilder) add(m *message.Message) {
	r.topic.Append(m.Topic)
	r.qid.Append(m.QueueID)
	r.qoff.Append(m.QueueOffset)
	r.clog.Append(m.CommitLogOffset)
	r.msgID.Append(m.OffsetMsgID())
	r.keys.Append(m.Properties[message.PropertyKeys])
	r.tags.Append(m.Properties[message.PropertyTags])
	r.born.Append(arrow.Timestamp(m.BornTimestamp))
	r.store.Append(arrow.Timestamp(m.StoreTimestamp))
	r.bhost.Append(hostString(m.BornHost))
	r.shost.Append(hostString(m.StoreHost))
	r.recons.Append(m.ReconsumeTimes)
	r.props.Append(true)
	r.names = r.names[:0]
	for k := range m.Properties {
		r.names = append(r.names, k)
	}
	sort.Strings(r.names)
	n := len(m.Topic) + len(m.Body) + 64
	for _, k := range r.names {
		v := m.Properties[k]
		r.pkeys.Append(k)
		r.pvals.Append(v)
		n += len(k) + len(v)
	}
	r.body.Append(m.Body)
	r.rows++
	r.bytes += n
}

// flush returns the rows built so far as a record batch (nil if none) and starts anew.
func (r *rowBuilder) flush() arrow.Record {
	if r.rows == 0 {
		return nil
	}
	r.rows, r.bytes = 0, 0
	return r.b.NewRecord()
}

func (r *rowBuilder) release() { r.b.Release() }
