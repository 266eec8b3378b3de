package tier

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/message"

	"github.com/stratamq/strata/tier/objstore"
)

const benchSegmentRecords = 8192 // × ~1.1 KiB ≈ 9 MiB per segment

// BenchmarkOffload measures offload throughput of one queue into the filesystem bucket.
func BenchmarkOffload(b *testing.B) {
	g := newLogGen()
	seg := g.segment(b, benchSegmentRecords, queueKeys(1, 1), 1024)
	size := seg.end - seg.base
	bucket, err := objstore.NewFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	tr := openTier(b, Config{Bucket: bucket, Pointers: NewMemoryPointers(), ReadOnly: true})
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, err := tr.upload(waitCtx(b), 1, seg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColdReplay measures replay of one queue from the filesystem bucket with a cold
// cache (a new tier per iteration).
func BenchmarkColdReplay(b *testing.B) {
	g := newLogGen()
	bucket, err := objstore.NewFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ptrs := NewMemoryPointers()
	w := openTier(b, Config{Bucket: bucket, Pointers: ptrs})
	for range 2 {
		w.Submit(g.segment(b, benchSegmentRecords, queueKeys(1, 1), 1024))
	}
	if err := w.WaitOffloaded(waitCtx(b), g.pos); err != nil {
		b.Fatal(err)
	}
	w.Close()
	k := queueKeys(1, 1)[0]
	var total int64
	for _, r := range g.want[k] {
		total += int64(len(r))
	}
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		tr := openTier(b, Config{Bucket: bucket, Pointers: ptrs, ReadOnly: true})
		if got := readQueue(b, tr, k, 1024); len(got) != len(g.want[k]) {
			b.Fatalf("replayed %d records, want %d", len(got), len(g.want[k]))
		}
		tr.Close()
	}
}

// BenchmarkRequestsPerGiB reports PUTs per GiB ingested and, for a replay of every queue
// from offset 0 with a cold cache (queues one after another, pages of 1,024 records), GETs
// per GiB replayed, replay throughput and the time to the first record of the first read.
// Segments are generated on the fly (records of ~1.2 KiB, bodies half random letters, half
// repeated, so snappy compresses about 2×), spread round-robin over the queues, into the
// memory bucket, default Config (1 MiB blocks, 32 MiB read-ahead, 256 MiB cache).
// readahead=off is one block per GET, as before coalescing. compacted=on rows run one
// compaction pass (compact.go; default sizes, CompactMinRuns 2) before the replay and also
// report GETs per replayed queue and the pass's duration. The 1 GiB-segment case (the
// store's default segment size) takes half a minute and ~3 GiB of memory; run it with
// STRATA_TIER_BIG_BENCH=1 (GOGC=25 helps).
//
//	go test -run '^$' -bench RequestsPerGiB -benchtime 1x ./tier/
func BenchmarkRequestsPerGiB(b *testing.B) {
	type layout struct {
		queues int
		segMiB int64
		segs   int
	}
	layouts := []layout{{1, 9, 4}, {1, 256, 2}, {100, 9, 4}, {100, 256, 2}, {1000, 9, 4}, {1000, 256, 1}}
	if os.Getenv("STRATA_TIER_BIG_BENCH") != "" {
		layouts = append(layouts, layout{100, 1024, 1})
	}
	for _, l := range layouts {
		for _, ra := range []bool{false, true} {
			name := fmt.Sprintf("queues=%d/seg=%dMiB/readahead=%v", l.queues, l.segMiB, map[bool]string{false: "off", true: "on"}[ra])
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					benchReplay(b, l.queues, l.segMiB<<20, l.segs, !ra, false)
				}
			})
		}
	}
	compacted := []layout{{100, 9, 4}, {100, 9, 16}, {100, 256, 2}, {1000, 9, 4}, {1000, 9, 16}, {1000, 64, 4}}
	for _, l := range compacted {
		name := fmt.Sprintf("queues=%d/seg=%dMiB/segs=%d/readahead=on/compacted=on", l.queues, l.segMiB, l.segs)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				benchReplay(b, l.queues, l.segMiB<<20, l.segs, false, true)
			}
		})
	}
}

func benchReplay(b *testing.B, queues int, segBytes int64, segs int, noReadAhead, compact bool) {
	bucket := objstore.NewMemory()
	ptrs := NewMemoryPointers()
	w := openTier(b, Config{Bucket: bucket, Pointers: ptrs, DisableCompaction: true, CompactMinRuns: 2})
	keys := queueKeys(1, queues)
	var pos int64
	offsets := make([]int64, queues)
	for range segs {
		seg := newStreamSegment(b, pos, segBytes, keys, offsets)
		w.Submit(seg)
		pos = seg.end
	}
	if err := w.WaitOffloaded(waitCtx(b), pos); err != nil {
		b.Fatal(err)
	}
	var compactDur time.Duration
	if compact {
		start := time.Now()
		st, err := w.Compact(waitCtx(b))
		if err != nil {
			b.Fatal(err)
		}
		if segs > 1 && st.Objects != queues {
			b.Fatalf("compaction wrote %d objects, want %d", st.Objects, queues)
		}
		compactDur = time.Since(start)
	}
	w.Close()
	puts, _ := w.BucketRequests()
	var stored int64
	err := bucket.List(context.Background(), "", func(name string) error {
		if strings.HasSuffix(name, ".seg") {
			a, err := bucket.Attributes(context.Background(), name)
			stored += a.Size
			return err
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	gib := float64(pos) / (1 << 30)

	r := openTier(b, Config{Bucket: bucket, Pointers: ptrs, ReadOnly: true, DisableReadAhead: noReadAhead})
	_, gets0 := r.BucketRequests()
	start := time.Now()
	var firstMsg time.Duration
	var bytesOut int64
	for qi, k := range keys {
		off := int64(0)
		for {
			res, err := r.Read(waitCtx(b), ReadRequest{Topic: k.topic, QueueID: k.queue, Offset: off, MaxCount: 1024})
			if errors.Is(err, ErrNotInTier) {
				break
			}
			if err != nil {
				b.Fatalf("read %v at %d: %v", k, off, err)
			}
			if firstMsg == 0 {
				firstMsg = time.Since(start)
			}
			for _, rec := range res.Records {
				h, err := message.ParseRecordHeader(rec)
				if err != nil || h.QueueOffset != off {
					b.Fatalf("%v: record at offset %d, want %d (%v)", k, h.QueueOffset, off, err)
				}
				off++
				bytesOut += int64(len(rec))
			}
		}
		if off != offsets[qi] {
			b.Fatalf("%v: replayed %d records, want %d", k, off, offsets[qi])
		}
	}
	dur := time.Since(start)
	_, gets := r.BucketRequests()
	r.Close()
	b.ReportMetric(float64(puts)/gib, "PUTs/GiB")
	b.ReportMetric(float64(gets-gets0)/gib, "GETs/GiB")
	b.ReportMetric(float64(bytesOut)/(1<<20)/dur.Seconds(), "MiB/s-replay")
	b.ReportMetric(float64(firstMsg.Microseconds())/1000, "ms-first-msg")
	b.ReportMetric(float64(pos)/float64(stored), "compression")
	b.ReportMetric(float64(pos)/float64(segs*queues)/(1<<20), "MiB/run")
	if compact {
		b.ReportMetric(float64(gets-gets0)/float64(queues), "GETs/queue")
		b.ReportMetric(compactDur.Seconds(), "s-compact")
	}
}

// streamSegment generates its records on every Records call instead of holding them:
// record i goes to queue i mod len(keys), queue offsets continue from offsets (which
// newStreamSegment advances), every record has the same size.
type streamSegment struct {
	base, end int64
	n         int
	keys      []queueKey
	first     []int64
}

const streamBodyBytes = 1024

func newStreamSegment(tb testing.TB, base, size int64, keys []queueKey, offsets []int64) *streamSegment {
	tb.Helper()
	s := &streamSegment{base: base, keys: keys, first: slices.Clone(offsets)}
	rec, err := s.record(nil, 0, 0, make([]byte, streamBodyBytes))
	if err != nil {
		tb.Fatal(err)
	}
	s.n = int((size - 64) / int64(len(rec)+8))
	for i := range s.n {
		offsets[i%len(keys)]++
	}
	s.end = base + 64 + int64(s.n)*int64(len(rec)+8)
	return s
}

func (s *streamSegment) Base() int64 { return s.base }
func (s *streamSegment) End() int64  { return s.end }

func (s *streamSegment) record(dst []byte, i int, pos int64, body []byte) ([]byte, error) {
	k := s.keys[i%len(s.keys)]
	seq := s.base + int64(i)
	m := message.Message{Topic: k.topic, QueueID: k.queue, QueueOffset: s.first[i%len(s.keys)] + int64(i/len(s.keys)),
		CommitLogOffset: pos, BornTimestamp: 1_700_000_000_000 + seq, StoreTimestamp: 1_700_000_000_000 + seq, Body: body,
		Properties: map[string]string{
			message.PropertyTags:    fmt.Sprintf("tag%d", i%3),
			message.PropertyKeys:    fmt.Sprintf("key-%020d", seq),
			message.PropertyUniqKey: fmt.Sprintf("UNIQ%020d", seq),
		}}
	return m.AppendEncoded(dst)
}

func (s *streamSegment) Records(ctx context.Context, fn func([]byte) error) error {
	rng := rand.New(rand.NewPCG(uint64(s.base), 7))
	body := make([]byte, streamBodyBytes)
	for j := streamBodyBytes / 2; j < streamBodyBytes; j++ {
		body[j] = byte('a' + j%26)
	}
	var buf []byte
	pos := s.base + 64
	for i := range s.n {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		for j := 0; j < streamBodyBytes/2; j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				body[j+k] = byte('a' + (v>>(k*5))%26)
			}
		}
		var err error
		if buf, err = s.record(buf[:0], i, pos, body); err != nil {
			return err
		}
		if err := fn(buf); err != nil {
			return err
		}
		pos += int64(len(buf)) + 8
	}
	return nil
}

// BenchmarkSegmentEncode measures regrouping a segment's records by queue (SegmentEncoder:
// Add and Finish, no upload), for a segment spread over few queues and over many (10,000
// topics of 4 queues, as `strata bench --topics 10000` writes them): each segment sized from
// the one before as the offload does (next), and a broker's first segment, with none before
// it (first).
//
//	go test -run=NONE -bench=BenchmarkSegmentEncode -benchmem ./tier/
func BenchmarkSegmentEncode(b *testing.B) {
	for _, queues := range []int{4, 4000, 40000} {
		for _, first := range []bool{false, true} {
			name := fmt.Sprintf("queues=%d/next", queues)
			if first {
				name = fmt.Sprintf("queues=%d/first", queues)
			}
			b.Run(name, func(b *testing.B) {
				g := newLogGen()
				seg := g.segment(b, 1<<18, queueKeys(queues/4, 4), 1024)
				b.SetBytes(seg.end - seg.base)
				b.ReportAllocs()
				b.ResetTimer()
				// As the offload keeps them from one segment to the next.
				var hints sizeHints
				chunks := chunkPool{max: encoderChunksKept, idle: time.Hour}
				defer chunks.close()
				for b.Loop() {
					if first {
						hints = sizeHints{}
					}
					mem := offHeap{pool: &chunks} // as the offload encodes, and frees once the puts end
					_, err := encodeSegment(context.Background(), "bench", 1, seg, 0, 0, &hints, &mem)
					mem.free()
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
