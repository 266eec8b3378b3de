package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exitBound is how long a strata process may take to exit on its own or after a signal in
// these tests. It is a bound on a hang, not a speed measurement: each case exits in well
// under a second on an idle machine.
const exitBound = 30 * time.Second

// finishedProc is a strata process that has exited.
type finishedProc struct {
	stdout, stderr string
	code           int
}

// startStrata starts strata with args; wait collects its exit, failing the test if it does
// not exit within exitBound (it is then killed).
func startStrata(t *testing.T, args ...string) (cmd *exec.Cmd, wait func() finishedProc) {
	t.Helper()
	cmd = exec.Command(strataBin, args...)
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return cmd, func() finishedProc {
		t.Helper()
		var err error
		select {
		case err = <-done:
			done <- err // for the cleanup
		case <-time.After(exitBound):
			_ = cmd.Process.Kill()
			t.Fatalf("strata %v did not exit within %v\nstdout:\n%s\nstderr:\n%s", args, exitBound, out.String(), errb.String())
		}
		p := finishedProc{stdout: out.String(), stderr: errb.String()}
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		default:
			t.Fatalf("wait for strata %v: %v", args, err)
		}
		return p
	}
}

func assertNoCrash(t *testing.T, p finishedProc) {
	t.Helper()
	for _, s := range []string{p.stdout, p.stderr} {
		if strings.Contains(s, "panic") || strings.Contains(s, "goroutine ") {
			t.Fatalf("strata crashed:\nstdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
		}
	}
}

// brokerConfig writes a `strata broker` config on free loopback ports for etcd at etcdURL.
func brokerConfig(t *testing.T, etcdURL string, extra string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "broker.yaml")
	cfg := fmt.Sprintf("data_dir: %s\netcd_endpoints: [%s]\nnamesrv_addr: %s\nbroker_addr: %s\nhttp_addr: %s\n%s",
		filepath.Join(dir, "data"), etcdURL, freeAddr(t), freeAddr(t), freeAddr(t), extra)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBrokerWithoutEtcdSaysSo starts a cluster node whose etcd endpoint refuses connections.
// It used to crash on a nil pointer; it must exit non-zero with one line that names the
// endpoint and says what to check.
func TestBrokerWithoutEtcdSaysSo(t *testing.T) {
	etcdURL := "http://" + freeAddr(t) // nothing listens there
	_, wait := startStrata(t, "broker", "--config", brokerConfig(t, etcdURL, "etcd_dial_timeout: 2s\n"))
	p := wait()
	assertNoCrash(t, p)
	if p.code == 0 {
		t.Fatalf("exit code 0 without etcd; stderr:\n%s", p.stderr)
	}
	lines := strings.Split(strings.TrimSpace(p.stderr), "\n")
	want := "strata broker: cannot reach etcd at " + etcdURL + " within 2s"
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want) || !strings.Contains(lines[0], "etcd_endpoints") {
		t.Fatalf("stderr is not the one line %q…etcd_endpoints…:\n%s", want, p.stderr)
	}
}

// TestSignalWhileWaitingForEtcd stops a broker with SIGTERM while it waits for an etcd that
// accepts connections and never answers, with a dial timeout far longer than the test.
func TestSignalWhileWaitingForEtcd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	cmd, wait := startStrata(t, "broker", "--config", brokerConfig(t, "http://"+ln.Addr().String(), "etcd_dial_timeout: 1h\n"))
	select {
	case <-accepted: // the broker is connecting to etcd and waits for an answer
	case <-time.After(exitBound):
		t.Fatal("the broker never connected to the silent etcd")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p := wait()
	assertNoCrash(t, p)
	if p.code != 0 || !strings.Contains(p.stderr, "stopped by signal") || !strings.Contains(p.stderr, ln.Addr().String()) {
		t.Fatalf("after SIGTERM while waiting for etcd: exit %d, stderr:\n%s", p.code, p.stderr)
	}
}

// TestDataDirectoryInUse starts a second strata dev on a data directory the first one holds:
// it must fail at once naming the directory and the holder's pid, instead of hanging deep in
// the embedded etcd. Once the holder is killed, the kernel drops its lock and a new process
// starts on the same directory.
func TestDataDirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	first := startDev(t, dir)
	first.mu.Lock()
	pid := first.cmd.Process.Pid
	first.mu.Unlock()

	_, wait := startStrata(t, "dev", "--data", dir, "--namesrv-addr", freeAddr(t), "--broker-addr", freeAddr(t), "--http-addr", freeAddr(t))
	p := wait()
	assertNoCrash(t, p)
	want := fmt.Sprintf("data directory %s is in use by another strata process (pid %d); stop it or pick another --data", dir, pid)
	if p.code == 0 || !strings.Contains(p.stderr, want) {
		t.Fatalf("second strata dev: exit %d, stderr:\n%s\nwant it to say %q", p.code, p.stderr, want)
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "LOCK")); err != nil || strings.TrimSpace(string(raw)) != strconv.Itoa(pid) {
		t.Fatalf("LOCK holds %q (%v), want the first pid %d", bytes.TrimSpace(raw), err, pid)
	}

	first.Kill()
	startDev(t, dir) // fails the test unless it becomes ready
}
