// Command orderflow is the project's one binary. Its subcommands run a
// service (serve), the whole stack on one machine for development (dev) and
// the event store benchmark (bench), and list or rebuild the projections in
// a service's database (projections).
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the default action comes back, so a second
	// Ctrl-C ends a shutdown that hangs (children die with us: Pdeathsig).
	go func() {
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:])
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run one service (" + strings.Join(serveNames(), ", ") + ")", runServe},
		{"dev", "run the whole stack locally with embedded NATS and PostgreSQL", runDev},
		{"bench", "benchmark the event store", runBench},
		{"projections", "list a service's projections, or replay one with zero downtime", runProjections},
		{"sagas", "show a saga's timeline, list sagas, or retry a failed one", runSagas},
		{"snapshots", "list or drop the snapshots of long streams in a service's event store", runSnapshots},
		{"token", "print a bearer token the dev stack's gateway accepts", runToken},
		{"chaos", "run the clustered stack under load while killing its processes, then check its invariants", runChaos},
		{"nats-node", "internal: one NATS node of dev --cluster", runNATSNode},
	}
}

// usageError is a command line the program cannot act on; it exits with 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		printUsage(os.Stderr)
		return usagef("no command given")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printUsage(os.Stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	printUsage(os.Stderr)
	return usagef("unknown command %q", args[0])
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: orderflow COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "orderflow COMMAND -h" for a command's flags.`)
}

// exitCode maps run's result to the process exit code, reporting errors
// other than usage errors (the flag package has already reported those).
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "orderflow: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "orderflow: %v\n", err)
		return 1
	}
}

// parseFlags parses args with fs, turning a bad command line into a
// usageError; -h gives flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err}
}

// parseFlagsOnly is parseFlags for a command that takes flags and no
// arguments; fs's name names it in the error.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return usagef("%s: unexpected arguments %q", fs.Name(), fs.Args())
	}
	return nil
}

// subcommand is one subcommand of a command such as projections.
type subcommand struct {
	name string
	run  func(ctx context.Context, args []string) error
}

// runSubcommand runs the subcommand args[0] names among subs, for command
// cmd: help prints usage to out, and no name or an unknown one prints it
// to errOut and is a usage error naming the choices.
func runSubcommand(ctx context.Context, cmd string, args []string, subs []subcommand, usage func(io.Writer), out, errOut io.Writer) error {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.name
	}
	choices := strings.Join(names, " or ")
	if len(names) > 2 {
		choices = strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	}
	if len(args) == 0 {
		usage(errOut)
		return usagef("%s: no subcommand given (%s)", cmd, choices)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(out)
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, args[1:])
		}
	}
	usage(errOut)
	return usagef("%s: unknown subcommand %q (want %s)", cmd, args[0], choices)
}
