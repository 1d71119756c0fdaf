// Package cli is rpe's command line: the commands of the rpe program
// (init, keys, sign, verify, publish, fetch, status, node, dht-node,
// version, help), shared by cmd/rpe and by any Go program that embeds rpe.
//
// A program that embeds rpe calls HandleCommand at the top of main. Then
// "PROGRAM rpe COMMAND ..." runs the rpe command with the same flags as
// the rpe program, and "PROGRAM rpe publish --key K" publishes the
// running executable under the program's own app name and version:
//
//	func main() {
//		cli.HandleCommand(os.Args, cli.App{Name: "hello", Version: version})
//		// the program's own work
//	}
//
// Each command parses its flags, calls the engine package, and prints its
// result, or one line "rpe: COMMAND: reason" on stderr with an exit code
// (0 success, 1 failed, 2 bad command line, 3 verification failed). SIGINT
// and SIGTERM both stop a command cleanly: temporary files are removed and
// a seeding publisher says what it uploaded.
//
// Every command lives in its own file (cmd_<name>.go) and is listed in
// builtin. Flags mean the same in every command that has them: --json (one
// JSON object per line on stdout), --quiet (no progress), -v (log to
// stderr), --bootstrap, --listen, --state-dir.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
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

// env is what a command may touch: its output streams, the command table
// and, when rpe is embedded, the program it is embedded in. Commands take
// no other global state, so tests run them side by side.
type env struct {
	stdout, stderr io.Writer
	cmds           map[string]*command
	app            *App   // nil in the rpe program
	prog           string // "rpe", or "PROGRAM rpe" when embedded
}

// command is one entry of the command table.
type command struct {
	name    string
	args    string // synopsis after the name, e.g. "ARTIFACT --key FILE"
	summary string
	run     func(ctx context.Context, e *env, args []string) error
	// artifact: the command's one positional argument is the file to
	// sign or publish, which defaults to the running executable when rpe
	// is embedded.
	artifact bool
}

// builtin returns the commands every rpe command line has.
func builtin() []*command {
	return []*command{
		helpCommand(), initCommand(), keysCommand(), signCommand(), verifyCommand(),
		publishCommand(), fetchCommand(), statusCommand(), nodeCommand(),
		dhtNodeCommand(), versionCommand(),
	}
}

// Command is a command a program adds to the built-in ones (the rpe
// program adds sim and demo). Run's error is printed and mapped to an exit
// code as a built-in command's: see Usagef for a bad command line.
type Command struct {
	Name    string
	Args    string // synopsis after the name, e.g. "ARTIFACT --key FILE"
	Summary string
	Run     func(ctx context.Context, stdout, stderr io.Writer, args []string) error
}

// App is what a program that embeds rpe says about itself.
type App struct {
	// Name is the app name the program is published under; required.
	Name string
	// Version is the running version (semver); required.
	Version string
	// PublisherKey, when set, is the default --pubkey of the commands
	// that read a publisher's record (status, fetch, node).
	PublisherKey string
}

// HandleCommand runs an rpe command when args (os.Args) are
// "PROGRAM rpe COMMAND ...", and then exits the process with the command's
// exit code; otherwise it returns at once and the program goes on. The
// commands and flags are the rpe program's, with the program's own
// defaults: publish and sign take the running executable as the artifact
// and app.Name and app.Version as --app and --version; status, fetch and
// node take app.PublisherKey as --pubkey. SIGINT and SIGTERM stop the
// command cleanly.
func HandleCommand(args []string, app App) {
	if len(args) < 2 || args[1] != "rpe" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := RunEmbedded(ctx, args[2:], app, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// RunEmbedded runs one rpe command line (args after "PROGRAM rpe") for a
// program that embeds rpe, as HandleCommand does, and returns the exit
// code.
func RunEmbedded(ctx context.Context, args []string, app App, stdout, stderr io.Writer) int {
	prog := filepath.Base(os.Args[0])
	if app.Name != "" {
		prog = app.Name
	}
	e := newEnv(stdout, stderr, nil)
	e.app, e.prog = &app, prog+" rpe"
	return e.run(ctx, args)
}

// Run runs one command line of the rpe program (args after "rpe") with
// the built-in commands and extra, and returns the exit code. Errors are
// printed as one line "rpe: COMMAND: reason" on stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, extra ...*Command) int {
	return newEnv(stdout, stderr, extra).run(ctx, args)
}

func newEnv(stdout, stderr io.Writer, extra []*Command) *env {
	e := &env{stdout: stdout, stderr: stderr, cmds: map[string]*command{}, prog: "rpe"}
	for _, c := range builtin() {
		e.cmds[c.name] = c
	}
	for _, x := range extra {
		e.cmds[x.Name] = &command{name: x.Name, args: x.Args, summary: x.Summary,
			run: func(ctx context.Context, e *env, args []string) error { return x.Run(ctx, e.stdout, e.stderr, args) }}
	}
	return e
}

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

// run executes one command line and returns the exit code.
func (e *env) run(ctx context.Context, args []string) int {
	stderr := e.stderr
	if len(args) == 0 {
		fmt.Fprintln(stderr, `rpe: missing command (run "rpe help")`)
		return exitUsage
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "-help" {
		name = "help"
	}
	c, ok := e.cmds[name]
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
	pos, err := parseFlags(e, c, fs, args)
	if err != nil || e.app == nil {
		return pos, err
	}
	if err := e.embeddedDefaults(c, fs, &pos); err != nil {
		return nil, err
	}
	return pos, nil
}

// embeddedDefaults fills, for a program that embeds rpe, what the program
// knows of itself: --app, --version and --pubkey when not given, and the
// artifact (the running executable) when none is named.
func (e *env) embeddedDefaults(c *command, fs *flag.FlagSet, pos *[]string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, v := range map[string]string{"app": e.app.Name, "version": e.app.Version, "pubkey": e.app.PublisherKey} {
		f := fs.Lookup(name)
		if f == nil || given[name] || v == "" {
			continue
		}
		if name == "version" && given["manifest"] {
			continue // the signed manifest names its version
		}
		if err := f.Value.Set(v); err != nil {
			return fmt.Errorf("--%s %q from the program: %w", name, v, err)
		}
	}
	if c.artifact && len(*pos) == 0 {
		exe, err := os.Executable()
		if err == nil {
			exe, err = filepath.EvalSymlinks(exe)
		}
		if err != nil {
			return fmt.Errorf("find the running executable to publish: %w", err)
		}
		*pos = []string{exe}
	}
	return nil
}

// parseFlags is parseArgs without the embedded defaults.
func parseFlags(e *env, c *command, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printCommandHelp(e.stdout, e.prog, c, fs)
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

func printCommandHelp(w io.Writer, prog string, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s %s %s\n\n%s\n", prog, c.name, c.args, c.summary)
	if fs != nil {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

func (e *env) printHelp() {
	w := e.stdout
	fmt.Fprintln(w, "rpe: peer-to-peer secure software updates.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "usage: %s COMMAND [ARGS] [FLAGS]   (flags may follow arguments)\n", e.prog)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	names := make([]string, 0, len(e.cmds))
	for n := range e.cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := e.cmds[n]
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Run \"%s COMMAND --help\" for a command's flags.\n", e.prog)
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

func helpCommand() *command {
	return &command{
		name:    "help",
		args:    "[COMMAND]",
		summary: "Show the commands and exit codes, or one command's flags.",
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) == 0 {
				e.printHelp()
				return nil
			}
			if len(args) > 1 {
				return usagef("unexpected argument %q", args[1])
			}
			c, ok := e.cmds[args[0]]
			if !ok || c.name == "help" {
				if ok {
					e.printHelp()
					return nil
				}
				return usagef("unknown command %q", args[0])
			}
			// Ask the command for its own help, which prints its flags.
			return c.run(ctx, e, []string{"--help"})
		},
	}
}

// outLogLevel is Info, or Debug when RPE_LOG=debug.
func outLogLevel() slog.Level {
	if os.Getenv("RPE_LOG") == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// The helpers below let a program's own commands (Command) parse and
// report like the built-in ones.

// NewFlagSet returns a flag set for c that reports errors instead of
// printing them, for ParseArgs.
func NewFlagSet(c *Command) *flag.FlagSet { return newFlags(nil, &command{name: c.Name}) }

// ParseArgs parses flags before, between or after the positional arguments
// and returns the positional ones; with -h or --help it prints c's usage to
// stdout and returns flag.ErrHelp. A bad flag is a usage error (exit 2).
func ParseArgs(stdout io.Writer, c *Command, fs *flag.FlagSet, args []string) ([]string, error) {
	return parseFlags(&env{stdout: stdout, prog: "rpe"}, &command{name: c.Name, args: c.Args, summary: c.Summary}, fs, args)
}

// Usagef returns a bad-command-line error (exit 2).
func Usagef(format string, a ...any) error { return usagef(format, a...) }

// WantArgs checks the number of positional arguments against their names.
func WantArgs(pos []string, names ...string) error { return wantArgs(pos, names...) }

// OutFlags are the output flags every command that talks to the network
// has: --json, --quiet and -v.
type OutFlags struct{ JSON, Quiet, Verbose *bool }

// AddOutFlags defines the output flags on fs.
func AddOutFlags(fs *flag.FlagSet) OutFlags {
	o := addOutFlags(fs)
	return OutFlags{JSON: o.json, Quiet: o.quiet, Verbose: o.verbose}
}

// Logger returns the logger -v asks for (text on stderr), or nil.
func (o OutFlags) Logger(stderr io.Writer) *slog.Logger {
	return outFlags{json: o.JSON, quiet: o.Quiet, verbose: o.Verbose}.logger(&env{stderr: stderr})
}

// IsTerminal says whether w is a terminal, for progress bars.
func IsTerminal(w io.Writer) bool { return isTerminal(w) }

// UsageError marks err as a bad command line (exit 2).
func UsageError(err error) error { return usageError{err} }
