package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/client"
	"github.com/stratamq/strata/broker/filter"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/query"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
	"golang.org/x/term"
)

const exportUsage = `usage: strata export --topic T --out FILE [flags]

Exports a topic's messages to an Arrow IPC file (or Parquet), one row per message. Cold
ranges are read straight from the bucket; hot ranges come through the brokers.

Filters: --tag "TagA || TagB" or --where "<SQL92>" (RocketMQ's property filter language,
e.g. "a BETWEEN 10 AND 20 AND color = 'red'"); rows are filtered before they are built.

Where the data comes from:
  --namesrv ADDR           (default) learn the brokers, the bucket and the tier pointers
                           from the cluster; cold data is read from the bucket directly
  --etcd URLS --bucket U   no broker needed: routes and tier pointers from etcd, data from
                           the bucket; only what is offloaded is exported
Bucket credentials come from the standard AWS chain (environment, shared files, role).

--from and --to take a queue offset or a time: ` + timeForms + `.
`

func exportCmd() *cobra.Command {
	return leaf("export", "export a topic's messages to an Arrow IPC (or Parquet) file", exportUsage, nil, exportFlags)
}

func exportFlags(fs *pflag.FlagSet) runFunc {
	etcd := fs.String("etcd", "", "comma-separated etcd endpoints: export from the bucket with no broker (needs --bucket)")
	cluster := fs.String("cluster", broker.DefaultClusterName, "cluster name (with --etcd)")
	bucket := fs.String("bucket", "", "bucket URL (file://DIR or s3://bucket/prefix); default: the one the brokers use")
	var s3 S3YAML
	fs.StringVar(&s3.Endpoint, "s3-endpoint", os.Getenv("STRATA_S3_ENDPOINT"), "S3 endpoint URL for an s3:// --bucket")
	fs.StringVar(&s3.Region, "s3-region", os.Getenv("STRATA_S3_REGION"), "S3 region")
	fs.BoolVar(&s3.PathStyle, "s3-path-style", os.Getenv("STRATA_S3_PATH_STYLE") == "true", "path-style S3 addressing (MinIO)")
	topic := fs.String("topic", "", "topic to export")
	queue := fs.Int("queue", -1, "export only this queue id (default: every queue)")
	from := fs.String("from", "", "start: a queue offset or a time (see -h; default: the oldest message)")
	to := fs.String("to", "", "end, exclusive: a queue offset or a time (see -h; default: the newest message now)")
	tags := fs.String("tag", "*", "tag filter, e.g. \"TagA || TagB\"")
	where := fs.String("where", "", "SQL92 property filter, e.g. \"a BETWEEN 10 AND 20 AND color = 'red'\"; cold data is filtered as it is read from the bucket")
	out := fs.String("out", "", "output file (- for standard output)")
	format := fs.String("format", "arrow", "file format: arrow (Arrow IPC file) or parquet")
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		if *topic == "" || *out == "" {
			return errors.New("--topic and --out are required (see strata export -h)")
		}
		f, err := query.ParseFormat(*format)
		if err != nil {
			return fmt.Errorf("--format: %w", err)
		}
		exprType, expr, err := subscriptionFlags(*tags, *where)
		if err != nil {
			return err
		}
		rows, err := filter.New(exprType, expr, filter.Limits{})
		if err != nil {
			return err
		}
		fromB, err := parseBound(*from)
		if err != nil {
			return usageError{fmt.Errorf("--from: %w", err)}
		}
		toB, err := parseBound(*to)
		if err != nil {
			return usageError{fmt.Errorf("--to: %w", err)}
		}
		var src *exportSources
		if *etcd != "" {
			if *bucket == "" {
				return errors.New("--etcd needs --bucket: the bucket the brokers offload to")
			}
			src, err = brokerlessSources(ctx, splitList(*etcd), *cluster, *bucket, s3, *topic)
		} else {
			src, err = clusterSources(ctx, namesrvAddr(), *bucket, s3, *topic)
		}
		if err != nil {
			return err
		}
		defer src.Close()
		var queues []query.Queue
		for _, q := range src.queues {
			if *queue < 0 || int(q.QueueID) == *queue {
				queues = append(queues, q)
			}
		}
		if len(queues) == 0 {
			return fmt.Errorf("topic %s has no queue %d", *topic, *queue)
		}
		ranges, err := query.Plan(ctx, queues, fromB, toB)
		if err != nil {
			return err
		}
		var total int64
		for _, r := range ranges {
			total += r.Count()
		}

		var w io.Writer = stdout
		var file *os.File
		if *out != "-" {
			if file, err = os.Create(*out); err != nil {
				return fmt.Errorf("create %s: %w", *out, err)
			}
			defer file.Close()
			w = file
		}
		fail := func(err error) error {
			if file != nil {
				file.Close()
				os.Remove(*out)
			}
			return err
		}
		fw, err := query.NewFileWriter(w, query.WriterOptions{Format: f})
		if err != nil {
			return fail(err)
		}
		e := &query.Exporter{Filter: rows}
		if term.IsTerminal(int(os.Stderr.Fd())) {
			bar := progressbar.NewOptions64(total, progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionSetDescription("export "+*topic), progressbar.OptionShowCount(),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
			e.Progress = func(offsets, _ int64) { _ = bar.Set64(offsets) }
			defer bar.Finish()
		}
		start := time.Now()
		st, err := e.Run(ctx, ranges, fw)
		if err != nil {
			return fail(err)
		}
		if err := fw.Close(); err != nil {
			return fail(err)
		}
		if file != nil {
			if err := file.Close(); err != nil {
				return fail(fmt.Errorf("close %s: %w", *out, err))
			}
		}
		secs := time.Since(start).Seconds()
		report := stdout
		if *out == "-" {
			report = os.Stderr
		}
		fmt.Fprintf(report, "exported %d messages (%d from the bucket, %d through brokers; %.1f MB of message data, %.1f MB/s) to %s\n",
			st.Rows, st.ColdRows, st.HotRows, float64(st.Bytes)/1e6, float64(st.Bytes)/1e6/max(secs, 1e-9), *out)
		if st.Skipped > 0 {
			fmt.Fprintf(report, "note: %d offsets in the range are in neither tier any more (retention)\n", st.Skipped)
		}
		for _, r := range st.Incomplete {
			fmt.Fprintf(report, "note: %s/%s queue %d offsets %d..%d are not offloaded yet and no broker was asked; run without --etcd to include them\n",
				r.Group, r.Topic, r.QueueID, r.From, r.To)
		}
		return nil
	}
}

// exportSources are the per-queue readers of an export and what to close after it.
type exportSources struct {
	queues  []query.Queue
	closers []io.Closer
}

func (s *exportSources) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i].Close()
	}
}

// openColdTier opens a read-only tier with a small block cache: an export streams, so a
// large cache would only raise its memory.
func openColdTier(ctx context.Context, b objstore.Bucket, ptrs tier.PointerStore, prefix string) (*tier.Tier, error) {
	t, err := tier.Open(ctx, tier.Config{Bucket: b, Pointers: ptrs, Prefix: prefix, ReadOnly: true,
		CacheBytes: 32 << 20, IndexCacheBytes: 16 << 20})
	if err != nil {
		return nil, fmt.Errorf("open the cold tier %s: %w", prefix, err)
	}
	return t, nil
}

func openBucket(ctx context.Context, url string, s3 objstore.S3Options) (objstore.Bucket, error) {
	b, err := objstore.Open(ctx, url, s3)
	if err != nil {
		return nil, fmt.Errorf("open bucket: %w", err)
	}
	return b, nil
}

// brokerlessSources reads routes and tier pointers from etcd and data from the bucket.
func brokerlessSources(ctx context.Context, etcd []string, cluster, bucketURL string, s3 S3YAML, topic string) (*exportSources, error) {
	src := &exportSources{}
	mc, err := meta.New(ctx, meta.Config{Endpoints: etcd, Cluster: cluster})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", etcd, err)
	}
	src.closers = append(src.closers, mc)
	route, err := mc.GetRoute(ctx, topic)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("route of topic %s in cluster %s: %w", topic, cluster, err)
	}
	b, err := openBucket(ctx, bucketURL, objstore.S3Options{Endpoint: s3.Endpoint, Region: s3.Region, UsePathStyle: s3.PathStyle})
	if err != nil {
		src.Close()
		return nil, err
	}
	for _, g := range route.Queues {
		t, err := openColdTier(ctx, b, tier.MetaPointers{Client: mc, Group: g.Group}, cluster+"/"+g.Group)
		if err != nil {
			src.Close()
			return nil, err
		}
		src.closers = append(src.closers, t)
		for q := int32(0); q < g.ReadQueues; q++ {
			src.queues = append(src.queues, query.Queue{Group: g.Group, Topic: topic, QueueID: q, Cold: t})
		}
	}
	return src, nil
}

// clusterSources asks the name server for the topic's route and each broker group's master
// for its tier location; cold data is then read from the bucket, hot data through the broker.
func clusterSources(ctx context.Context, namesrv, bucketOverride string, s3 S3YAML, topic string) (*exportSources, error) {
	c, err := dialClient(ctx, namesrv)
	if err != nil {
		return nil, err
	}
	src := &exportSources{closers: []io.Closer{c}}
	route, err := c.Route(ctx, topic)
	if err != nil {
		src.Close()
		return nil, err
	}
	buckets := map[string]objstore.Bucket{}
	byGroup := map[string]*tier.Tier{}
	for _, q := range route.Queues(topic) {
		t, ok := byGroup[q.BrokerName]
		if !ok {
			loc, err := fetchTierLocation(ctx, q.Addr)
			if err != nil {
				src.Close()
				return nil, err
			}
			if loc.Enabled {
				url := loc.Bucket
				opts := objstore.S3Options{Endpoint: loc.S3Endpoint, Region: loc.S3Region, UsePathStyle: loc.S3PathStyle}
				if bucketOverride != "" {
					url = bucketOverride
					opts = objstore.S3Options{Endpoint: s3.Endpoint, Region: s3.Region, UsePathStyle: s3.PathStyle}
				}
				if url == "" {
					src.Close()
					return nil, fmt.Errorf("broker group %s does not publish its bucket URL; pass --bucket", q.BrokerName)
				}
				b, ok := buckets[url]
				if !ok {
					if b, err = openBucket(ctx, url, opts); err != nil {
						src.Close()
						return nil, err
					}
					buckets[url] = b
				}
				if t, err = openColdTier(ctx, b, brokerPointers{addr: q.Addr}, loc.Prefix); err != nil {
					src.Close()
					return nil, err
				}
				src.closers = append(src.closers, t)
			}
			byGroup[q.BrokerName] = t
		}
		qs := query.Queue{Group: q.BrokerName, Topic: topic, QueueID: q.QueueID, Hot: clientHot{c: c, q: q}}
		if t != nil {
			qs.Cold = t
		}
		src.queues = append(src.queues, qs)
	}
	return src, nil
}

// fetchTierLocation asks a broker where its group's cold tier lives.
func fetchTierLocation(ctx context.Context, addr string) (broker.TierLocation, error) {
	var loc broker.TierLocation
	cl, err := dialBroker(ctx, addr, 10*time.Second)
	if err != nil {
		return loc, fmt.Errorf("broker %s unreachable: %w", addr, err)
	}
	defer cl.Close()
	resp, err := cl.Invoke(ctx, remoting.NewRequest(broker.CodeGetTierLocation, nil, nil))
	if err != nil {
		return loc, fmt.Errorf("tier location of broker %s: %w", addr, err)
	}
	if resp.Code != remoting.RespSuccess {
		return loc, fmt.Errorf("tier location of broker %s: code %d: %s", addr, resp.Code, resp.Remark)
	}
	if err := json.Unmarshal(resp.Body, &loc); err != nil {
		return loc, fmt.Errorf("tier location of broker %s: %w", addr, err)
	}
	return loc, nil
}

// brokerPointers is the tier pointer as the group's broker reports it: the CLI needs no
// etcd access when it goes through the cluster.
type brokerPointers struct{ addr string }

func (p brokerPointers) Load(ctx context.Context) (tier.TierPointer, error) {
	loc, err := fetchTierLocation(ctx, p.addr)
	if err != nil {
		return tier.TierPointer{}, err
	}
	return tier.TierPointer{OffloadWatermark: loc.OffloadWatermark, Manifest: loc.Manifest}, nil
}

func (p brokerPointers) CompareAndSwap(context.Context, tier.TierPointer, tier.TierPointer, meta.Leadership) (tier.TierPointer, error) {
	return tier.TierPointer{}, errors.New("the export's view of the tier pointer is read-only")
}

// clientHot reads a queue's hot part through its broker with PULL_MESSAGE.
type clientHot struct {
	c *client.Client
	q client.Queue
}

func (h clientHot) Read(ctx context.Context, _ string, _ int32, offset int64, n int, f *filter.Filter) (query.HotBatch, error) {
	r, err := h.c.PullFilter(ctx, "strata-cli-export", h.q, offset, min(n, 1024), 0, f.Type(), f.Expression())
	if err != nil {
		return query.HotBatch{}, err
	}
	return query.HotBatch{Messages: r.Messages, NextOffset: r.NextOffset, MinOffset: r.MinOffset}, nil
}

func (h clientHot) MinOffset(ctx context.Context, _ string, _ int32) (int64, error) {
	return h.c.MinOffset(ctx, h.q)
}

func (h clientHot) MaxOffset(ctx context.Context, _ string, _ int32) (int64, error) {
	return h.c.MaxOffset(ctx, h.q)
}

func (h clientHot) OffsetForTime(ctx context.Context, _ string, _ int32, ts int64) (int64, error) {
	return h.c.OffsetForTime(ctx, h.q, ts)
}

// parseBound reads --from/--to: empty (unset), a queue offset, or a time in the one syntax.
func parseBound(s string) (query.Bound, error) {
	if strings.TrimSpace(s) == "" {
		return query.Bound{}, nil
	}
	p, err := parsePosition(s, time.Now())
	switch {
	case err != nil:
		return query.Bound{}, err
	case p.kind == posOffset:
		return query.Bound{Set: true, Offset: p.n}, nil
	case p.kind == posTime:
		return query.Bound{Set: true, IsTime: true, TimeMs: p.timeMs}, nil
	}
	return query.Bound{}, fmt.Errorf("%q: want a queue offset or a time: %s", s, timeForms)
}
