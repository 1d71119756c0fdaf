// Command rpe is the rpe update engine's command line: it makes keys (init,
// keys), signs and verifies releases (sign, verify), publishes and seeds
// them (publish), downloads them (fetch), lists what a publisher's record
// names (status), keeps a program up to date (node), runs a bare DHT node
// (dht-node), runs many nodes on one machine (demo, sim), and prints its
// own version (version). "rpe help" lists the commands, exit codes and
// environment.
//
// It is a thin shell: the commands live in package cli, which a program
// that embeds rpe shares ("myapp rpe publish"); this program adds sim and
// demo, which run the simulation. Exit codes: 0 success, 1 failed, 2 bad
// command line, 3 verification failed.
package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/rpe-project/engine/cli"
)

func main() {
	// SIGTERM (kill, systemd, a container stop) cleans up like Ctrl-C.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var extra []*cli.Command
	for _, c := range commands {
		extra = append(extra, c.export())
	}
	return cli.Run(ctx, args, stdout, stderr, extra...)
}

// Exit codes, as cli returns them.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitRejected = 3
)

// What follows lets cmd_sim.go and cmd_demo.go declare their commands with
// cli's helpers.

// env is a command's output streams.
type env struct{ stdout, stderr io.Writer }

// command is a command this program adds to cli's.
type command struct {
	name, args, summary string
	run                 func(ctx context.Context, e *env, args []string) error
}

// commands holds sim and demo, filled by their init functions.
var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func (c *command) export() *cli.Command {
	return &cli.Command{Name: c.name, Args: c.args, Summary: c.summary,
		Run: func(ctx context.Context, stdout, stderr io.Writer, args []string) error {
			return c.run(ctx, &env{stdout: stdout, stderr: stderr}, args)
		}}
}

func newFlags(e *env, c *command) *flag.FlagSet { return cli.NewFlagSet(c.export()) }

func parseArgs(e *env, c *command, fs *flag.FlagSet, args []string) ([]string, error) {
	return cli.ParseArgs(e.stdout, c.export(), fs, args)
}

func usagef(format string, a ...any) error         { return cli.Usagef(format, a...) }
func wantArgs(pos []string, names ...string) error { return cli.WantArgs(pos, names...) }
func isTerminal(w io.Writer) bool                  { return cli.IsTerminal(w) }

// outFlags are --json, --quiet and -v.
type outFlags struct {
	json, quiet, verbose *bool
	o                    cli.OutFlags
}

func addOutFlags(fs *flag.FlagSet) outFlags {
	o := cli.AddOutFlags(fs)
	return outFlags{json: o.JSON, quiet: o.Quiet, verbose: o.Verbose, o: o}
}

func (o outFlags) logger(e *env) *slog.Logger { return o.o.Logger(e.stderr) }

// usageError is a bad command line (exit 2), as cli reads it.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return cli.UsageError(u.err) }
