// Command strata is Strata's one binary: `strata dev` runs everything in one process,
// `strata broker` runs a cluster node, and the other subcommands are the command-line client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

// command is one subcommand: its one-line summary and its entry point.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = map[string]command{
	"dev":     {"run everything in one process: embedded etcd, one broker, a filesystem bucket", runDev},
	"broker":  {"run a cluster node from a YAML config (--config FILE)", runBroker},
	"topic":   {"create, update, list or describe topics (topic create|update|list|describe)", runTopic},
	"produce": {"send messages from arguments or stdin lines", runProduce},
	"consume": {"print a topic's messages from an offset or a time, optionally following", runConsume},
	"bench":   {"load generator: produce throughput and publish-to-consume latency", runBench},
	"message": {"look a message up by id or key, in either tier (message get|find)", runMessage},
	"export":  {"export a topic's messages to an Arrow IPC (or Parquet) file", runExport},
	"tier":    {"cold tier status: watermarks, objects, bytes, offload lag (tier status)", runTier},
	"trace":   {"a message's trace: publish and each consumer group's deliveries (trace --id|--key)", runTrace},
	"timer":   {"scheduled delivery status: pending timers by horizon, lateness, index (timer status)", runTimer},
	"group":   {"consumer groups: reset offsets to a time or offset, describe offsets and lag (group reset|describe)", runGroup},
	"txn":     {"transactional half messages with no decision yet: age, check-backs (txn list)", runTxn},
	"acl":     {"access-control accounts: users and their topic and group permissions (acl user|grant|revoke|whitelist)", runACL},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: strata <command> [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run `strata <command> -h` for a command's flags.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, securityUsage)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "SIGINT or SIGTERM stops any command; a second signal, or STRATA_SHUTDOWN_TIMEOUT")
	fmt.Fprintf(w, "(default %s) after the first, ends it at once.\n", DefaultShutdownTimeout)
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name, args, sec, err := splitArgs(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata: %v\n\n", err)
		usage(os.Stderr)
		os.Exit(2)
	}
	cliSecurity = sec
	if name == "" || name == "-h" || name == "--help" || name == "help" {
		usage(os.Stdout)
		return
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "strata: unknown command %q\n\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	grace, err := shutdownTimeoutFrom(os.Getenv("STRATA_SHUTDOWN_TIMEOUT"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata: %v\n", err)
		os.Exit(2)
	}
	shutdownTimeout = grace
	ctx, stop := context.WithCancelCause(context.Background())
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	go watchSignals(sigc, stop, grace, os.Stderr, os.Exit)
	err = cmd.run(ctx, args, os.Stdout)
	if err == nil {
		return
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if cause := context.Cause(ctx); errors.Is(cause, errStopped) && errors.Is(err, context.Canceled) {
		// Asked to stop while it was starting or waiting: a clean stop, not a failure.
		fmt.Fprintf(os.Stderr, "strata %s: %v: %v\n", name, cause, err)
		return
	}
	fmt.Fprintf(os.Stderr, "strata %s: %v\n", name, err)
	os.Exit(1)
}

// errStopped is the cause of the context main cancels on SIGINT or SIGTERM.
var errStopped = errors.New("stopped by signal")

// DefaultShutdownTimeout bounds a stop; STRATA_SHUTDOWN_TIMEOUT overrides it.
const DefaultShutdownTimeout = 30 * time.Second

// shutdownTimeout is the bound in force: the hard stop of watchSignals, and the budget from
// which runNode's orderly close takes its share.
var shutdownTimeout = DefaultShutdownTimeout

func shutdownTimeoutFrom(env string) (time.Duration, error) {
	if env == "" {
		return DefaultShutdownTimeout, nil
	}
	d, err := time.ParseDuration(env)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("STRATA_SHUTDOWN_TIMEOUT=%q: want a positive duration such as 30s", env)
	}
	return d, nil
}

// watchSignals turns the first SIGINT or SIGTERM into cancelling the command's context, which
// every start-up step and the serving loop obey. It is also the backstop for a step that does
// not: a second signal, or grace after the first, ends the process with a message saying so.
func watchSignals(sigc <-chan os.Signal, stop context.CancelCauseFunc, grace time.Duration, stderr io.Writer, exit func(code int)) {
	first := <-sigc
	stop(fmt.Errorf("%w (%v)", errStopped, first))
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case sig := <-sigc:
		fmt.Fprintf(stderr, "strata: %v again while stopping: exiting at once, without finishing the shutdown\n", sig)
	case <-timer.C:
		fmt.Fprintf(stderr, "strata: still stopping %s after %v: exiting without finishing the shutdown (STRATA_SHUTDOWN_TIMEOUT sets this bound)\n", grace, first)
	}
	exit(1)
}
