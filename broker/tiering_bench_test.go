package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// BenchmarkTierEndToEnd measures, through the broker over a filesystem bucket: offload
// throughput (append until the watermark covers everything), PUTs per GiB ingested, then on
// a broker with a wiped disk the time to the first message of a pull at offset 0, cold
// replay throughput of one queue through the pull path, and GETs per GiB replayed.
// go test -run '^$' -bench TierEndToEnd -benchtime 1x ./broker/
func BenchmarkTierEndToEnd(b *testing.B) {
	const total = 64 << 20
	for b.Loop() {
		e := newTierEnv(b)
		fsb, err := objstore.NewFilesystem(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		e.bucket.Bucket = fsb
		mut := func(c *Config) {
			c.Store = store.Config{SegmentBytes: 8 << 20, MaxMessageBytes: 1 << 20}
			c.MaxMessageBytes = 512 << 10
			c.Tier = tier.Config{}
		}
		env := &testEnv{b: e.startBroker(b, b.TempDir(), mut)}
		st := env.b.Store()
		body := []byte(strings.Repeat("z", 1000))
		batch := make([][]byte, 0, 64)
		start := time.Now()
		var n int
		for ingested := 0; ingested < total; {
			batch = batch[:0]
			for range 64 {
				m := &message.Message{Topic: "Bench", QueueID: 0, BornTimestamp: time.Now().UnixMilli(), BornHost: env.b.storeHost, StoreHost: env.b.storeHost,
					Body: body, Properties: map[string]string{message.PropertyTags: "T"}}
				rec, _ := m.AppendEncoded(nil)
				batch = append(batch, rec)
				ingested += len(rec)
			}
			if _, err := st.Append(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			n += len(batch)
		}
		end := st.MaxCommitLogOffset()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		// Seal what is left and wait for the watermark.
		sealed := st.SealedSegments()
		target := sealed[len(sealed)-1].EndOffset
		if err := env.b.Tier().WaitOffloaded(ctx, target); err != nil {
			b.Fatal(err)
		}
		offloadDur := time.Since(start)
		puts, _ := env.b.Tier().BucketRequests()
		gib := float64(target) / (1 << 30)
		b.ReportMetric(float64(target)/(1<<20)/offloadDur.Seconds(), "MiB/s-ingest+offload")
		b.ReportMetric(float64(puts)/gib, "PUTs/GiB")
		_ = end
		if err := env.b.Close(ctx); err != nil {
			b.Fatal(err)
		}

		// Wiped disk: every read below is cold.
		env = &testEnv{b: e.startBroker(b, b.TempDir(), mut)}
		_, gets0 := env.b.Tier().BucketRequests()
		var f *filter.Filter // everything
		t0 := time.Now()
		res, err := env.b.readFiltered(ctx, "Bench", 0, 0, 256, f, false)
		if err != nil || res.Status != store.ReadFound {
			b.Fatalf("first cold pull: %v %v", res.Status, err)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000, "ms-first-msg")
		var bytesOut int64
		off := int64(0)
		t1 := time.Now()
		for {
			res, err := env.b.readFiltered(ctx, "Bench", 0, off, 256, f, false)
			if err != nil {
				b.Fatal(err)
			}
			if res.Status != store.ReadFound {
				break
			}
			bytesOut += int64(res.bodyBytes())
			off = res.NextOffset
		}
		replay := time.Since(t1)
		_, gets := env.b.Tier().BucketRequests()
		b.ReportMetric(float64(bytesOut)/(1<<20)/replay.Seconds(), "MiB/s-replay")
		b.ReportMetric(float64(gets-gets0)/(float64(bytesOut)/(1<<30)), "GETs/GiB")
		if off < int64(n)-int64(64*8) {
			b.Fatalf("replayed to %d of %d", off, n)
		}
		fmt.Printf("ingested %d msgs (%d bytes), offloaded %d in %v, replayed %d bytes in %v\n", n, end, target, offloadDur, bytesOut, replay)
		cancel()
		_ = env.b.Close(context.Background())
	}
}
