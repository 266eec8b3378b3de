package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/meta"
	"github.com/stratamq/strata/tier"
	"github.com/stratamq/strata/tier/objstore"
)

// tierFlags are the cold-tier flags of `strata dev`.
type tierFlags struct {
	bucket         *string
	noTier         *bool
	localRetention Duration
	maxLocal       ByteSize
	s3             S3YAML
}

func addTierFlags(fs *pflag.FlagSet) *tierFlags {
	tf := &tierFlags{localRetention: Duration(time.Hour)}
	tf.bucket = fs.String("bucket", "", "cold-tier bucket: file://DIR or s3://bucket/prefix (default file://<data>/bucket)")
	tf.noTier = fs.Bool("no-tier", false, "run without a cold tier (local segments are kept forever)")
	fs.Var(&tf.localRetention, "local-retention", "keep offloaded segments on local disk this long, e.g. 0s (drop as soon as offloaded)")
	fs.Var(&tf.maxLocal, "max-local-bytes", "disk high watermark: refuse sends while this many bytes are not offloaded (0: no limit)")
	fs.StringVar(&tf.s3.Endpoint, "s3-endpoint", os.Getenv("STRATA_S3_ENDPOINT"), "S3 endpoint URL for s3:// buckets, e.g. http://127.0.0.1:9000 (empty: AWS); env STRATA_S3_ENDPOINT")
	fs.StringVar(&tf.s3.Region, "s3-region", os.Getenv("STRATA_S3_REGION"), "S3 region (empty: AWS config, then us-east-1); env STRATA_S3_REGION")
	fs.BoolVar(&tf.s3.PathStyle, "s3-path-style", os.Getenv("STRATA_S3_PATH_STYLE") == "true", "path-style S3 addressing (MinIO); env STRATA_S3_PATH_STYLE=true")
	fs.StringVar(&tf.s3.AccessKey, "s3-access-key", os.Getenv("STRATA_S3_ACCESS_KEY"), "S3 access key (empty: default AWS credential chain); env STRATA_S3_ACCESS_KEY")
	fs.StringVar(&tf.s3.SecretKey, "s3-secret-key", os.Getenv("STRATA_S3_SECRET_KEY"), "S3 secret key; env STRATA_S3_SECRET_KEY")
	fs.StringVar(&tf.s3.CABundleFile, "s3-ca-bundle", os.Getenv("STRATA_S3_CA_BUNDLE"), "PEM CAs trusted for an https:// S3 endpoint besides the system's; env STRATA_S3_CA_BUNDLE")
	return tf
}

func (tf *tierFlags) apply(nc *NodeConfig, dataDir string) error {
	if *tf.noTier {
		return nil
	}
	nc.Tier.Bucket = *tf.bucket
	if nc.Tier.Bucket == "" {
		dir := filepath.Join(dataDir, "bucket")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create bucket directory: %w", err)
		}
		nc.Tier.Bucket = "file://" + dir
	}
	nc.Tier.LocalRetention = tf.localRetention
	nc.Tier.MaxLocalBytes = tf.maxLocal
	nc.Tier.S3 = tf.s3
	return nil
}

const tierUsage = `usage: strata tier status [flags]

Reports each broker group's cold tier: offload watermark, manifest, object count and bytes,
offload lag (local commit-log end minus watermark) and bucket requests.

Where the status comes from:
  --http ADDR[,ADDR]    ask brokers' HTTP listeners (GET /tier/status)
  --etcd URLS           find the live brokers of --cluster in etcd and ask each (default)
  --group G --bucket U  read the group's pointer from etcd and its manifest from the
                        bucket directly, with no broker running (lag is then unknown)
`

func tierCmd() *cobra.Command {
	return parent("tier", "cold tier status: watermarks, objects, bytes, offload lag", "",
		leaf("status", "each broker group's cold tier: watermark, manifest, objects, bytes, lag", tierUsage, nil, tierStatusFlags))
}

func tierStatusFlags(fs *pflag.FlagSet) runFunc {
	httpAddrs := fs.String("http", "", "comma-separated broker HTTP addresses (host:port)")
	etcd := fs.String("etcd", "http://127.0.0.1:2379", "comma-separated etcd endpoints")
	cluster := fs.String("cluster", broker.DefaultClusterName, "cluster name")
	group := fs.String("group", "", "broker group to read from the bucket directly (with --bucket)")
	bucket := fs.String("bucket", "", "bucket URL for --group (file://DIR or s3://bucket/prefix)")
	var s3 S3YAML
	fs.StringVar(&s3.Endpoint, "s3-endpoint", os.Getenv("STRATA_S3_ENDPOINT"), "S3 endpoint URL")
	fs.StringVar(&s3.Region, "s3-region", os.Getenv("STRATA_S3_REGION"), "S3 region")
	fs.BoolVar(&s3.PathStyle, "s3-path-style", os.Getenv("STRATA_S3_PATH_STYLE") == "true", "path-style S3 addressing")
	fs.StringVar(&s3.AccessKey, "s3-access-key", os.Getenv("STRATA_S3_ACCESS_KEY"), "S3 access key")
	fs.StringVar(&s3.SecretKey, "s3-secret-key", os.Getenv("STRATA_S3_SECRET_KEY"), "S3 secret key")
	asJSON := fs.Bool("json", false, "print JSON, one object per broker group")
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var out []broker.TierStatus
		switch {
		case *httpAddrs != "":
			for _, a := range splitList(*httpAddrs) {
				st, err := fetchTierStatus(ctx, a)
				if err != nil {
					return err
				}
				out = append(out, st)
			}
		case *group != "":
			if *bucket == "" {
				return errors.New("tier status: --group needs --bucket (the bucket the group offloads to)")
			}
			st, err := bucketTierStatus(ctx, splitList(*etcd), *cluster, *group, *bucket, s3)
			if err != nil {
				return err
			}
			out = append(out, st)
		default:
			mc, err := meta.New(ctx, meta.Config{Endpoints: splitList(*etcd), Cluster: *cluster})
			if err != nil {
				return fmt.Errorf("tier status: connect to etcd %s: %w", *etcd, err)
			}
			defer mc.Close()
			brokers, err := mc.Brokers(ctx)
			if err != nil {
				return fmt.Errorf("tier status: %w", err)
			}
			if len(brokers) == 0 {
				return fmt.Errorf("tier status: no live broker in cluster %s; use --group and --bucket to read a group's tier from the bucket", *cluster)
			}
			for _, b := range brokers {
				if b.HTTPAddr == "" {
					return fmt.Errorf("tier status: broker %s has no HTTP listener; use --group %s --bucket URL", b.Name, b.Group)
				}
				st, err := fetchTierStatus(ctx, b.HTTPAddr)
				if err != nil {
					return err
				}
				out = append(out, st)
			}
		}
		if jsonOutput(*asJSON) {
			enc := json.NewEncoder(stdout)
			for _, st := range out {
				if err := enc.Encode(st); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tTIER\tWATERMARK\tSEGMENTS\tOBJECTS\tBYTES\tLAG\tLOCAL\tPUTS\tGETS\tMANIFEST")
		for _, st := range out {
			if !st.Enabled {
				fmt.Fprintf(tw, "%s\toff\t-\t-\t-\t-\t-\t%d..%d\t-\t-\t-\n", st.Group, st.LocalMinOffset, st.LocalMaxOffset)
				continue
			}
			lag, local := fmt.Sprint(st.OffloadLagBytes), fmt.Sprintf("%d..%d", st.LocalMinOffset, st.LocalMaxOffset)
			if st.LocalMaxOffset == 0 && st.LocalMinOffset == 0 {
				lag, local = "?", "?"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%s\n", st.Group, st.Prefix, st.OffloadWatermark,
				st.Segments, st.Objects, st.Bytes, lag, local, st.Puts, st.Gets, st.Manifest)
		}
		return tw.Flush()
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func fetchTierStatus(ctx context.Context, addr string) (broker.TierStatus, error) {
	var st broker.TierStatus
	resp, err := cliSecurity.httpGet(ctx, addr, "/tier/status")
	if err != nil {
		return st, fmt.Errorf("tier status of broker %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("tier status of broker %s: HTTP %s", addr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("tier status of broker %s: %w", addr, err)
	}
	return st, nil
}

// bucketTierStatus reads a group's tier from etcd and the bucket, read-only.
func bucketTierStatus(ctx context.Context, etcd []string, cluster, group, bucketURL string, s3 S3YAML) (broker.TierStatus, error) {
	st := broker.TierStatus{Cluster: cluster, Group: group}
	mc, err := meta.New(ctx, meta.Config{Endpoints: etcd, Cluster: cluster})
	if err != nil {
		return st, fmt.Errorf("tier status: connect to etcd: %w", err)
	}
	defer mc.Close()
	b, err := objstore.Open(ctx, bucketURL, objstore.S3Options{Endpoint: s3.Endpoint, Region: s3.Region, UsePathStyle: s3.PathStyle,
		AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey, CABundleFile: os.Getenv("STRATA_S3_CA_BUNDLE")})
	if err != nil {
		return st, fmt.Errorf("tier status: %w", err)
	}
	t, err := tier.Open(ctx, tier.Config{Bucket: b, Pointers: tier.MetaPointers{Client: mc, Group: group},
		Prefix: cluster + "/" + group, ReadOnly: true})
	if err != nil {
		return st, fmt.Errorf("tier status: %w", err)
	}
	defer t.Close()
	m := t.Manifest()
	st.Enabled, st.Prefix = true, cluster+"/"+group
	st.OffloadWatermark, st.ManifestSeq, st.Segments = t.OffloadWatermark(), m.Seq, len(m.Segments)
	st.Manifest, st.PointerEpoch = t.Pointer().Manifest, t.Pointer().Epoch
	for _, s := range m.Segments {
		st.Objects++
		st.Bytes += s.Size
		for _, q := range s.Queues {
			if q.Object != "" && !q.Dropped {
				st.Objects++
			}
		}
	}
	return st, nil
}
