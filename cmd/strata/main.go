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
)

// command is one subcommand: its one-line summary and its entry point.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = map[string]command{
	"dev":     {"run everything in one process: embedded etcd, one broker, a filesystem bucket", runDev},
	"broker":  {"run a cluster node from a YAML config (--config FILE)", runBroker},
	"topic":   {"create, list or describe topics (topic create|list|describe)", runTopic},
	"produce": {"send messages from arguments or stdin lines", runProduce},
	"consume": {"print a topic's messages from an offset or a time, optionally following", runConsume},
	"bench":   {"load generator: produce throughput and publish-to-consume latency", runBench},
	"message": {"look a message up by id or key, in either tier (message get|find)", runMessage},
	"export":  {"export a topic's messages to an Arrow IPC (or Parquet) file", runExport},
	"tier":    {"cold tier status: watermarks, objects, bytes, offload lag (tier status)", runTier},
	"timer":   {"scheduled delivery status: pending timers by horizon, lateness, index (timer status)", runTimer},
	"group":   {"consumer groups: reset offsets to a time or offset, describe offsets and lag (group reset|describe)", runGroup},
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
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage(os.Stdout)
		return
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "strata: unknown command %q\n\n", name)
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "strata %s: %v\n", name, err)
		os.Exit(1)
	}
}
