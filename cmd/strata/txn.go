package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/txn"
	"github.com/stratamq/strata/meta"
)

// txnFlags are the transaction flags of `strata dev`.
type txnFlags struct {
	timeout, checkInterval Duration
	checkMax               int
}

func addTxnFlags(fs *pflag.FlagSet) *txnFlags {
	xf := &txnFlags{timeout: Duration(txn.DefaultTimeout), checkInterval: Duration(txn.DefaultCheckInterval)}
	fs.Var(&xf.timeout, "txn-timeout", "first check-back of a transactional half message with no decision after this long")
	fs.Var(&xf.checkInterval, "txn-check-interval", "time between two check-backs of one half message")
	fs.IntVar(&xf.checkMax, "txn-check-max", txn.DefaultCheckMax, "check-backs of a half message before it is parked in "+txn.CheckMaxTopic)
	return xf
}

func (xf *txnFlags) apply(nc *NodeConfig) {
	nc.Transaction.Timeout = xf.timeout
	nc.Transaction.CheckInterval = xf.checkInterval
	nc.Transaction.CheckMax = xf.checkMax
	// Rounds at least ten times per check period, so short test settings stay on time.
	nc.Transaction.CheckResolution = Duration(min(txn.DefaultCheckResolution, min(xf.timeout, xf.checkInterval).duration()/10))
}

const txnUsage = `usage: strata txn list [--group G] [flags]

Lists the transactional half messages that have no decision yet (commit or rollback), oldest
first: producer group, real topic and queue, transaction id, age, check-backs sent so far and
when the next one is due.

Where the list comes from:
  --http ADDR[,ADDR]    ask brokers' HTTP listeners (GET /txn/pending)
  --etcd URLS           find the live brokers of --cluster in etcd and ask each (default)
`

func txnCmd() *cobra.Command {
	return parent("txn", "transactional half messages with no decision yet", "",
		leaf("list", "half messages awaiting a decision: age, check-backs", txnUsage, nil, txnListFlags))
}

func txnListFlags(fs *pflag.FlagSet) runFunc {
	group := fs.String("group", "", "producer group (empty: every group)")
	httpAddrs := fs.String("http", "", "comma-separated broker HTTP addresses (host:port)")
	etcd := fs.String("etcd", "http://127.0.0.1:2379", "comma-separated etcd endpoints")
	cluster := fs.String("cluster", broker.DefaultClusterName, "cluster name")
	limit := fs.Int("limit", 100, "half messages listed per broker at most")
	asJSON := fs.Bool("json", false, "print JSON, one object per broker")
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		addrs := splitList(*httpAddrs)
		if len(addrs) == 0 {
			mc, err := meta.New(ctx, meta.Config{Endpoints: splitList(*etcd), Cluster: *cluster})
			if err != nil {
				return fmt.Errorf("txn list: connect to etcd %s: %w", *etcd, err)
			}
			defer mc.Close()
			brokers, err := mc.Brokers(ctx)
			if err != nil {
				return fmt.Errorf("txn list: %w", err)
			}
			if len(brokers) == 0 {
				return fmt.Errorf("txn list: no live broker in cluster %s", *cluster)
			}
			for _, b := range brokers {
				if b.HTTPAddr == "" {
					return fmt.Errorf("txn list: broker %s has no HTTP listener; pass --http", b.Name)
				}
				addrs = append(addrs, b.HTTPAddr)
			}
		}
		type brokerList struct {
			Broker string `json:"broker"`
			txn.PendingList
		}
		var out []brokerList
		for _, a := range addrs {
			l, err := fetchTxnPending(ctx, a, *group, *limit)
			if err != nil {
				return err
			}
			out = append(out, brokerList{Broker: a, PendingList: l})
		}
		if jsonOutput(*asJSON) {
			enc := json.NewEncoder(stdout)
			for _, l := range out {
				if err := enc.Encode(l); err != nil {
					return err
				}
			}
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BROKER\tGROUP\tTOPIC\tQUEUE\tTRANSACTION_ID\tHALF_OFFSET\tAGE\tCHECKS\tNEXT_CHECK")
		now := time.Now()
		total := 0
		for _, l := range out {
			total += l.Pending
			for _, h := range l.Halves {
				if h.Error != "" {
					fmt.Fprintf(tw, "%s\t%s\t?\t?\t?\t@%d\t?\t%d\t-\t(%s)\n", l.Broker, h.Group, h.CommitLogOffset, h.Checks, h.Error)
					continue
				}
				next := time.UnixMilli(h.NextCheckMs).Sub(now).Round(time.Millisecond)
				nextStr := "in " + next.String()
				if next <= 0 {
					nextStr = "due"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%s\n", l.Broker, h.Group, h.Topic, h.QueueID, h.TransactionID, h.HalfOffset,
					(time.Duration(h.AgeMs) * time.Millisecond).Round(time.Millisecond), h.Checks, nextStr)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d pending\n", total)
		return nil
	}
}

func fetchTxnPending(ctx context.Context, addr, group string, limit int) (txn.PendingList, error) {
	var l txn.PendingList
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if group != "" {
		q.Set("group", group)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/txn/pending?"+q.Encode(), nil)
	if err != nil {
		return l, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return l, fmt.Errorf("pending transactions of broker %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return l, fmt.Errorf("pending transactions of broker %s: HTTP %s: %s", addr, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return l, fmt.Errorf("pending transactions of broker %s: %w", addr, err)
	}
	return l, nil
}
