package integration

import (
	"context"
	"errors"
	"fmt"
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

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
	log    *lockedBuffer
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

// startEtcdProcess starts etcd and waits until it serves; t.Cleanup stops it. A free port
// can be taken by another process between our probe and etcd's bind, so an etcd that exits
// at once is retried on new ports.
func startEtcdProcess(t testing.TB) *etcdProcess {
	t.Helper()
	p := &etcdProcess{t: t, bin: etcdBinary(t), dataDir: t.TempDir()}
	t.Cleanup(p.Stop)
	for attempt := 1; ; attempt++ {
		p.clientAddr, p.peerAddr = freeAddr(t), freeAddr(t)
		err := p.start()
		if err == nil {
			return p
		}
		if attempt == 3 || !errors.Is(err, errEtcdExited) {
			t.Fatal(err)
		}
		t.Logf("retrying on new ports: %v", err)
	}
}

// Endpoints returns the client URL.
func (p *etcdProcess) Endpoints() []string { return []string{"http://" + p.clientAddr} }

var errEtcdExited = errors.New("etcd exited")

// Start (re)starts the process on the same ports and data dir and waits until it answers.
func (p *etcdProcess) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *etcdProcess) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("etcd already running")
	}
	cu, pu := "http://"+p.clientAddr, "http://"+p.peerAddr
	cmd := exec.Command(p.bin,
		"--name", "strata-it",
		"--data-dir", p.dataDir,
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "strata-it="+pu,
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--logger", "zap", "--log-level", "warn",
	)
	log := &lockedBuffer{}
	p.log = log
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd %s: %w", p.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p.cmd, p.exited = cmd, exited

	cli, err := clientv3.New(clientv3.Config{Endpoints: p.Endpoints(), DialTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-exited:
			p.cmd, p.exited = nil, nil
			return fmt.Errorf("%w on %s: %v\n%s", errEtcdExited, p.clientAddr, werr, log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd on %s not serving after 30s: %v\n%s", p.clientAddr, err, log)
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
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd, p.exited = nil, nil
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
