package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/rlog"
)

// strataBin is the strata binary built once for the whole test run by TestMain.
var strataBin string

func TestMain(m *testing.M) {
	rlog.SetLogLevel("error")
	dir, err := os.MkdirTemp("", "strata-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	strataBin = filepath.Join(dir, "strata")
	build := exec.Command("go", "build", "-o", strataBin, "../cmd/strata")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building strata:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	// A port the kernel hands out for :0 is an ephemeral one, and a moment after we close it
	// any outbound connection on the machine may take it before our child process binds it
	// (seen: "bind: address already in use"). Ports below the ephemeral range are never
	// taken that way; each is handed out once per test binary.
	lo, hi := freePortRange()
	for range 2000 {
		port := lo + rand.IntN(hi-lo)
		if _, taken := handedOutPorts.LoadOrStore(port, true); taken {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatalf("no free port in [%d, %d) on 127.0.0.1", lo, hi)
	return ""
}

// handedOutPorts are the ports freeAddr returned in this test binary.
var handedOutPorts sync.Map

// freePortRange is where freeAddr picks ports: below the kernel's ephemeral range and above
// the well-known and registered ports Strata and its tools default to.
func freePortRange() (lo, hi int) {
	lo, hi = 20000, 32768
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var first int
	if _, err := fmt.Sscan(string(raw), &first); err == nil && first > lo+1000 {
		hi = first
	}
	return lo, hi
}

// strataProc is one strata process (dev or broker) started by a test.
type strataProc struct {
	t       testing.TB
	args    []string
	Namesrv string
	Broker  string
	HTTP    string
	// TLS, when set, is how waitReady reaches an HTTP listener that serves TLS.
	TLS      *tls.Config
	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	output   *lockedBuffer
	exitErr  error
	stopping bool
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDev runs `strata dev` on free loopback ports with a data directory of its own and waits
// until /readyz answers 200.
func startDev(t testing.TB, dataDir string, extra ...string) *strataProc {
	t.Helper()
	return startDevTLS(t, dataDir, nil, extra...)
}

// startDevTLS is startDev for a process whose listeners serve TLS that conf trusts.
func startDevTLS(t testing.TB, dataDir string, conf *tls.Config, extra ...string) *strataProc {
	t.Helper()
	p := &strataProc{t: t, TLS: conf}
	t.Cleanup(p.stopAndReport)
	// A port found free can be taken before strata binds it; try fresh ones then.
	for attempt := 1; ; attempt++ {
		p.Namesrv, p.Broker, p.HTTP = freeAddr(t), freeAddr(t), freeAddr(t)
		p.args = append([]string{"dev", "--data", dataDir,
			"--namesrv-addr", p.Namesrv, "--broker-addr", p.Broker, "--http-addr", p.HTTP}, extra...)
		err := p.tryStart()
		if err == nil {
			return p
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("retrying on new ports: %v", err)
	}
}

// stopAndReport stops the process and, when the test failed, shows what it logged.
func (p *strataProc) stopAndReport() {
	p.Stop()
	if p.t.Failed() {
		p.t.Logf("strata %v output:\n%s", p.args, p.output)
	}
}

// startProc runs strata with the given arguments; addresses must match what the arguments set.
func startProc(t testing.TB, namesrv, broker, httpAddr string, args ...string) *strataProc {
	t.Helper()
	p := &strataProc{t: t, Namesrv: namesrv, Broker: broker, HTTP: httpAddr, args: args}
	p.start()
	t.Cleanup(p.stopAndReport)
	return p
}

func (p *strataProc) start() {
	p.t.Helper()
	if err := p.tryStart(); err != nil {
		p.t.Fatal(err)
	}
}

// tryStart starts the process and waits until /readyz answers 200, or reports why not.
func (p *strataProc) tryStart() error {
	p.mu.Lock()
	p.output = &lockedBuffer{}
	p.cmd = exec.Command(strataBin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	p.done = make(chan struct{})
	p.stopping = false
	if err := p.cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("start strata %v: %w", p.args, err)
	}
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return p.waitReady(60 * time.Second)
}

// waitReady polls /readyz until it answers 200, failing fast if the process exits.
func (p *strataProc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	url := "http://" + p.HTTP + "/readyz"
	client := http.DefaultClient
	if p.TLS != nil {
		url = "https://" + p.HTTP + "/readyz"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: p.TLS}}
	}
	for {
		select {
		case <-p.done:
			p.mu.Lock()
			p.cmd = nil
			p.mu.Unlock()
			return fmt.Errorf("strata %v exited before it was ready: %v\n%s", p.args, p.exitErr, p.output)
		default:
		}
		// Another process on this machine may hold a port we probed as free and answer
		// /readyz itself: only this process's ready line (printed once it serves) counts.
		ownReady := strings.Contains(p.output.String(), " ready: ")
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ownReady {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("strata %v not ready after %v (last: %v)\n%s", p.args, timeout, err, p.output)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for a clean exit; a non-zero exit fails the test.
func (p *strataProc) Stop() {
	p.signal(syscall.SIGTERM, true)
}

// Kill stops the process with SIGKILL, as a crash would.
func (p *strataProc) Kill() {
	p.signal(syscall.SIGKILL, false)
}

func (p *strataProc) signal(sig syscall.Signal, wantClean bool) {
	p.t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil || p.stopping {
		p.mu.Unlock()
		if done != nil {
			<-done
		}
		return
	}
	p.stopping = true
	p.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		p.t.Errorf("strata did not exit within 30s of %v\n%s", sig, p.output)
		return
	}
	p.mu.Lock()
	err := p.exitErr
	p.mu.Unlock()
	if wantClean && err != nil {
		p.t.Errorf("strata exited uncleanly after %v: %v\n%s", sig, err, p.output)
	}
}

// Restart starts the same process again after Stop or Kill.
func (p *strataProc) Restart() {
	p.t.Helper()
	p.Stop()
	p.start()
}

// runCLI runs a strata client command and returns its standard output.
func runCLI(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, strataBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("strata %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	return out.String()
}
