package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// TestWatchSignals checks both ways the backstop ends a stop that hangs: a second signal at
// once, or the grace period after the first. exit stands in for os.Exit.
func TestWatchSignals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second bool
		grace  time.Duration
		want   string
	}{
		{"second signal", true, time.Hour, "terminated again while stopping: exiting at once"},
		{"grace over", false, 10 * time.Millisecond, "still stopping 10ms after interrupt: exiting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigc := make(chan os.Signal, 2)
			ctx, stop := context.WithCancelCause(context.Background())
			defer stop(nil)
			var stderr bytes.Buffer
			exited := make(chan int, 1)
			go watchSignals(sigc, stop, tc.grace, &stderr, func(code int) { exited <- code })
			first := os.Signal(os.Interrupt)
			if tc.second {
				first = syscall.SIGTERM
			}
			sigc <- first
			<-ctx.Done() // the first signal cancels the command's context
			if !errors.Is(context.Cause(ctx), errStopped) {
				t.Fatalf("cause %v, want errStopped", context.Cause(ctx))
			}
			if tc.second {
				sigc <- syscall.SIGTERM
			}
			if code := <-exited; code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %q, want %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestShutdownTimeoutFromEnvironment(t *testing.T) {
	if d, err := shutdownTimeoutFrom(""); err != nil || d != DefaultShutdownTimeout {
		t.Fatalf("unset: %v %v", d, err)
	}
	if d, err := shutdownTimeoutFrom("5s"); err != nil || d != 5*time.Second {
		t.Fatalf("5s: %v %v", d, err)
	}
	for _, bad := range []string{"soon", "-1s", "0s"} {
		if _, err := shutdownTimeoutFrom(bad); err == nil || !strings.Contains(err.Error(), "STRATA_SHUTDOWN_TIMEOUT") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// TestEveryCommandHelpExitsZero walks the command tree: `<command> -h` prints help and ends
// with exit code 0 for every command and subcommand.
func TestEveryCommandHelpExitsZero(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRoot(), nil)
	if len(paths) < 30 {
		t.Fatalf("only %d commands in the tree", len(paths))
	}
	for _, path := range paths {
		root := newRoot()
		var out, stderr bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&stderr)
		root.SetArgs(append(append([]string(nil), path...), "-h"))
		cmd, err := root.ExecuteContextC(context.Background())
		if code := exitCode(context.Background(), cmd, err, &stderr); code != 0 {
			t.Errorf("strata %v -h: exit %d: %v\n%s", path, code, err, stderr.String())
		}
		if path != nil && path[0] == "bench" {
			continue // bench prints its own flags, with the flag package, on stderr
		}
		if !strings.Contains(out.String(), "Usage:") {
			t.Errorf("strata %v -h printed no usage:\n%s", path, out.String())
		}
	}
}

// TestUsageMistakesExitTwo checks that a mistake on the command line is exit 2 with a hint,
// not a failure (1) and not help (0).
func TestUsageMistakesExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"topic", "frobnicate"},
		{"topic", "create", "--bogus"},
		{"topic", "create"},
		{"consume", "--topic", "T", "--from", "yesterday"},
		{"group", "reset", "--group", "g", "--topic", "T", "--to", "soon"},
		{"--format", "yaml", "topic", "list"},
	} {
		root := newRoot()
		var out, stderr bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&stderr)
		root.SetArgs(args)
		cmd, err := root.ExecuteContextC(context.Background())
		if code := exitCode(context.Background(), cmd, err, &stderr); code != 2 {
			t.Errorf("strata %v: exit %d (%v), want 2", args, code, err)
		}
	}
}
