package query

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/apache/arrow/go/v15/parquet/pqarrow"
	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/message"
)

// exportFile plans and runs an export into a file and returns its path and stats.
func exportFile(t *testing.T, queues []Queue, from, to Bound, f *filter.Filter, opts WriterOptions) (string, Stats) {
	t.Helper()
	ctx := testCtx(t)
	ranges, err := Plan(ctx, queues, from, to)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out."+string(opts.Format))
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w, err := NewFileWriter(out, opts)
	if err != nil {
		t.Fatal(err)
	}
	var lastProgress int64
	e := &Exporter{Filter: f, ReadMessages: 37, Progress: func(offsets, _ int64) { lastProgress = offsets }}
	st, err := e.Run(ctx, ranges, w)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	var total int64
	for _, r := range ranges {
		total += r.Count()
	}
	if st.Rows > 0 && lastProgress != total {
		t.Errorf("progress ended at %d offsets, ranges cover %d", lastProgress, total)
	}
	if w.Rows() != st.Rows {
		t.Errorf("writer has %d rows, stats %d", w.Rows(), st.Rows)
	}
	return path, st
}

// readArrow reads every row of an Arrow IPC file back as messages, checking the schema.
func readArrow(t *testing.T, path string) ([]*message.Message, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f, ipc.WithAllocator(memory.NewGoAllocator()))
	if err != nil {
		t.Fatalf("open arrow file: %v", err)
	}
	defer r.Close()
	if !r.Schema().Equal(Schema) {
		t.Fatalf("schema\n%v\nwant\n%v", r.Schema(), Schema)
	}
	var out []*message.Message
	for i := 0; i < r.NumRecords(); i++ {
		rec, err := r.Record(i)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, recordMessages(t, rec)...)
	}
	return out, r.NumRecords()
}

// recordMessages turns rows back into messages, plus msg_id and host strings checked here.
func recordMessages(t *testing.T, rec arrow.Record) []*message.Message {
	t.Helper()
	col := func(i int) arrow.Array { return rec.Column(i) }
	props := col(colProperties).(*array.Map)
	pk := props.Keys().(*array.String)
	pv := props.Items().(*array.String)
	var out []*message.Message
	for i := 0; i < int(rec.NumRows()); i++ {
		m := &message.Message{
			Topic:           col(colTopic).(*array.String).Value(i),
			QueueID:         col(colQueueID).(*array.Int32).Value(i),
			QueueOffset:     col(colQueueOffset).(*array.Int64).Value(i),
			CommitLogOffset: col(colCommitLogOffset).(*array.Int64).Value(i),
			BornTimestamp:   int64(col(colBornTimestamp).(*array.Timestamp).Value(i)),
			StoreTimestamp:  int64(col(colStoreTimestamp).(*array.Timestamp).Value(i)),
			ReconsumeTimes:  col(colReconsumeTimes).(*array.Int32).Value(i),
			Body:            bytes.Clone(col(colBody).(*array.Binary).Value(i)),
			Properties:      map[string]string{},
		}
		start, end := props.ValueOffsets(i)
		for j := start; j < end; j++ {
			m.Properties[pk.Value(int(j))] = pv.Value(int(j))
		}
		checks := map[string][2]string{
			"msg_id":     {col(colMsgID).(*array.String).Value(i), ""},
			"keys":       {col(colKeys).(*array.String).Value(i), m.Properties[message.PropertyKeys]},
			"tags":       {col(colTags).(*array.String).Value(i), m.Properties[message.PropertyTags]},
			"born_host":  {col(colBornHost).(*array.String).Value(i), ""},
			"store_host": {col(colStoreHost).(*array.String).Value(i), ""},
		}
		for name, c := range checks {
			if name == "keys" || name == "tags" {
				if c[0] != c[1] {
					t.Fatalf("row %d: %s %q, properties say %q", i, name, c[0], c[1])
				}
			}
		}
		m.BornHost = mustAddrPort(t, checks["born_host"][0])
		m.StoreHost = mustAddrPort(t, checks["store_host"][0])
		if got := checks["msg_id"][0]; got != m.OffsetMsgID() {
			t.Fatalf("row %d: msg_id %s, want %s", i, got, m.OffsetMsgID())
		}
		out = append(out, m)
	}
	return out
}

// sameMessages compares exported rows with what a consumer reads, field by field.
func sameMessages(t *testing.T, got, want []*message.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("exported %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := *got[i], *want[i]
		w.Flag, w.SysFlag, w.PreparedTransactionOffset = 0, 0, 0 // not exported
		if len(w.Properties) == 0 {
			w.Properties = map[string]string{}
		}
		if len(g.Body) == 0 && len(w.Body) == 0 {
			g.Body, w.Body = nil, nil
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("row %d differs:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func (f *fixture) all() []*message.Message {
	return append(append([]*message.Message(nil), f.want[0]...), f.want[1]...)
}

func TestExportArrowSpansBothTiers(t *testing.T) {
	f := newFixture(t, 600)
	path, st := exportFile(t, f.queues(false), Bound{}, Bound{}, nil, WriterOptions{Format: FormatArrow, BatchRows: 100})
	got, batches := readArrow(t, path)
	sameMessages(t, got, f.all())
	if st.ColdRows == 0 || st.HotRows == 0 || st.Rows != 1200 || st.Skipped != 0 {
		t.Fatalf("stats %+v: want cold and hot rows, 1200 in all", st)
	}
	if batches < 12 {
		t.Fatalf("%d record batches; rows should be cut every 100", batches)
	}
	var bytes int64
	for _, m := range f.all() {
		bytes += recordSize(m)
	}
	if st.Bytes != bytes {
		t.Fatalf("stats count %d message bytes, want %d", st.Bytes, bytes)
	}
}

func TestExportOffsetAndTimeBounds(t *testing.T) {
	f := newFixture(t, 600)
	// Offsets: [100, 550) of each queue, across the tier boundary.
	path, _ := exportFile(t, f.queues(false), Bound{Set: true, Offset: 100}, Bound{Set: true, Offset: 550}, nil, WriterOptions{})
	got, _ := readArrow(t, path)
	sameMessages(t, got, append(append([]*message.Message(nil), f.want[0][100:550]...), f.want[1][100:550]...))

	// Times: from the store time of queue 0's message 50 (cold) to that of message 580 (hot).
	fromMs, toMs := f.want[0][50].StoreTimestamp, f.want[0][580].StoreTimestamp
	var want []*message.Message
	for q := int32(0); q < 2; q++ {
		for _, m := range f.want[q] {
			if m.StoreTimestamp >= fromMs && m.StoreTimestamp < toMs {
				want = append(want, m)
			}
		}
	}
	path, _ = exportFile(t, f.queues(false), Bound{Set: true, IsTime: true, TimeMs: fromMs}, Bound{Set: true, IsTime: true, TimeMs: toMs}, nil, WriterOptions{})
	got, _ = readArrow(t, path)
	sameMessages(t, got, want)
}

func TestExportTagFilter(t *testing.T) {
	f := newFixture(t, 600)
	path, st := exportFile(t, f.queues(false), Bound{}, Bound{}, mustFilter(t, filter.TypeTag, "TagA || TagC"), WriterOptions{BatchBytes: 16 << 10})
	got, _ := readArrow(t, path)
	var want []*message.Message
	for _, m := range f.all() {
		if m.Tags() == "TagA" || m.Tags() == "TagC" {
			want = append(want, m)
		}
	}
	sameMessages(t, got, want)
	if st.ColdRows == 0 || st.HotRows == 0 {
		t.Fatalf("stats %+v: want rows from both tiers", st)
	}
}

func mustFilter(t *testing.T, exprType, expr string) *filter.Filter {
	t.Helper()
	f, err := filter.New(exprType, expr, filter.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// An SQL92 filter keeps the same rows whether they come from the bucket or the broker, and
// with no broker at all.
func TestExportSQL92Filter(t *testing.T) {
	f := newFixture(t, 600)
	where := mustFilter(t, filter.TypeSQL92, "order BETWEEN 100 AND 590 AND TAGS <> 'TagB'")
	keep := func(m *message.Message) bool {
		tag, ok := m.Properties[message.PropertyTags]
		n, _ := strconv.Atoi(m.Properties["order"])
		return ok && tag != "TagB" && n >= 100 && n <= 590 // a missing TAGS makes <> null
	}
	var want []*message.Message
	for _, m := range f.all() {
		if keep(m) {
			want = append(want, m)
		}
	}
	path, st := exportFile(t, f.queues(false), Bound{}, Bound{}, where, WriterOptions{})
	got, _ := readArrow(t, path)
	sameMessages(t, got, want)
	if st.ColdRows == 0 || st.HotRows == 0 {
		t.Fatalf("stats %+v: want rows from both tiers", st)
	}
	// Brokerless: the bucket's part, filtered the same way.
	path, _ = exportFile(t, f.queues(true), Bound{}, Bound{}, where, WriterOptions{})
	got, _ = readArrow(t, path)
	var coldWant []*message.Message
	for q := int32(0); q < 2; q++ {
		_, last, _ := f.reader.QueueRange(testTopic, q)
		for _, m := range f.want[q][:last+1] {
			if keep(m) {
				coldWant = append(coldWant, m)
			}
		}
	}
	sameMessages(t, got, coldWant)
}

func TestExportEmptyRange(t *testing.T) {
	f := newFixture(t, 300)
	for _, tc := range []struct {
		name     string
		from, to Bound
		tags     string
	}{
		{"from equals to", Bound{Set: true, Offset: 10}, Bound{Set: true, Offset: 10}, ""},
		{"after the end", Bound{Set: true, Offset: 5000}, Bound{}, ""},
		{"time after every message", Bound{Set: true, IsTime: true, TimeMs: f.want[1][299].StoreTimestamp + 1}, Bound{}, ""},
		{"no message has the tag", Bound{}, Bound{}, "NoSuchTag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, st := exportFile(t, f.queues(false), tc.from, tc.to, mustFilter(t, filter.TypeTag, tc.tags), WriterOptions{})
			got, _ := readArrow(t, path)
			if len(got) != 0 || st.Rows != 0 {
				t.Fatalf("%d rows (stats %+v), want none", len(got), st)
			}
		})
	}
}

func TestExportBrokerlessReadsTheBucketOnly(t *testing.T) {
	f := newFixture(t, 600)
	// Stop the hot tier: whatever is exported comes from the bucket.
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}
	path, st := exportFile(t, f.queues(true), Bound{}, Bound{}, nil, WriterOptions{})
	got, _ := readArrow(t, path)
	var want []*message.Message
	for q := int32(0); q < 2; q++ {
		_, last, _ := f.reader.QueueRange(testTopic, q)
		want = append(want, f.want[q][:last+1]...)
	}
	sameMessages(t, got, want)
	if st.HotRows != 0 || len(st.Incomplete) != 0 {
		t.Fatalf("stats %+v: an unbounded brokerless export ends at the cold tier's end", st)
	}
	// Asking past the cold end without a broker reports the missing part.
	_, st = exportFile(t, f.queues(true), Bound{}, Bound{Set: true, Offset: 600}, nil, WriterOptions{})
	if len(st.Incomplete) != 2 {
		t.Fatalf("stats %+v: want both queues reported incomplete", st)
	}
}

func TestExportParquetReadBack(t *testing.T) {
	f := newFixture(t, 400)
	path, st := exportFile(t, f.queues(false), Bound{}, Bound{}, nil, WriterOptions{Format: FormatParquet, BatchRows: 128})
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	if pf.NumRowGroups() < 6 {
		t.Fatalf("%d row groups, want one per 128-row batch", pf.NumRowGroups())
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 100}, memory.NewGoAllocator())
	if err != nil {
		t.Fatal(err)
	}
	rr, err := fr.GetRecordReader(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Release()
	if !sameFields(rr.Schema(), Schema) {
		t.Fatalf("parquet schema read back as\n%v\nwant\n%v", rr.Schema(), Schema)
	}
	var got []*message.Message
	for rr.Next() {
		got = append(got, recordMessages(t, rr.Record())...)
	}
	if err := rr.Err(); err != nil && err.Error() != "EOF" {
		t.Fatal(err)
	}
	sameMessages(t, got, f.all())
	if st.Rows != 800 {
		t.Fatalf("stats %+v", st)
	}
}

func TestParseBound(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Bound
		bad  bool
	}{
		{"", Bound{}, false},
		{"42", Bound{Set: true, Offset: 42}, false},
		{"2026-01-02T03:04:05.5Z", Bound{Set: true, IsTime: true, TimeMs: 1767323045500}, false},
		{"2026-01-02T03:04:05+01:00", Bound{Set: true, IsTime: true, TimeMs: 1767319445000}, false},
		{"-1", Bound{}, true},
		{"yesterday", Bound{}, true},
	} {
		got, err := ParseBound(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseBound(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// sameFields compares names and types, ignoring the field metadata Parquet adds.
func sameFields(a, b *arrow.Schema) bool {
	if a.NumFields() != b.NumFields() {
		return false
	}
	for i := range a.Fields() {
		fa, fb := a.Field(i), b.Field(i)
		if fa.Name != fb.Name || !arrow.TypeEqual(fa.Type, fb.Type) {
			return false
		}
	}
	return true
}
