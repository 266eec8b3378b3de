package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdProcess is a separate etcd server process on fixed 127.0.0.1 ports and a temp data dir,
// so it can be stopped and restarted with its clients none the wiser.
type etcdProcess struct {
	t          testing.TB
	bin        string
	dataDir    string
	clientAddr string
	peerAddr   string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *bytes.Buffer
}

func etcdBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("STRATA_ETCD_BIN")
	if bin == "" {
		bin = "/usr/bin/etcd"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("etcd binary %s not found (%v): run make tools (installs Debian's etcd-server) or set STRATA_ETCD_BIN", bin, err)
	}
	return bin
}

func etcdFreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startEtcdProcess starts etcd and waits until it serves; t.Cleanup stops it.
func startEtcdProcess(t testing.TB) *etcdProcess {
	t.Helper()
	p := &etcdProcess{t: t, bin: etcdBinary(t), dataDir: t.TempDir(), clientAddr: etcdFreeAddr(t), peerAddr: etcdFreeAddr(t)}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Endpoints returns the client URL.
func (p *etcdProcess) Endpoints() []string { return []string{"http://" + p.clientAddr} }

// Start (re)starts the process on the same ports and data dir and waits until it answers.
func (p *etcdProcess) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.t.Fatal("etcd already running")
	}
	cu, pu := "http://"+p.clientAddr, "http://"+p.peerAddr
	cmd := exec.Command(p.bin,
		"--name", "strata-it",
		"--data-dir", p.dataDir,
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "strata-it="+pu,
		"--heartbeat-interval", "20", "--election-timeout", "200",
		"--logger", "zap", "--log-level", "error",
	)
	p.log = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start etcd %s: %v", p.bin, err)
	}
	p.cmd = cmd

	cli, err := clientv3.New(clientv3.Config{Endpoints: p.Endpoints(), DialTimeout: 2 * time.Second})
	if err != nil {
		p.t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("etcd on %s not serving after 30s: %v\n%s", p.clientAddr, err, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the process (SIGKILL: an outage, not a clean shutdown) and waits for it.
func (p *etcdProcess) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}

// etcdClient returns a raw etcd client for checks, closed at cleanup.
func etcdClient(t testing.TB, p *etcdProcess) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: p.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(fmt.Errorf("etcd client: %w", err))
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// etcdEventually polls cond until it holds or within passes.
func etcdEventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
