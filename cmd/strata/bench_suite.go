package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stratamq/strata/broker/client"
)

// `strata bench --mode suite` runs every comparison of issue 12 in one run: for each row it
// starts a fresh server (`strata dev` from this binary, or nats-server with JetStream on file
// storage), runs the workload, and reads the server process's CPU time from /proc/<pid>/stat
// just before and just after the measured phase, so each figure is the server's own CPU per
// acknowledged (or consumed) message. Rounds alternate the rows (A B C A B C ...) so drift of
// a shared machine spreads over all of them; the table gives medians and ratios to NATS of the
// same round.

// benchProc is one server the suite started and stops.
type benchProc struct {
	cmd  *exec.Cmd
	dir  string
	addr string // name server (strata) or client URL (nats)
	done chan error
}

func (p *benchProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	_ = os.RemoveAll(p.dir)
}

// cpu is the process's user+system time so far, all threads.
func (p *benchProc) cpu() (time.Duration, error) {
	return procCPU(p.cmd.Process.Pid)
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every Linux ABI Go
// supports.
const clockTicks = 100

// procCPU reads utime+stime of pid from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read server CPU time: %w (the suite needs Linux's /proc)", err)
	}
	// The command name (field 2) may hold spaces; fields after it are counted from its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state); utime is field 14, stime 15
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startProc starts name with args in a fresh data directory and waits until ready(line) holds
// for a line of its output (stdout and stderr both), up to 60 s.
func startProc(name string, args []string, dir string, ready func(line string) bool) (*benchProc, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &benchProc{cmd: cmd, dir: dir, done: make(chan error, 1)}
	go func() { err := cmd.Wait(); _ = pw.Close(); p.done <- err }()
	found := make(chan struct{})
	var tail []string
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			mu.Lock()
			if tail = append(tail, sc.Text()); len(tail) > 10 {
				tail = tail[1:]
			}
			mu.Unlock()
			if !signalled && ready(sc.Text()) {
				signalled = true
				close(found)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case <-found:
		return p, nil
	case <-time.After(60 * time.Second):
	case <-p.done:
		p.done <- nil // for stop
	}
	p.stop()
	mu.Lock()
	defer mu.Unlock()
	return nil, fmt.Errorf("%s %s did not become ready; last output:\n%s", name, strings.Join(args, " "), strings.Join(tail, "\n"))
}

func startStrata(bin string) (*benchProc, error) {
	dir, err := os.MkdirTemp("", "strata-bench-")
	if err != nil {
		return nil, err
	}
	var addrs [3]string
	for i := range addrs {
		if addrs[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	p, err := startProc(bin, []string{"dev", "--data", filepath.Join(dir, "data"), "--namesrv-addr", addrs[0],
		"--broker-addr", addrs[1], "--http-addr", addrs[2]}, dir,
		func(line string) bool { return strings.Contains(line, "strata dev ready") })
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p.addr = addrs[0]
	return p, nil
}

func startNATS(bin string) (*benchProc, error) {
	dir, err := os.MkdirTemp("", "nats-bench-")
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, err := startProc(bin, []string{"-js", "-sd", filepath.Join(dir, "js"), "-a", "127.0.0.1", "-p", port}, dir,
		func(line string) bool { return strings.Contains(line, "Server is ready") })
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p.addr = "nats://" + addr
	return p, nil
}

// findNATS is --nats-bin's default: $STRATA_NATS_BIN (the Makefile's `make nats`), then
// nats-server on PATH (Debian's package).
func findNATS() string {
	if b := os.Getenv("STRATA_NATS_BIN"); b != "" {
		return b
	}
	if b, err := exec.LookPath("nats-server"); err == nil {
		return b
	}
	if b, err := filepath.Abs(".tools/bin/nats-server"); err == nil {
		return b
	}
	return "nats-server"
}

// benchResult is what one measured phase did.
type benchResult struct {
	n    int64         // messages acknowledged (produce) or consumed
	secs float64       // wall time of the phase
	cpu  time.Duration // server CPU during the phase
	note string        // latency percentiles, for latency rows
}

func (r benchResult) rate() float64 { return float64(r.n) / r.secs }
func (r benchResult) cpuPerMsg() time.Duration {
	if r.n == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.n)
}

// cpuMeter brackets a phase with the server's CPU time; nil measures nothing (a server the
// bench did not start).
type cpuMeter struct {
	p     *benchProc
	t0    time.Duration
	total time.Duration
	err   error
}

// start waits for the server to settle after the row's set-up (creating 10,000 topics leaves
// the broker applying metadata for a while), then reads its CPU time: settled is a half
// second in which the server used under 5 % of a core, or 60 s gone.
func (m *cpuMeter) start() {
	if m == nil {
		return
	}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		c0, err := m.p.cpu()
		if err != nil {
			m.err = err
			return
		}
		time.Sleep(500 * time.Millisecond)
		c1, err := m.p.cpu()
		if err != nil {
			m.err = err
			return
		}
		if c1-c0 < 25*time.Millisecond {
			break
		}
	}
	m.t0, m.err = m.p.cpu()
}

func (m *cpuMeter) stop() {
	if m == nil || m.err != nil {
		return
	}
	t1, err := m.p.cpu()
	m.total, m.err = t1-m.t0, err
}

func (m *cpuMeter) result(n int64, secs float64) (benchResult, error) {
	r := benchResult{n: n, secs: secs}
	if m != nil {
		r.cpu = m.total
		return r, m.err
	}
	return r, nil
}

// suiteRow is one line of the table.
type suiteRow struct {
	name string
	nats bool // a NATS row: the same-run baseline of the rows of its kind
	kind string
	run  func(ctx context.Context, p *benchProc, m *cpuMeter) (benchResult, error)
}

type suiteOpts struct {
	strataBin, natsBin      string
	rows                    string
	rounds                  int
	producers, size, window int
	duration                time.Duration
	volume, rate            int
	latencyDuration         time.Duration
	consumeBatch, consumers int
	discard                 io.Writer
}

func suiteRows(o suiteOpts) []suiteRow {
	strataProduce := func(topics int, raw bool) func(context.Context, *benchProc, *cpuMeter) (benchResult, error) {
		return func(ctx context.Context, p *benchProc, m *cpuMeter) (benchResult, error) {
			names, queues, err := benchTopics(ctx, p.addr, "bench", topics, 4, raw)
			if err != nil {
				return benchResult{}, err
			}
			if raw {
				return benchProduceRaw(ctx, o.discard, p.addr, queues, len(names), o.producers, o.size, o.window, o.duration, m)
			}
			return benchProduce(ctx, o.discard, p.addr, names, o.producers, o.size, o.window, o.duration, m)
		}
	}
	natsProduce := func(subjects int) func(context.Context, *benchProc, *cpuMeter) (benchResult, error) {
		return func(ctx context.Context, p *benchProc, m *cpuMeter) (benchResult, error) {
			return benchNATSProduce(ctx, o.discard, p.addr, "bench", subjects, o.producers, o.size, o.window, o.duration, m)
		}
	}
	strataConsume := func(queues int) func(context.Context, *benchProc, *cpuMeter) (benchResult, error) {
		return func(ctx context.Context, p *benchProc, m *cpuMeter) (benchResult, error) {
			return benchConsumeStrata(ctx, p.addr, "consume", queues, o.volume, o.size, o.producers, o.window, o.consumers, o.consumeBatch, m)
		}
	}
	natsConsume := func(subjects int) func(context.Context, *benchProc, *cpuMeter) (benchResult, error) {
		return func(ctx context.Context, p *benchProc, m *cpuMeter) (benchResult, error) {
			return benchNATSConsume(ctx, p.addr, "bench", subjects, o.volume, o.size, o.producers, o.window, m)
		}
	}
	return []suiteRow{
		{name: "strata-raw-1", kind: "produce", run: strataProduce(1, true)},
		{name: "strata-raw-1000", kind: "produce", run: strataProduce(1000, true)},
		{name: "strata-raw-10000", kind: "produce", run: strataProduce(10000, true)},
		{name: "strata-official-1", kind: "produce", run: strataProduce(1, false)},
		{name: "nats-1", kind: "produce", nats: true, run: natsProduce(1)},
		{name: "consume-strata-1", kind: "consume", run: strataConsume(1)},
		{name: "consume-strata-1000", kind: "consume", run: strataConsume(1000)},
		{name: "consume-nats-1", kind: "consume", nats: true, run: natsConsume(1)},
		{name: "consume-nats-1000", kind: "consume", nats: true, run: natsConsume(1000)},
		{name: "latency-strata", kind: "latency", run: func(ctx context.Context, p *benchProc, m *cpuMeter) (benchResult, error) {
			return benchLatencyRaw(ctx, o.discard, p.addr, "latency", o.size, o.rate, o.latencyDuration, m)
		}},
		{name: "latency-nats", kind: "latency", nats: true, run: func(ctx context.Context, p *benchProc, m *cpuMeter) (benchResult, error) {
			return benchNATSLatency(ctx, o.discard, p.addr, "bench", o.size, o.rate, o.latencyDuration, m)
		}},
	}
}

func runSuite(ctx context.Context, w io.Writer, o suiteOpts) error {
	all := suiteRows(o)
	rows := all
	if o.rows != "" {
		rows = nil
		for _, name := range strings.Split(o.rows, ",") {
			i := sortSearchRow(all, strings.TrimSpace(name))
			if i < 0 {
				var names []string
				for _, r := range all {
					names = append(names, r.name)
				}
				return fmt.Errorf("--rows: no row %q; rows are %s", name, strings.Join(names, ", "))
			}
			rows = append(rows, all[i])
		}
	}
	for _, row := range rows {
		if row.nats {
			if _, err := exec.LookPath(o.natsBin); err != nil {
				return fmt.Errorf("row %s needs nats-server: %w; install it with `make nats` (or Debian's nats-server) or pass --nats-bin", row.name, err)
			}
			break
		}
	}
	results := make([][]benchResult, len(rows))
	for round := 1; round <= max(o.rounds, 1); round++ {
		for i, row := range rows {
			start, bin := startStrata, o.strataBin
			if row.nats {
				start, bin = startNATS, o.natsBin
			}
			if !filepath.IsAbs(bin) {
				if abs, err := filepath.Abs(bin); err == nil && strings.ContainsRune(bin, filepath.Separator) {
					bin = abs // the server runs in its own directory
				}
			}
			p, err := start(bin)
			if err != nil {
				return fmt.Errorf("row %s: %w", row.name, err)
			}
			m := &cpuMeter{p: p}
			r, err := row.run(ctx, p, m)
			p.stop()
			if err != nil {
				return fmt.Errorf("row %s, round %d: %w", row.name, round, err)
			}
			results[i] = append(results[i], r)
			fmt.Fprintf(w, "round %d %-20s %10.0f msg/s  server CPU %6.2f µs/msg  (%d msgs in %.1fs, server CPU %.2fs)%s\n",
				round, row.name, r.rate(), float64(r.cpuPerMsg().Nanoseconds())/1e3, r.n, r.secs, r.cpu.Seconds(), r.note)
		}
	}
	// Medians, and each Strata row's ratio to the NATS row of its kind, round by round.
	fmt.Fprintf(w, "\n%-20s %12s %16s %18s %18s\n", "row", "msg/s", "server CPU/msg", "msg/s ÷ NATS", "CPU/msg ÷ NATS")
	for i, row := range rows {
		// The baseline is the NATS row of the same kind and size (consume-strata-1000 against
		// consume-nats-1000), else the first NATS row of the kind.
		base := -1
		for j, r := range rows {
			if !r.nats || r.kind != row.kind || row.nats {
				continue
			}
			if base < 0 || rowSize(r.name) == rowSize(row.name) {
				base = j
			}
		}
		var rate, cpu, rr, cr []float64
		for k, r := range results[i] {
			rate = append(rate, r.rate())
			cpu = append(cpu, float64(r.cpuPerMsg().Nanoseconds())/1e3)
			if base >= 0 {
				b := results[base][k]
				rr = append(rr, r.rate()/b.rate())
				if b.cpuPerMsg() > 0 {
					cr = append(cr, float64(r.cpuPerMsg())/float64(b.cpuPerMsg()))
				}
			}
		}
		ratio := func(v []float64) string {
			if len(v) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", median(v))
		}
		fmt.Fprintf(w, "%-20s %12.0f %13.2f µs %18s %18s%s\n", row.name, median(rate), median(cpu), ratio(rr), ratio(cr), results[i][len(results[i])-1].note)
	}
	return nil
}

// rowSize is what follows a row name's last '-': its topic or queue count.
func rowSize(name string) string { return name[strings.LastIndexByte(name, '-')+1:] }

func sortSearchRow(rows []suiteRow, name string) int {
	for i, r := range rows {
		if r.name == name {
			return i
		}
	}
	return -1
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchTopics creates n topics of queues queues each, 16 at a time, and with routes returns
// every queue (for the raw client).
func benchTopics(ctx context.Context, namesrv, prefix string, n, queues int, routes bool) ([]string, []client.Queue, error) {
	c, err := dialClient(ctx, namesrv)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	names := make([]string, n)
	qs := make([][]client.Queue, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if errs[i] = c.CreateTopic(ctx, names[i], queues); errs[i] != nil || !routes {
					continue
				}
				var r client.Route
				if r, errs[i] = c.Route(ctx, names[i]); errs[i] == nil {
					qs[i] = r.Queues(names[i])
				}
			}
		}()
	}
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("create topics: %w", err)
	}
	var all []client.Queue
	for _, q := range qs {
		all = append(all, q...)
	}
	return names, all, nil
}
