package integration

import (
	"context"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/meta/etcdembed"
)

// BenchmarkTierMinIOReplay offloads one queue (about 64 MiB) to MinIO through a broker, then,
// replayRounds times, on a fresh broker with an empty disk reports the time to the first message of a pull at offset 0
// and the replay throughput of the queue through the pull protocol, plus PUTs per GiB
// ingested and GETs per GiB replayed. Beside it, in the same run against the same MinIO, a
// plain loop of ranged GETs (minio-go, 32 MiB each: the tier reader's read-ahead) reads the
// segment objects the replay came from; replay-vs-GET-loop is the replay's body MiB/s over
// the loop's MiB/s (bodies are random, so compression does not shrink the objects), and
// ms-first-GET stands beside ms-first-msg. Figures are medians over the rounds; the ratio's
// min and max are reported too.
// go test -run '^$' -bench TierMinIOReplay -benchtime 1x ./integration/
func BenchmarkTierMinIOReplay(b *testing.B) {
	for b.Loop() {
		mio := startMinIO(b)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		etcd, err := etcdembed.Start(ctx, b.TempDir(), etcdembed.WithUnsafeNoFsync())
		if err != nil {
			b.Fatal(err)
		}
		defer etcd.Close()
		mc, err := meta.New(ctx, meta.Config{Endpoints: etcd.Endpoints(), Cluster: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		defer mc.Close()
		bucket := minioS3Bucket(b, mio, "bench")
		start := func() *broker.Broker {
			cfg := broker.Config{ClusterName: "bench", DataDir: b.TempDir(), NameServerListen: "127.0.0.1:0",
				BrokerListen: "127.0.0.1:0", HTTPListen: "-", Bucket: bucket, AutoCreateTopics: true,
				Store: store.Config{SegmentBytes: 16 << 20}}
			br, err := broker.New(cfg, mc)
			if err != nil {
				b.Fatal(err)
			}
			if err := br.Start(ctx); err != nil {
				b.Fatal(err)
			}
			return br
		}
		br := start()
		st := br.Store()
		host := netip.MustParseAddrPort(br.BrokerAddr())
		// Random bodies, each its own, so compression cannot shrink what MinIO serves and the
		// GET loop below reads as many bytes as the replay delivers.
		rnd := rand.New(rand.NewPCG(1, 2))
		body := make([]byte, 1000)
		t0 := time.Now()
		for st.MaxCommitLogOffset() < 64<<20 {
			batch := make([][]byte, 0, 64)
			for range 64 {
				for i := range body {
					body[i] = byte(rnd.Uint32())
				}
				m := &message.Message{Topic: "Replay", BornTimestamp: time.Now().UnixMilli(), BornHost: host, StoreHost: host, Body: body}
				rec, _ := m.AppendEncoded(nil)
				batch = append(batch, rec)
			}
			if _, err := st.Append(ctx, batch...); err != nil {
				b.Fatal(err)
			}
		}
		sealed := st.SealedSegments()
		target := sealed[len(sealed)-1].EndOffset
		if err := br.Tier().WaitOffloaded(ctx, target); err != nil {
			b.Fatal(err)
		}
		offload := time.Since(t0)
		puts, _ := br.Tier().BucketRequests()
		b.ReportMetric(float64(target)/(1<<20)/offload.Seconds(), "MiB/s-ingest+offload")
		b.ReportMetric(float64(puts)/(float64(target)/(1<<30)), "PUTs/GiB")
		if err := mc.CreateTopic(ctx, meta.TopicConfig{Name: "Replay", ReadQueues: 1, WriteQueues: 1, Perm: 6}); err != nil && !strings.Contains(err.Error(), "exist") {
			b.Fatal(err)
		}
		_ = br.Close(ctx)

		// Each round replays the queue on a fresh broker with an empty disk (everything comes
		// from MinIO, nothing from a warm block cache) and then runs the GET loop, so the two
		// share whatever else the machine is doing at the time; the figures are the medians
		// over the rounds, since a single replay of 64 MiB takes a fraction of a second and
		// one slow moment moves it a lot.
		var firsts, replays, getsPerGiB, loops, firstGets, ratios []float64
		for range replayRounds {
			r := replayOnce(ctx, b, start)
			objBytes, loop, firstGet := rangedGetLoop(b, mio, "bench/", 32<<20)
			loopRate := float64(objBytes) / (1 << 20) / loop.Seconds()
			firsts = append(firsts, float64(r.first.Microseconds())/1000)
			replays = append(replays, r.mibPerSec)
			getsPerGiB = append(getsPerGiB, r.getsPerGiB)
			loops = append(loops, loopRate)
			firstGets = append(firstGets, float64(firstGet.Microseconds())/1000)
			ratios = append(ratios, r.mibPerSec/loopRate)
		}
		b.ReportMetric(median(firsts), "ms-first-msg")
		b.ReportMetric(median(replays), "MiB/s-replay-bodies")
		b.ReportMetric(median(getsPerGiB), "GETs/GiB")
		b.ReportMetric(median(loops), "MiB/s-GET-loop")
		b.ReportMetric(median(firstGets), "ms-first-GET")
		b.ReportMetric(median(ratios), "replay-vs-GET-loop")
		b.ReportMetric(slices.Min(ratios), "replay-vs-GET-loop-min")
		b.ReportMetric(slices.Max(ratios), "replay-vs-GET-loop-max")
	}
}

// replayRounds is how many times BenchmarkTierMinIOReplay replays the queue and runs the GET
// loop beside it.
const replayRounds = 5

type replayResult struct {
	first      time.Duration // to the first message of the first pull
	mibPerSec  float64       // body bytes delivered over the replay's time
	getsPerGiB float64
}

// replayOnce starts a broker with an empty disk and pulls queue 0 of Replay from offset 0 to
// its end, 256 messages a pull, one pull at a time, as Strata's client decodes them, releasing
// each pull once its bodies are counted, as a consumer does once it has handled them.
func replayOnce(ctx context.Context, b *testing.B, start func() *broker.Broker) replayResult {
	br := start()
	defer br.Close(context.Background())
	c, err := client.Dial(ctx, br.NameServerAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	q := client.Queue{Topic: "Replay", BrokerName: broker.DefaultBrokerName, QueueID: 0, Addr: br.BrokerAddr()}
	_, gets0 := br.Tier().BucketRequests()
	t1 := time.Now()
	var first time.Duration
	var bytesOut int64
	for off := int64(0); ; {
		pr, err := c.Pull(ctx, "replay", q, off, 256, 0, "*")
		if err != nil {
			b.Fatal(err)
		}
		if !pr.Found {
			break
		}
		if first == 0 {
			first = time.Since(t1)
		}
		for _, m := range pr.Messages {
			bytesOut += int64(len(m.Body))
		}
		off = pr.NextOffset
		pr.Release() // done with the bodies: the next response may reuse their buffer
	}
	replay := time.Since(t1)
	_, gets := br.Tier().BucketRequests()
	return replayResult{first: first, mibPerSec: float64(bytesOut) / (1 << 20) / replay.Seconds(),
		getsPerGiB: float64(gets-gets0) / (float64(bytesOut) / (1 << 30))}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rangedGetLoop reads every commit-log segment object under prefix in ranges of chunk bytes, one GET at a time,
// with minio-go; it returns the bytes read, the time taken and the time of the first GET.
func rangedGetLoop(b *testing.B, m *minioServer, prefix string, chunk int64) (int64, time.Duration, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var objs []minio.ObjectInfo
	for o := range m.Client.ListObjects(ctx, m.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			b.Fatal(o.Err)
		}
		if strings.Contains(o.Key, "/segments/") && strings.HasSuffix(o.Key, ".seg") && !strings.Contains(o.Key, ".q") {
			objs = append(objs, o)
		}
	}
	var n int64
	var first time.Duration
	t0 := time.Now()
	for _, o := range objs {
		for off := int64(0); off < o.Size; off += chunk {
			opts := minio.GetObjectOptions{}
			if err := opts.SetRange(off, min(off+chunk, o.Size)-1); err != nil {
				b.Fatal(err)
			}
			obj, err := m.Client.GetObject(ctx, m.Bucket, o.Key, opts)
			if err != nil {
				b.Fatal(err)
			}
			k, err := io.Copy(io.Discard, obj)
			_ = obj.Close()
			if err != nil {
				b.Fatal(err)
			}
			if first == 0 {
				first = time.Since(t0)
			}
			n += k
		}
	}
	if n == 0 {
		b.Fatalf("no segment object under %s", prefix)
	}
	return n, time.Since(t0), first
}
