package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stratamq/strata/broker"
	"github.com/stratamq/strata/meta"
)

// `strata dev --groups G --replicas R` runs a whole local cluster for trying replication and
// failover on one machine: the parent runs the embedded etcd, the filesystem bucket and the
// name-server address clients use, and G×R `strata broker` children, one process per member
// with its own data directory and free 127.0.0.1 ports. It restarts nothing: kill a member
// (its pid is in GET /cluster) and watch another take over. Plain `strata dev` stays one
// process.

// devMember is one child broker process.
type devMember struct {
	group string
	id    int64
	name  string // <group>-<id>, the member name
	cmd   *exec.Cmd
	done  chan struct{}
	err   error // set before done closes
}

func (m *devMember) alive() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// devClusterMember is one object of GET /cluster.
type devClusterMember struct {
	Group   string `json:"group"`
	Member  string `json:"member"`
	ID      int64  `json:"id"`
	Role    string `json:"role"` // master, slave, or down (exited, or not registered yet)
	Addr    string `json:"addr"`
	Namesrv string `json:"namesrv,omitempty"`
	HTTP    string `json:"http,omitempty"`
	Pid     int    `json:"pid"`
	Alive   bool   `json:"alive"`
	InSync  bool   `json:"inSync"`
}

// devClusterOptions are the flags of `strata dev` that ask for a multi-member cluster.
type devClusterOptions struct {
	groups, replicas int
	mode             string   // sync or async; "" picks sync when replicas > 1
	electionTTL      Duration // how long a dead master keeps its group's election
}

// wanted reports whether the flags ask for more than one group of one member.
func (o devClusterOptions) wanted() bool {
	return o.groups != 1 || o.replicas != 1 || o.mode != ""
}

func runDevCluster(ctx context.Context, o *devOptions, stdout io.Writer) error {
	c := o.cluster
	setupLogging(o.verbose)
	if c.groups < 1 || c.groups > 26 {
		return fmt.Errorf("--groups %d: want 1..26", c.groups)
	}
	if c.replicas < 1 || c.replicas > 3 {
		return fmt.Errorf("--replicas %d: a broker group has 1 to 3 members", c.replicas)
	}
	if c.mode == "" {
		c.mode = broker.ReplicationAsync
		if c.replicas > 1 {
			c.mode = broker.ReplicationSync
		}
	}
	if c.mode != broker.ReplicationSync && c.mode != broker.ReplicationAsync {
		return fmt.Errorf("--replication %q: want sync or async", c.mode)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the strata binary to start members with: %w", err)
	}
	dir, etcd, release, err := openDevData(ctx, o.data)
	if err != nil {
		return err
	}
	defer release()
	bucket := filepath.Join(dir, "bucket")
	if err := os.MkdirAll(bucket, 0o755); err != nil {
		return fmt.Errorf("create bucket directory: %w", err)
	}
	mc, err := meta.New(ctx, meta.Config{Endpoints: etcd.Endpoints(), Cluster: broker.DefaultClusterName})
	if err != nil {
		return err
	}
	defer mc.Close()
	view, err := mc.NewView(ctx)
	if err != nil {
		return err
	}
	defer view.Close()

	nsLn, err := net.Listen("tcp", o.namesrv)
	if err != nil {
		return fmt.Errorf("listen for the name server on %s: %w", o.namesrv, err)
	}
	defer nsLn.Close()
	httpLn, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen for HTTP on %s: %w", o.httpAddr, err)
	}

	minISR := 1
	if c.mode == broker.ReplicationSync {
		minISR = min(2, c.replicas)
	}
	var members []*devMember
	defer func() { stopMembers(members) }()
	for g := 0; g < c.groups; g++ {
		group := "broker-" + string(rune('a'+g))
		for id := int64(0); id < int64(c.replicas); id++ {
			nc := defaultNodeConfig()
			nc.BrokerName, nc.BrokerID = group, id
			nc.DataDir = filepath.Join(dir, fmt.Sprintf("%s-%d", group, id))
			nc.EtcdEndpoints = etcd.Endpoints()
			nc.NamesrvAddr, nc.BrokerAddr, nc.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			nc.AutoCreateTopics = true
			nc.ElectionTTL = c.electionTTL
			nc.Store.SegmentSize = o.segment
			nc.Tier.Bucket = "file://" + bucket
			if c.replicas > 1 {
				nc.Replication.Listen = "127.0.0.1:0"
				nc.Replication.Mode = c.mode
				nc.Replication.MinInSyncReplicas = minISR
			}
			m, err := startMember(ctx, self, nc, o.verbose)
			if err != nil {
				return err
			}
			members = append(members, m)
		}
	}

	status := func(ctx context.Context) []devClusterMember { return clusterStatus(ctx, mc, view.Snapshot(), members) }
	if err := waitClusterUp(ctx, view, members, c.groups); err != nil {
		return err
	}
	for why := clusterReady(status(ctx), minISR); why != ""; why = clusterReady(status(ctx), minISR) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // the in-sync set lives in etcd; poll it
		}
	}
	srv := &http.Server{Handler: devClusterHandler(status, minISR), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(httpLn) }()
	defer srv.Close()
	go forwardNameServer(nsLn, func() []string {
		var out []string
		for _, s := range status(ctx) {
			if s.Alive && s.Namesrv != "" {
				out = append(out, s.Namesrv)
			}
		}
		return out
	})
	fmt.Fprintf(stdout, "strata dev cluster ready: clients connect to name server %s; %d group(s) × %d member(s), replication %s; members at http://%s/cluster; data in %s\n",
		nsLn.Addr(), c.groups, c.replicas, c.mode, httpLn.Addr(), dir)
	for _, s := range status(ctx) {
		fmt.Fprintf(stdout, "  %s %-6s broker %s pid %d\n", s.Member, s.Role, s.Addr, s.Pid)
	}
	select {
	case <-ctx.Done():
	case err := <-etcd.Err():
		return fmt.Errorf("embedded etcd failed: %w; the members are stopped", err)
	}
	slog.Info("stopping the members")
	return nil
}

// startMember writes a member's config and starts `strata broker` on it, its output prefixed
// with its name on the parent's stderr.
func startMember(ctx context.Context, self string, nc NodeConfig, verbose bool) (*devMember, error) {
	name := fmt.Sprintf("%s-%d", nc.BrokerName, nc.BrokerID)
	if err := os.MkdirAll(nc.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("member %s: %w", name, err)
	}
	raw, err := yaml.Marshal(nc)
	if err != nil {
		return nil, fmt.Errorf("member %s: encode config: %w", name, err)
	}
	path := filepath.Join(nc.DataDir, "broker.yaml")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return nil, fmt.Errorf("member %s: write config: %w", name, err)
	}
	args := []string{"broker", "--config", path}
	if verbose {
		args = append(args, "-v")
	}
	cmd := exec.Command(self, args...)
	cmd.SysProcAttr = memberProcAttr()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start member %s: %w", name, err)
	}
	m := &devMember{group: nc.BrokerName, id: nc.BrokerID, name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(os.Stderr, "[%s] %s\n", name, sc.Text())
		}
	}()
	go func() {
		m.err = cmd.Wait()
		pw.Close()
		if ctx.Err() == nil {
			slog.Warn("member exited; strata dev restarts nothing", "member", name, "pid", cmd.Process.Pid, "err", errOrNone(m.err))
		}
		close(m.done)
	}()
	return m, nil
}

// stopMembers sends SIGTERM to every live member and waits; past the shutdown budget, SIGKILL.
func stopMembers(members []*devMember) {
	for _, m := range members {
		if m.alive() {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(shutdownTimeout * 3 / 4)
	for _, m := range members {
		select {
		case <-m.done:
		case <-deadline:
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	}
}

// waitClusterUp waits until every member registered and every group has a master.
func waitClusterUp(ctx context.Context, view *meta.View, members []*devMember, groups int) error {
	for {
		s, changed := view.Current()
		registered := 0
		for _, m := range members {
			if _, ok := s.Brokers[m.group+"/"+m.name]; ok {
				registered++
			}
			if !m.alive() {
				return fmt.Errorf("member %s exited while the cluster started (%v); see its output above", m.name, errOrNone(m.err))
			}
		}
		if registered == len(members) && len(s.Masters) >= groups {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// clusterStatus lists the members with their role as etcd shows it.
func clusterStatus(ctx context.Context, mc *meta.Client, s *meta.Snapshot, members []*devMember) []devClusterMember {
	isr := map[string][]string{}
	out := make([]devClusterMember, 0, len(members))
	for _, m := range members {
		st := devClusterMember{Group: m.group, Member: m.name, ID: m.id, Role: "down", Pid: m.cmd.Process.Pid, Alive: m.alive()}
		if info, ok := s.Brokers[m.group+"/"+m.name]; ok {
			st.Addr, st.Namesrv, st.HTTP = info.BrokerAddr, info.NamesrvAddr, info.HTTPAddr
			switch {
			case !st.Alive: // its registration outlives it by the lease TTL
			case s.Masters[m.group] == m.name:
				st.Role = "master"
			default:
				st.Role = "slave"
			}
		}
		set, ok := isr[m.group]
		if !ok {
			if got, err := mc.GetInSyncSet(ctx, m.group); err == nil {
				set = got.Members
			}
			isr[m.group] = set
		}
		st.InSync = slices.Contains(set, m.name)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	return out
}

// clusterReady says why the cluster cannot take sends yet ("" when it can): every group needs
// a live master and minISR live members in its in-sync set.
func clusterReady(ms []devClusterMember, minISR int) string {
	groups := map[string]bool{}
	masters, inSync := map[string]bool{}, map[string]int{}
	for _, m := range ms {
		groups[m.Group] = true
		if m.Role == "master" && m.Alive {
			masters[m.Group] = true
		}
		if m.InSync && m.Alive {
			inSync[m.Group]++
		}
	}
	for g := range groups {
		if !masters[g] {
			return fmt.Sprintf("broker group %s has no master", g)
		}
		if minISR > 1 && inSync[g] < minISR {
			return fmt.Sprintf("broker group %s has %d of the %d in-sync members sync sends need", g, inSync[g], minISR)
		}
	}
	return ""
}

func devClusterHandler(status func(context.Context) []devClusterMember, minISR int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if why := clusterReady(status(r.Context()), minISR); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /cluster", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(status(r.Context()))
	})
	return mux
}

// forwardNameServer forwards each name-server connection to a live member's name server:
// every member answers routes for the whole cluster from etcd.
func forwardNameServer(ln net.Listener, targets func() []string) {
	var mu sync.Mutex
	next := 0
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				slog.Error("name-server forwarder stopped", "err", err)
			}
			return
		}
		go func() {
			ts := targets()
			mu.Lock()
			start := next
			next++
			mu.Unlock()
			for i := range ts {
				up, err := net.DialTimeout("tcp", ts[(start+i)%len(ts)], 2*time.Second)
				if err != nil {
					continue
				}
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
				c.Close()
				return
			}
			c.Close() // no member answers
		}()
	}
}

// MarshalText writes a Duration as UnmarshalText reads it (members' YAML configs).
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// MarshalText writes a ByteSize as UnmarshalText reads it (members' YAML configs).
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }
