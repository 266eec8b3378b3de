package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/message"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/broker/store"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// BenchmarkPullFilter measures pull throughput with an SQL92 filter that keeps 1% of the
// messages, against no filter, in one run: first from the hot tier, then from the cold tier
// (a broker whose disk was wiped reads a filesystem bucket; each cold pass on a fresh broker,
// so neither finds the other's blocks cached). Each pull asks for 32 messages, the Go
// client's batch, and is measured twice: "engine" calls the read path (readFiltered)
// directly, "wire" sends PULL_MESSAGE over a loopback connection and decodes the answer as a
// client does. Reported: queue offsets covered per second, the ratio filtered/unfiltered,
// and pulls per 1000 offsets with the filter (without: 1000/32 = 31.25). Each figure is the
// best of three alternating passes.
// go test -run '^$' -bench PullFilter -benchtime 1x ./broker/
func BenchmarkPullFilter(b *testing.B) {
	const n = 100_000
	where, err := filter.New(filter.TypeSQL92, "bucket = 7", filter.Limits{})
	if err != nil {
		b.Fatal(err)
	}
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
			c.LocalRetention = time.Hour // the hot pass reads local disk only
		}
		brk := e.startBroker(b, b.TempDir(), mut)
		ns, err := remoting.Dial(context.Background(), brk.NameServerAddr(), remoting.ClientConfig{})
		if err != nil {
			b.Fatal(err)
		}
		resp, err := ns.Invoke(context.Background(), remoting.NewRequest(remoting.CodeUpdateAndCreateTopic,
			remoting.ExtFields{"topic": "Bench", "readQueueNums": "1", "writeQueueNums": "1", "perm": "6"}, nil))
		ns.Close()
		if err != nil || resp.Code != remoting.RespSuccess {
			b.Fatalf("create topic: %v %v", err, resp)
		}
		body := []byte(strings.Repeat("z", 200))
		batch := make([][]byte, 0, 256)
		for i := 0; i < n; i += len(batch) {
			batch = batch[:0]
			for j := i; j < min(n, i+256); j++ {
				m := &message.Message{Topic: "Bench", BornTimestamp: time.Now().UnixMilli(), BornHost: brk.storeHost, StoreHost: brk.storeHost,
					Body: body, Properties: map[string]string{message.PropertyTags: "T", message.PropertyKeys: "k" + strconv.Itoa(j),
						"bucket": strconv.Itoa(j % 100), "region": "eu-west-1"}}
				rec, err := m.AppendEncoded(nil)
				if err != nil {
					b.Fatal(err)
				}
				batch = append(batch, rec)
			}
			if _, err := brk.Store().Append(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
		}
		hot := comparePulls(b, func() *Broker { return brk }, n, where)
		report(b, "hot", hot)
		// Offload the sealed segments, then read them back on a broker with a wiped disk.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		sealed := brk.Store().SealedSegments()
		if err := brk.Tier().WaitOffloaded(ctx, sealed[len(sealed)-1].EndOffset); err != nil {
			b.Fatal(err)
		}
		if err := brk.Close(ctx); err != nil {
			b.Fatal(err)
		}
		// Each cold pass runs on a broker of its own, so neither finds the other's blocks
		// in the block cache.
		var cold *Broker
		fresh := func() *Broker {
			if cold != nil {
				if err := cold.Close(ctx); err != nil {
					b.Fatal(err)
				}
			}
			cold = e.startBroker(b, b.TempDir(), mut)
			return cold
		}
		_, last, ok := fresh().Tier().QueueRange("Bench", 0)
		if !ok || last < n/2 {
			b.Fatalf("cold tier holds offsets up to %d of %d", last, n)
		}
		c := comparePulls(b, fresh, last+1, where)
		report(b, "cold", c)
		fmt.Printf("offsets/s, unfiltered → 1%% SQL92 filter: hot engine %.0f → %.0f (%.2fx), wire %.0f → %.0f (%.2fx); cold engine %.0f → %.0f (%.2fx), wire %.0f → %.0f (%.2fx)\n",
			hot.engine.none, hot.engine.sql, hot.engine.sql/hot.engine.none, hot.wire.none, hot.wire.sql, hot.wire.sql/hot.wire.none,
			c.engine.none, c.engine.sql, c.engine.sql/c.engine.none, c.wire.none, c.wire.sql, c.wire.sql/c.wire.none)
		cancel()
		_ = cold.Close(context.Background())
	}
}

type pullRates struct{ none, sql, pullsPerK float64 }

type pullComparison struct{ engine, wire pullRates }

func report(b *testing.B, tierName string, c pullComparison) {
	for _, m := range []struct {
		how string
		r   pullRates
	}{{"engine", c.engine}, {"wire", c.wire}} {
		b.ReportMetric(m.r.sql/m.r.none, tierName+"-"+m.how+"-ratio")
		b.ReportMetric(m.r.none, tierName+"-"+m.how+"-offsets/s-nofilter")
		b.ReportMetric(m.r.sql, tierName+"-"+m.how+"-offsets/s-1pct")
	}
	b.ReportMetric(c.wire.pullsPerK, tierName+"-pulls/1k-offsets-1pct")
}

// comparePulls replays queue Bench/0 up to end without a filter and with f, each pass on the
// broker next returns, through the read path and over the wire.
func comparePulls(b *testing.B, next func() *Broker, end int64, f *filter.Filter) pullComparison {
	b.Helper()
	engine := func(brk *Broker, f *filter.Filter) (int, int) {
		ctx := context.Background()
		delivered, pulls := 0, 0
		for off := int64(0); off < end; pulls++ {
			res, err := brk.readFiltered(ctx, "Bench", 0, off, 32, f, false)
			if err != nil {
				b.Fatal(err)
			}
			if res.Status != store.ReadFound && res.Status != store.ReadNoMatch || res.NextOffset <= off {
				b.Fatalf("pull at %d: status %v next %d", off, res.Status, res.NextOffset)
			}
			delivered += len(res.Entries)
			off = res.NextOffset
		}
		return delivered, pulls
	}
	wire := func(brk *Broker, f *filter.Filter) (int, int) {
		ctx := context.Background()
		c, err := remoting.Dial(ctx, brk.BrokerAddr(), remoting.ClientConfig{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		delivered, pulls := 0, 0
		for off := int64(0); off < end; pulls++ {
			ext := remoting.ExtFields{"consumerGroup": "bench", "topic": "Bench", "queueId": "0",
				"queueOffset": strconv.FormatInt(off, 10), "maxMsgNums": "32", "sysFlag": strconv.Itoa(pullSubscription),
				"commitOffset": "0", "suspendTimeoutMillis": "0", "subscription": f.Expression(), "subVersion": "0", "expressionType": f.Type()}
			resp, err := c.Invoke(ctx, remoting.NewRequest(remoting.CodePullMessage, ext, nil))
			if err != nil {
				b.Fatal(err)
			}
			nextOff, _ := resp.ExtFields.Int64("nextBeginOffset")
			if resp.Code != remoting.RespSuccess && resp.Code != remoting.RespPullRetryImmediately || nextOff <= off {
				b.Fatalf("pull at %d: code %d %q next %d", off, resp.Code, resp.Remark, nextOff)
			}
			msgs, err := message.DecodeAll(resp.Body)
			if err != nil {
				b.Fatal(err)
			}
			delivered += len(msgs)
			off = nextOff
		}
		return delivered, pulls
	}
	var out pullComparison
	for _, m := range []struct {
		replay func(*Broker, *filter.Filter) (int, int)
		into   *pullRates
	}{{engine, &out.engine}, {wire, &out.wire}} {
		// Alternate the two, three times, and keep each one's best: the machine is shared.
		var dNone, dSQL time.Duration
		var pulls int
		for range 3 {
			start := time.Now()
			all, _ := m.replay(next(), nil)
			if d := time.Since(start); dNone == 0 || d < dNone {
				dNone = d
			}
			start = time.Now()
			kept, p := m.replay(next(), f)
			if d := time.Since(start); dSQL == 0 || d < dSQL {
				dSQL = d
			}
			if int64(all) != end || kept < int(end)/100-1 || kept > int(end)/100+1 {
				b.Fatalf("replayed %d messages unfiltered and %d filtered of %d", all, kept, end)
			}
			pulls = p
		}
		*m.into = pullRates{none: float64(end) / dNone.Seconds(), sql: float64(end) / dSQL.Seconds(), pullsPerK: float64(pulls) * 1000 / float64(end)}
	}
	return out
}
