// Command rpe is the rpe update engine's command line: it makes keys (init,
// keys), signs and verifies releases (sign, verify), publishes and seeds
// them (publish), downloads them (fetch), lists what a publisher's record
// names (status), keeps a program up to date (node), runs a bare DHT node
// (dht-node), runs many nodes on one machine (demo, sim), and prints its
// own version (version). "rpe help" lists the commands, exit codes and
// environment.
//
// It is a thin shell over the engine package: each command parses its
// flags, calls the engine, and prints its result, or one line
// "rpe: COMMAND: reason" on stderr with an exit code (0 success, 1 failed,
// 2 bad command line, 3 verification failed). SIGINT and SIGTERM both stop
// a command cleanly: temporary files are removed and a seeding publisher
// says what it uploaded.
//
// Every command lives in its own file (cmd_<name>.go) and registers itself
// in the commands table below. Flags mean the same in every command that
// has them: --json (one JSON object per line on stdout), --quiet (no
// progress), -v (log to stderr), --bootstrap, --listen, --state-dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/term"
)

// Exit codes.
const (
	exitOK       = 0 // success
	exitError    = 1 // the command failed: bad input file, I/O error, existing key
	exitUsage    = 2 // bad command line: unknown command or flag, missing argument
	exitRejected = 3 // verification failed: the artifact or manifest is not trusted
)

// env is what a command may touch: its output streams. Commands take no
// other global state, so tests run them side by side.
type env struct {
	stdout, stderr io.Writer
}

// command is one entry of the command table.
type command struct {
	name    string
	args    string // synopsis after the name, e.g. "ARTIFACT --key FILE"
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// commands is filled by the init functions of the cmd_*.go files.
var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// outFlags are the output flags of the commands that talk to the network.
type outFlags struct {
	json, quiet, verbose *bool
}

func addOutFlags(fs *flag.FlagSet) outFlags {
	return outFlags{
		json:    fs.Bool("json", false, "print the result as JSON on stdout"),
		quiet:   fs.Bool("quiet", false, "no progress, only the result and errors"),
		verbose: fs.Bool("v", false, "log what the node does to stderr"),
	}
}

// logger returns the node logger -v asks for: text on stderr, or silent.
func (o outFlags) logger(e *env) *slog.Logger {
	if !*o.verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: outLogLevel()}))
}

// isTerminal says whether w is a terminal, for progress bars.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// usageError is a bad command line (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// rejectedError is a failed verification (exit 3).
type rejectedError struct{ err error }

func (r rejectedError) Error() string { return r.err.Error() }
func (r rejectedError) Unwrap() error { return r.err }

func main() {
	// SIGTERM (kill, systemd, a container stop) cleans up like Ctrl-C.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code. Errors are printed
// as one line "rpe: <command>: <reason>" on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprintln(stderr, `rpe: missing command (run "rpe help")`)
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "-help" {
		name = "help"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "rpe: unknown command %q (run \"rpe help\")\n", oneLine(name))
		return exitUsage
	}
	err := c.run(ctx, e, args[1:])
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	fmt.Fprintf(stderr, "rpe: %s: %s\n", c.name, oneLine(err.Error()))
	var ue usageError
	var re rejectedError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &re):
		return exitRejected
	}
	return exitError
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// newFlags returns a flag set that reports errors instead of printing them.
func newFlags(e *env, c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("rpe "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseArgs parses flags that may come before, between or after the
// positional arguments ("rpe sign ARTIFACT --key FILE"), which the flag
// package alone does not allow. A "--" ends the flags. With -h or --help it
// prints the command's usage to stdout and returns flag.ErrHelp.
func parseArgs(e *env, c *command, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printCommandHelp(e.stdout, c, fs)
				return nil, err
			}
			return nil, usageError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest); i > 0 && args[i-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// requireFlag reports a missing mandatory flag.
func requireFlag(name, value string) error {
	if value == "" {
		return usagef("missing --%s", name)
	}
	return nil
}

// wantArgs checks the number of positional arguments.
func wantArgs(pos []string, names ...string) error {
	if len(pos) < len(names) {
		return usagef("missing %s", names[len(pos)])
	}
	if len(pos) > len(names) {
		return usagef("unexpected argument %q", pos[len(names)])
	}
	return nil
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: rpe %s %s\n\n%s\n", c.name, c.args, c.summary)
	if fs != nil {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "rpe: peer-to-peer secure software updates.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: rpe COMMAND [ARGS] [FLAGS]   (flags may follow arguments)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run \"rpe COMMAND --help\" for a command's flags.")
	fmt.Fprintln(w, "Errors of the DHT and of records, what they mean and the fix: docs/ERRORS.md.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "exit codes:")
	fmt.Fprintf(w, "  %d  success\n", exitOK)
	fmt.Fprintf(w, "  %d  the command failed (bad input file, I/O error, key file exists, ...)\n", exitError)
	fmt.Fprintf(w, "  %d  bad command line (unknown command or flag, missing argument)\n", exitUsage)
	fmt.Fprintf(w, "  %d  verification failed (tampered, truncated, wrong key, expired, ...)\n", exitRejected)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "environment:")
	fmt.Fprintln(w, "  RPE_KEY        secret key file when --key is not given")
	fmt.Fprintln(w, "  RPE_BOOTSTRAP  DHT starting nodes when --bootstrap is not given (default: the public Mainline routers)")
	fmt.Fprintln(w, "  RPE_LOG=debug  with -v, log at debug level")
}

func init() {
	register(&command{
		name:    "help",
		args:    "[COMMAND]",
		summary: "Show the commands and exit codes, or one command's flags.",
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				printHelp(e.stdout)
				return nil
			}
			if len(args) > 1 {
				return usagef("unexpected argument %q", args[1])
			}
			c, ok := commands[args[0]]
			if !ok || c.name == "help" {
				if ok {
					printHelp(e.stdout)
					return nil
				}
				return usagef("unknown command %q", args[0])
			}
			// Ask the command for its own help, which prints its flags.
			return c.run(ctx, e, []string{"--help"})
		},
	})
}

// outLogLevel is Info, or Debug when RPE_LOG=debug.
func outLogLevel() slog.Level {
	if os.Getenv("RPE_LOG") == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
