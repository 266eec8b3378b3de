package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/timer"
	"github.com/stratamq/strata/meta"
)

// timerFlags are the scheduled-delivery flags of `strata dev`.
type timerFlags struct {
	levels   *string
	maxDelay Duration
}

func addTimerFlags(fs *pflag.FlagSet) *timerFlags {
	tf := &timerFlags{maxDelay: Duration(timer.DefaultMaxDelay)}
	tf.levels = fs.String("message-delay-level", timer.DefaultDelayLevels,
		"RocketMQ's delay-level table: DELAY=n waits the n-th entry, a failed message's k-th retry waits level 2+k")
	fs.Var(&tf.maxDelay, "timer-max-delay", "refuse deliveries scheduled further ahead than this, e.g. 72h")
	return tf
}

func (tf *timerFlags) apply(nc *NodeConfig) {
	nc.Timer.MessageDelayLevel = *tf.levels
	nc.Timer.MaxDelay = tf.maxDelay
}

const timerUsage = `usage: strata timer status [flags]

Reports scheduled delivery on each broker: timers pending by how far ahead they are due, the
next due time, fired and scheduled counts, lateness of recent deliveries, the index (runs,
bytes, offsets) and the fired-state checkpoint.

Where the status comes from:
  --http ADDR[,ADDR]    ask brokers' HTTP listeners (GET /timer/status)
  --etcd URLS           find the live brokers of --cluster in etcd and ask each (default)
`

func timerCmd() *cobra.Command {
	return parent("timer", "scheduled delivery status", "",
		leaf("status", "pending timers by horizon, lateness, index", timerUsage, nil, timerStatusFlags))
}

func timerStatusFlags(fs *pflag.FlagSet) runFunc {
	httpAddrs := fs.String("http", "", "comma-separated broker HTTP addresses (host:port)")
	etcd := fs.String("etcd", "http://127.0.0.1:2379", "comma-separated etcd endpoints")
	cluster := fs.String("cluster", broker.DefaultClusterName, "cluster name")
	asJSON := fs.Bool("json", false, "print JSON, one object per broker")
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		type brokerStatus struct {
			name string
			st   timer.Status
		}
		var out []brokerStatus
		if *httpAddrs != "" {
			for _, a := range splitList(*httpAddrs) {
				st, err := fetchTimerStatus(ctx, a)
				if err != nil {
					return err
				}
				out = append(out, brokerStatus{a, st})
			}
		} else {
			mc, err := meta.New(ctx, meta.Config{Endpoints: splitList(*etcd), Cluster: *cluster})
			if err != nil {
				return fmt.Errorf("timer status: connect to etcd %s: %w", *etcd, err)
			}
			defer mc.Close()
			brokers, err := mc.Brokers(ctx)
			if err != nil {
				return fmt.Errorf("timer status: %w", err)
			}
			if len(brokers) == 0 {
				return fmt.Errorf("timer status: no live broker in cluster %s", *cluster)
			}
			for _, b := range brokers {
				if b.HTTPAddr == "" {
					return fmt.Errorf("timer status: broker %s has no HTTP listener; pass --http", b.Name)
				}
				st, err := fetchTimerStatus(ctx, b.HTTPAddr)
				if err != nil {
					return err
				}
				out = append(out, brokerStatus{b.Name, st})
			}
		}
		if jsonOutput(*asJSON) {
			enc := json.NewEncoder(stdout)
			for _, b := range out {
				if err := enc.Encode(b.st); err != nil {
					return err
				}
			}
			return nil
		}
		for i, b := range out {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			printTimerStatus(stdout, b.name, b.st)
		}
		return nil
	}
}

func printTimerStatus(w io.Writer, name string, st timer.Status) {
	next := "-"
	if st.NextDueMs > 0 {
		next = fmt.Sprintf("%s (in %s)", time.UnixMilli(st.NextDueMs).Format(time.RFC3339Nano),
			time.Until(time.UnixMilli(st.NextDueMs)).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "broker %s: %d pending, next due %s\n", name, st.Pending, next)
	fmt.Fprintf(w, "  scheduled %d, fired %d, dropped %d, retrying %d; lateness p50 %.1fms p99 %.1fms max %.1fms (last %d)\n",
		st.Scheduled, st.Fired, st.Dropped, st.Retrying, st.Lateness.P50Ms, st.Lateness.P99Ms, st.Lateness.MaxMs, st.Lateness.Samples)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  DUE WITHIN\tPENDING")
	for _, h := range st.PendingByHorizon {
		fmt.Fprintf(tw, "  %s\t%d\n", h.Horizon, h.Count)
	}
	_ = tw.Flush()
	ix := st.Index
	fmt.Fprintf(w, "  index: %d runs, %d bytes, %d in memory (heap %d, memtable %d); parked offset %d, indexed %d, on disk %d\n",
		ix.Runs, ix.Bytes, ix.HeapEntries+ix.MemtableEntries, ix.HeapEntries, ix.MemtableEntries, ix.ParkedOffset, ix.IndexedOffset, ix.DurableOffset)
	if ix.Error != "" {
		fmt.Fprintf(w, "  index error: %s\n", ix.Error)
	}
	ck := st.Checkpoint
	fmt.Fprintf(w, "  checkpoint: fired through %s below offset %d, all below %d\n",
		time.UnixMilli(ck.FiredThroughMs).Format(time.RFC3339Nano), ck.IndexedBelow, ck.LowOffset)
	fmt.Fprintf(w, "  delay levels: %s; max delay %s\n", strings.Join(st.DelayLevels, " "), st.MaxDelay)
}

func fetchTimerStatus(ctx context.Context, addr string) (timer.Status, error) {
	var st timer.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/timer/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("timer status of broker %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("timer status of broker %s: HTTP %s", addr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("timer status of broker %s: %w", addr, err)
	}
	return st, nil
}
