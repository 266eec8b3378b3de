package etcdembed

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStartPutGetRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	srv.Close()
	srv.Close() // idempotent

	// The data survives a restart on the same directory.
	srv2, err := Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	cli2, err := clientv3.New(clientv3.Config{Endpoints: srv2.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli2.Close()
	resp, err := cli2.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart got %v, want k=v", resp.Kvs)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFatalIsLoggedAndReported checks the logger the embedded etcd gets: warnings pass to
// slog, info does not, and a Fatal is written, reported as an error and ends only the
// goroutine that logged it, where zap's default would have called os.Exit.
func TestFatalIsLoggedAndReported(t *testing.T) {
	var out syncBuffer
	reported := make(chan error, 1)
	lg := newZapLogger(slog.New(slog.NewTextHandler(&out, nil)), zapcore.WarnLevel, func(err error) { reported <- err }, nil)
	lg.Info("routine chatter")
	lg.Warn("Failed to detect schema version", zap.Error(errors.New("missing term information"))) // every first start
	lg.Error("failed to update storage version", zap.Error(errors.New("no space left on device")))
	lg.With(zap.String("member", "m1")).Warn("slow fdatasync", zap.Duration("took", 2*time.Second))
	ranOn := make(chan bool, 1)
	go func() {
		defer close(ranOn)
		lg.Fatal("failed to open backend", zap.Error(errors.New("input/output error")))
		ranOn <- true // etcd's code after Fatal must not run
	}()
	if <-ranOn {
		t.Fatal("the goroutine went on after Fatal")
	}
	err := <-reported
	if !strings.Contains(err.Error(), "failed to open backend") || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("reported %v", err)
	}
	log := out.String()
	for _, want := range []string{"level=WARN msg=\"slow fdatasync\" component=etcd member=m1 took=2s",
		"level=ERROR msg=\"failed to update storage version\" component=etcd error=\"no space left on device\"",
		"level=ERROR msg=\"failed to open backend\" component=etcd error=\"input/output error\" etcd_level=fatal"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "routine chatter") || strings.Contains(log, "missing term information") {
		t.Errorf("info entry, or a warning every start logs, shown at the warn level:\n%s", log)
	}
}

// TestStartGivesUpWhenTheDirectoryIsHeld starts a second member on a directory a running one
// holds: etcd's own start-up waits for the database lock without end, and Start must return
// when its context does.
func TestStartGivesUpWhenTheDirectoryIsHeld(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first, err := Start(ctx, dir, WithUnsafeNoFsync())
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	second, err := Start(short, dir, WithUnsafeNoFsync(), WithLogger(slog.New(slog.DiscardHandler)))
	if err == nil {
		second.Close()
		t.Fatal("a second member started on a held directory")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Start on a held directory = %v; want the deadline, naming %s", err, dir)
	}
	first.Close()
	abandonedStarts.Wait() // the abandoned start-up gets the lock now, and is closed
}
