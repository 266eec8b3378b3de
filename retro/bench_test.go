package retro

import (
	"testing"
)

// benchFixture holds 2000 cold and 2000 hot messages of 700-byte bodies on queue 0.
func benchFixture(b *testing.B) (*fixture, []stored, int64) {
	f := newFixture(b)
	cold := f.build(b, 20, 20, 100)
	msgs := replay(b, f.log, 0)
	return f, msgs, cold
}

// BenchmarkOffsetForTime measures time → offset lookups: in the hot tier (consume-queue binary
// search), in the cold tier with warm caches (index and blocks cached), and in the cold tier
// with no cache (every lookup reads the segment index and a block from the filesystem bucket).
func BenchmarkOffsetForTime(b *testing.B) {
	f, msgs, cold := benchFixture(b)
	ctx := testCtx(b)
	run := func(name string, l *Log, lo, hi int64) {
		b.Run(name, func(b *testing.B) {
			i := lo
			for b.Loop() {
				want := msgs[i]
				got, err := l.OffsetForTime(ctx, testTopic, 0, want.ts)
				if err != nil || got > want.offset {
					b.Fatalf("OffsetForTime(%d) = %d, %v; want ≤ %d", want.ts, got, err, want.offset)
				}
				if i++; i >= hi {
					i = lo
				}
			}
		})
	}
	run("hot", f.log, cold, int64(len(msgs)))
	run("cold-cached", f.log, 0, cold)
	run("cold-uncached", New(f.st, f.uncachedTier(b)), 0, cold)
}

// BenchmarkReplayAcrossBoundary replays the queue from offset 0 (cold) through the hot part,
// 32 messages per read, and reports bytes of stored records per second.
func BenchmarkReplayAcrossBoundary(b *testing.B) {
	f, msgs, _ := benchFixture(b)
	ctx := testCtx(b)
	for _, c := range []struct {
		name string
		l    *Log
	}{{"cached", f.log}, {"uncached", New(f.st, f.uncachedTier(b))}} {
		b.Run(c.name, func(b *testing.B) {
			var bytes int64
			for b.Loop() {
				r := c.l.NewReader(testTopic, 0, 0, 32, 0)
				n := 0
				for {
					res, err := r.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if len(res.Records) == 0 {
						break
					}
					for _, rec := range res.Records {
						bytes += int64(len(rec))
					}
					n += len(res.Records)
				}
				if n != len(msgs) {
					b.Fatalf("replay returned %d messages, want %d", n, len(msgs))
				}
			}
			b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
			b.ReportMetric(float64(int64(b.N)*int64(len(msgs)))/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
