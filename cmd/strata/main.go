// Command strata is Strata's one binary: `strata dev` runs everything in one process,
// `strata broker` runs a cluster node, and the other subcommands are the command-line client.
//
// The command tree is github.com/spf13/cobra: every command and subcommand answers -h (exit
// 0), the client's global flags (signing keys, TLS, --namesrv, --format) are persistent flags
// of the root, and `strata completion bash|zsh|fish` comes with it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runFunc is a command's entry point once its flags are parsed: args are its positional
// arguments.
type runFunc func(ctx context.Context, args []string, stdout io.Writer) error

// usageError is a mistake in how a command was called (exit 2), as opposed to a failure of
// what it did (exit 1).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// leaf is a runnable command: setup declares its flags on fs and returns what runs.
// args says which positional arguments it takes (nil: none).
func leaf(use, short, long string, args cobra.PositionalArgs, setup func(fs *pflag.FlagSet) runFunc) *cobra.Command {
	if args == nil {
		args = noArgs
	}
	cmd := &cobra.Command{Use: use, Short: short, Long: strings.TrimSpace(long), Args: args}
	run := setup(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return run(cmd.Context(), args, cmd.OutOrStdout())
	}
	return cmd
}

// parent is a command that only groups subcommands; an unknown subcommand is a usage error.
func parent(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Long: strings.TrimSpace(long), Args: noArgs,
		// Runnable, so that cobra checks Args (an unknown subcommand is an error, exit 2);
		// with no subcommand it shows the help.
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}
	cmd.AddCommand(subs...)
	return cmd
}

// noArgs refuses positional arguments, naming the subcommands when there are some.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return usageError{fmt.Errorf("unknown command %q for %q; want one of: %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))}
	}
	return usageError{fmt.Errorf("%q takes no arguments, got %q (flags start with --; quote values with spaces)", cmd.CommandPath(), args)}
}

// newRoot builds the whole command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "strata",
		Short: "Strata: a RocketMQ-protocol broker with tiered storage, and its command-line client",
		Long: strings.TrimSpace(`
Strata: a RocketMQ-protocol broker with tiered storage, and its command-line client.

` + "`strata dev`" + ` runs everything in one process; ` + "`strata broker`" + ` runs a cluster node. The
other commands are the client: they reach the cluster through a name server (--namesrv,
env STRATA_NAMESRV, default ` + defaultNamesrv + `).

` + securityUsage + `

Time values (consume --from, group reset --to-time, message find --from/--to, export
--from/--to) all take ` + timeForms + `.

SIGINT or SIGTERM stops any command; a second signal, or STRATA_SHUTDOWN_TIMEOUT
(default ` + DefaultShutdownTimeout.String() + `) after the first, ends it at once.`),
		SilenceUsage:      true,
		SilenceErrors:     true,
		Args:              noArgs,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return globals.resolve(cmd) },
	}
	globals.register(root.PersistentFlags())
	root.AddCommand(
		devCmd(), brokerCmd(),
		topicCmd(), produceCmd(), consumeCmd(), groupCmd(),
		messageCmd(), exportCmd(), traceCmd(),
		clusterCmd(), tierCmd(), timerCmd(), txnCmd(), aclCmd(),
		benchCmd(), versionCmd(),
	)
	_ = root.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see `%s -h`)", err, cmd.CommandPath())}
	})
	return root
}

func main() {
	root := newRoot()
	args, err := takeLeadingGlobals(root.PersistentFlags(), os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "strata: %v (see `strata -h`)\n", err)
		os.Exit(2)
	}
	root.SetArgs(args)
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
	cmd, err := root.ExecuteContextC(ctx)
	os.Exit(exitCode(ctx, cmd, err, os.Stderr))
}

// exitCode reports err on stderr and says how the process ends: 0 for success, help and a
// stop by signal, 2 for a usage mistake, 1 for a failure.
func exitCode(ctx context.Context, cmd *cobra.Command, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) || errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	name := "strata"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	if cause := context.Cause(ctx); errors.Is(cause, errStopped) && errors.Is(err, context.Canceled) {
		// Asked to stop while it was starting or waiting: a clean stop, not a failure.
		fmt.Fprintf(stderr, "%s: %v: %v\n", name, cause, err)
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// benchCmd registers bench.go's load generator as it is: it parses its own flags (so the
// global flags go before "bench" or in the environment).
func benchCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "bench",
		Short:              "load generator: produce throughput and publish-to-consume latency",
		Long:               "Drives a running Strata with the official client. Run `strata bench -h` for its flags; global flags (TLS, signing keys) go before \"bench\" or in STRATA_* variables.",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd.Context(), args, cmd.OutOrStdout())
		},
	}
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
