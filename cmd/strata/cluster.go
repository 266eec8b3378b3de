package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/broker/remoting"
	"github.com/stratamq/strata/meta"
)

// `strata cluster status` and `strata broker status`: the cluster's broker groups, their
// members and roles, the elected masters and the cold tier's watermark.

const clusterUsage = `
Lists the broker groups: their members, roles and addresses, which member is the elected
master, and the cold tier's offload watermark and backlog.

Where it comes from:
  (default)             the name server (--namesrv): each group's master and, from the
                        master, its commit log and tier watermark
  --etcd URLS           the cluster metadata in etcd (with --cluster): every member of each
                        group and the election, besides what the masters report`

func clusterCmd() *cobra.Command {
	return parent("cluster", "the cluster's broker groups, members, roles and tier watermarks", "",
		leaf("status", "broker groups: members, roles, elected master, addresses, tier watermark", clusterUsage, nil, clusterStatusFlags))
}

// clusterMember is one broker process of a group.
type clusterMember struct {
	Name        string `json:"name"`
	Role        string `json:"role"`
	Elected     bool   `json:"elected"`
	BrokerAddr  string `json:"brokerAddr"`
	NamesrvAddr string `json:"namesrvAddr,omitempty"`
	HTTPAddr    string `json:"httpAddr,omitempty"`
	// Replication, as the elected master reports it: whether the member is in the group's
	// in-sync set, and how far behind the master's log end it is (followers only).
	InSync   bool  `json:"inSync"`
	LagBytes int64 `json:"lagBytes"`
	LagMs    int64 `json:"lagMs"`
}

// clusterGroup is one broker group as `cluster status` shows it.
type clusterGroup struct {
	Name    string          `json:"name"`
	Master  string          `json:"master"` // the elected master's broker address
	Members []clusterMember `json:"members,omitempty"`
	// From the master's runtime info (-1: not reported, e.g. no cold tier).
	CommitLogMaxOffset int64 `json:"commitLogMaxOffset"`
	TierWatermark      int64 `json:"tierWatermark"`
	TierBacklogBytes   int64 `json:"tierBacklogBytes"`
	// BrokerRole is the master's RocketMQ brokerRole (ASYNC_MASTER, SYNC_MASTER).
	BrokerRole string   `json:"brokerRole,omitempty"`
	InSync     []string `json:"inSync,omitempty"`
	Error      string   `json:"error,omitempty"`
}

func clusterStatusFlags(fs *pflag.FlagSet) runFunc {
	etcd := fs.String("etcd", "", "comma-separated etcd endpoints: read members and elections from the cluster metadata too")
	cluster := fs.String("cluster", broker.DefaultClusterName, "cluster name (with --etcd)")
	asJSON := fs.Bool("json", false, "print JSON (same as --format json)")
	return func(ctx context.Context, _ []string, stdout io.Writer) error {
		c, ctx, cancel, err := dialNamesrv(ctx, namesrvAddr())
		if err != nil {
			return err
		}
		defer cancel()
		defer c.Close()
		masters, err := c.BrokerGroups(ctx)
		if err != nil {
			return err
		}
		groups := map[string]*clusterGroup{}
		for name, addr := range masters {
			groups[name] = &clusterGroup{Name: name, Master: addr}
		}
		if *etcd != "" {
			if err := membersFromEtcd(ctx, splitList(*etcd), *cluster, groups); err != nil {
				return err
			}
		}
		out := make([]clusterGroup, 0, len(groups))
		for _, g := range groups {
			g.CommitLogMaxOffset, g.TierWatermark, g.TierBacklogBytes = -1, -1, -1
			var info map[string]string
			if g.Master != "" {
				if info, err = runtimeInfo(ctx, g.Master); err != nil {
					g.Error = err.Error()
				} else {
					g.CommitLogMaxOffset = intOr(info["commitLogMaxOffset"])
					g.TierWatermark = intOr(info["tierOffloadWatermark"])
					g.TierBacklogBytes = intOr(info["tierOffloadLagBytes"])
				}
			}
			if len(g.Members) == 0 && g.Master != "" {
				g.Members = []clusterMember{{Name: "-", Role: meta.RoleMaster, Elected: true, BrokerAddr: g.Master}}
			}
			memberReplication(g, info)
			out = append(out, *g)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		if jsonOutput(*asJSON) {
			return printJSON(stdout, out)
		}
		if len(out) == 0 {
			fmt.Fprintf(stdout, "no broker group is registered with name server %s\n", namesrvAddr())
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tMEMBER\tROLE\tELECTED\tIN SYNC\tLAG\tBROKER\tHTTP\tCOMMITLOG MAX\tTIER WATERMARK\tTIER BACKLOG")
		for _, g := range out {
			for _, m := range g.Members {
				elected := ""
				if m.Elected {
					elected = "yes"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, m.Name, m.Role, elected, inSyncCell(g, m), lagCell(g, m), m.BrokerAddr, dash(m.HTTPAddr),
					num(g.CommitLogMaxOffset), num(g.TierWatermark), bytesOrDash(g.TierBacklogBytes))
			}
			if g.Error != "" {
				fmt.Fprintf(tw, "%s\t(master %s: %s)\n", g.Name, g.Master, g.Error)
			}
		}
		return tw.Flush()
	}
}

// membersFromEtcd adds every registered member of each group and marks the elected ones.
func membersFromEtcd(ctx context.Context, endpoints []string, cluster string, groups map[string]*clusterGroup) error {
	mc, err := meta.New(ctx, meta.Config{Endpoints: endpoints, Cluster: cluster})
	if err != nil {
		return fmt.Errorf("connect to etcd %v: %w; check --etcd (and --cluster %s)", endpoints, err, cluster)
	}
	defer mc.Close()
	view, err := mc.NewView(ctx)
	if err != nil {
		return fmt.Errorf("read cluster %s from etcd %v: %w", cluster, endpoints, err)
	}
	defer view.Close()
	snap := view.Snapshot()
	for _, b := range snap.Brokers {
		g := groups[b.Group]
		if g == nil {
			g = &clusterGroup{Name: b.Group}
			groups[b.Group] = g
		}
		m := clusterMember{Name: b.Name, Role: b.Role, Elected: snap.Masters[b.Group] == b.Name,
			BrokerAddr: b.BrokerAddr, NamesrvAddr: b.NamesrvAddr, HTTPAddr: b.HTTPAddr}
		if m.Elected && g.Master == "" {
			g.Master = b.BrokerAddr
		}
		g.Members = append(g.Members, m)
	}
	for _, g := range groups {
		sort.Slice(g.Members, func(i, j int) bool { return g.Members[i].Name < g.Members[j].Name })
	}
	return nil
}

// memberReplication fills in the replication state the master's runtime info reports: its
// brokerRole, the in-sync set, and each follower's lag (replicationLagBytes.<member>).
func memberReplication(g *clusterGroup, info map[string]string) {
	if info == nil {
		return
	}
	g.BrokerRole = info["brokerRole"]
	if set := info["replicationInSync"]; set != "" {
		g.InSync = strings.Split(set, ",")
	}
	for i := range g.Members {
		m := &g.Members[i]
		m.InSync = slices.Contains(g.InSync, m.Name)
		m.LagBytes = intOr(info["replicationLagBytes."+m.Name])
		m.LagMs = intOr(info["replicationLagMillis."+m.Name])
		if m.Elected {
			m.LagBytes, m.LagMs = 0, 0
		}
	}
}

// inSyncCell is "yes"/"no" for a replicated group's members, "-" without replication.
func inSyncCell(g clusterGroup, m clusterMember) string {
	if len(g.InSync) == 0 && !m.InSync {
		return "-"
	}
	if m.InSync {
		return "yes"
	}
	return "no"
}

// lagCell is a follower's lag behind the master ("-" for the master and without replication).
func lagCell(g clusterGroup, m clusterMember) string {
	if m.Elected || len(g.InSync) == 0 && m.LagBytes <= 0 {
		return "-"
	}
	return fmt.Sprintf("%s/%dms", bytesOrDash(max(0, m.LagBytes)), max(0, m.LagMs))
}

// runtimeInfo asks a broker for GET_BROKER_RUNTIME_INFO's table.
func runtimeInfo(ctx context.Context, addr string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := adminInvoke(ctx, addr, remoting.CodeGetBrokerRuntimeInfo, nil)
	if err != nil {
		return nil, err
	}
	var body struct {
		Table map[string]string `json:"table"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return nil, fmt.Errorf("runtime info of %s: bad JSON: %w", addr, err)
	}
	return body.Table, nil
}

// brokerStatusCmd is `strata broker status`, a subcommand of the command that runs a node.
func brokerStatusCmd() *cobra.Command {
	return leaf("status", "one broker's runtime info: offsets, rates, tier watermark, heap", `
Prints a broker's runtime info (what mqadmin brokerStatus shows): commit-log offsets, message
counts and rates since start, the cold tier's watermark and backlog, held pulls and heap.
Name the broker by its group (--group, resolved through the name server) or its address.`, nil, func(fs *pflag.FlagSet) runFunc {
		group := fs.String("group", "", "broker group whose master to ask")
		addr := fs.String("broker", "", "broker address host:port (instead of --group)")
		asJSON := fs.Bool("json", false, "print JSON (same as --format json)")
		return func(ctx context.Context, _ []string, stdout io.Writer) error {
			target := *addr
			if (*group == "") == (target == "") {
				return usageError{errors.New("give exactly one of --group G or --broker ADDR (`strata cluster status` lists them)")}
			}
			if *group != "" {
				c, cctx, cancel, err := dialNamesrv(ctx, namesrvAddr())
				if err != nil {
					return err
				}
				defer cancel()
				defer c.Close()
				masters, err := c.BrokerGroups(cctx)
				if err != nil {
					return err
				}
				if target = masters[*group]; target == "" {
					return fmt.Errorf("no broker group %s is registered with name server %s (`strata cluster status` lists them)", *group, namesrvAddr())
				}
			}
			info, err := runtimeInfo(ctx, target)
			if err != nil {
				return err
			}
			if jsonOutput(*asJSON) {
				return printJSON(stdout, info)
			}
			keys := make([]string, 0, len(info))
			for k := range info {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "broker\t%s\n", target)
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\n", k, info[k])
			}
			return tw.Flush()
		}
	})
}

func intOr(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func num(n int64) string {
	if n < 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

func bytesOrDash(n int64) string {
	if n < 0 {
		return "-"
	}
	return ByteSize(n).String()
}
