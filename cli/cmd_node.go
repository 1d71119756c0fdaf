package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/supervise"
	"github.com/rpe-project/engine/internal/units"
	"github.com/rpe-project/engine/release"
)

func nodeCommand() *command {
	return &command{
		name: "node",
		args: "--pubkey KEY --app A --target PATH [--channel C] [--version V] [--apply now|on-restart|at=HH:MM|window=HH:MM-HH:MM|manual] [--secret FILE] [--stale-after D] [--run -- CMD ARGS...]",
		summary: "Keep any program up to date: follow the key, download, verify and swap PATH; " +
			"with --run, run CMD as a child and restart it into each new version. Seeds what it has.",
		run: runNode,
	}
}

// NodeVersionFile, in the state directory, holds the version rpe node last
// installed at the target, so a restarted rpe node knows what PATH holds.
const NodeVersionFile = "rpe-node-version"

func runNode(ctx context.Context, e *env, args []string) error {
	c := e.cmds["node"]
	fs := newFlags(e, c)
	tf := addTargetFlags(fs)
	target := fs.String("target", "", "the program `PATH` to keep up to date (must exist)")
	version := fs.String("version", "", "the `version` PATH holds now (default: what rpe node last installed there, else 0.0.0: install the newest release)")
	var policy engine.Policy
	fs.Var(&policy, "apply", "when to install: now, on-restart, at=HH:MM, window=HH:MM-HH:MM (local time; may cross midnight) or manual (on SIGUSR1 to rpe node) (default now)")
	run := fs.Bool("run", false, "run the program given after -- as a child and restart it into each new version")
	healthy := fs.Duration("healthy-after", 10*time.Second, "with --run: a new version that keeps running this long is healthy; one that exits sooner is rolled back")
	poll := fs.Duration("poll", 5*time.Minute, "mean time between DHT lookups of the record")
	metrics := fs.String("metrics", "", "serve Prometheus metrics at /metrics and the status as JSON at /status on TCP `ADDR`, e.g. 127.0.0.1:9090 (default: nothing listens)")
	secretFile := addSecretFlag(fs)
	staleAfter := fs.Duration("stale-after", 0, "warn when the newest record seen was signed longer ago than this (an eclipse or a publisher that stopped re-signing); 0: never")
	join := fs.Duration("join-timeout", 10*time.Second, "fail when no DHT node has answered after this long")
	nf := addNetFlags(fs)
	of := addOutFlags(fs)
	pos, err := parseArgs(e, c, fs, args)
	if err != nil {
		return err
	}
	if err := tf.check(true); err != nil {
		return err
	}
	if *run && len(pos) == 0 {
		return usagef("--run needs the command after --, e.g. --run -- %s", orDefault(*target, "PATH"))
	}
	if !*run && len(pos) > 0 {
		return usagef("unexpected argument %q (to run a program, use --run -- CMD ARGS)", pos[0])
	}
	if *target == "" {
		return usagef("missing --target (the program file to keep up to date)")
	}
	abs, err := filepath.Abs(*target)
	if err != nil {
		return err
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return fmt.Errorf("--target %s does not exist; put the current version there first (rpe fetch --out %s fetches the newest)", *target, *target)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("--target %s is not a regular file", *target)
	}
	if err := checkWritableDir(abs, "--target"); err != nil {
		return err
	}
	if *poll < time.Second {
		return usagef("--poll %v: want at least 1s", *poll)
	}
	boot, err := nf.bootstrapList()
	if err != nil {
		return err
	}
	ldht, lquic, err := nf.listenAddrs()
	if err != nil {
		return err
	}
	stateDir := *nf.stateDir
	if stateDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no user cache directory (%v); give --state-dir", err)
		}
		stateDir = filepath.Join(cache, "rpe", "node-"+*tf.app+"-"+*tf.channel)
	}
	if stateDir, err = filepath.Abs(stateDir); err != nil {
		return err
	}
	current := *version
	if current == "" {
		if b, err := readFileLimit(filepath.Join(stateDir, NodeVersionFile), 256); err == nil {
			current = strings.TrimSpace(string(b))
		}
	}
	if current == "" {
		current = "0.0.0"
	}
	if _, err := release.ParseVersion(current); err != nil {
		return usageError{fmt.Errorf("--version: %w", err)}
	}
	secret, err := sharedSecret(*secretFile)
	if err != nil {
		return err
	}
	// Only a valid command line creates anything.
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("--state-dir %s: %v; choose a writable directory", stateDir, errors.Unwrap(err))
	}
	if policy == engine.ApplyOnRestart && !*run {
		// Nothing to restart: swap at once.
		policy = engine.ApplyNow
	}

	out := newNodeOutput(e, of)
	var sup *supervise.Supervisor
	exec, check := func(string, []string, []string) error { return nil }, (func(context.Context) error)(nil)
	if *run {
		// With --json, stdout carries only rpe's events: the child's output
		// goes to stderr.
		childOut := e.stdout
		if *of.json {
			childOut = e.stderr
		}
		sup, err = supervise.New(supervise.Config{Argv: pos, Stdout: childOut, Stderr: e.stderr, Healthy: *healthy,
			OnStart: func(pid int, restart bool) { out.started(pos, pid, restart) }})
		if err != nil {
			return err
		}
		exec, check = sup.Exec, sup.HealthCheck
	}
	// Without --run nothing runs the program: exec returns at once, and the
	// installer confirms the swap. With --run the supervisor restarts the
	// child into the new version and reports whether it stayed up; the
	// engine's installer alone confirms or rolls back.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	// Under --apply manual, SIGUSR1 installs the release that waits.
	applyNow := make(chan os.Signal, 1)
	if policy == engine.ApplyManual {
		signal.Notify(applyNow, syscall.SIGUSR1)
		defer signal.Stop(applyNow)
	}
	eng, err := engine.Start(ctx, engine.Config{
		SharedSecret: secret,
		HealthCheck:  check,
		PublisherKey: *tf.pubkey, App: *tf.app, Channel: *tf.channel, Platform: *tf.platform,
		CurrentVersion: current, Target: abs, StateDir: stateDir, Apply: policy, Exec: exec,
		Bootstrap: boot, ListenDHT: ldht, ListenQUIC: lquic, Logger: of.logger(e), PollInterval: *poll, MetricsAddr: *metrics,
		StaleAfter: *staleAfter,
	})
	if err != nil {
		return explain(err)
	}
	// The child goes first, then the engine: a service manager that stops
	// rpe node stops its program too (the signal is passed on, and rpe node
	// waits for the child), so no copy is left running.
	stopSig := os.Signal(syscall.SIGTERM)
	defer func() {
		if sup != nil {
			sup.Stop(stopSig)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Stop(sctx)
	}()
	if err := waitJoined(ctx, eng, boot, *join); err != nil {
		return err
	}
	holds := current
	if *version == "" && current == "0.0.0" {
		holds = "an unknown version (the newest release will be installed)"
	}
	out.following(*tf.pubkey, *tf.app, *tf.channel, *tf.platform, *target, holds)
	var childExited <-chan error
	if sup != nil {
		if err := sup.Start(); err != nil {
			return fmt.Errorf("--run %s: %v", pos[0], err)
		}
		childExited = sup.Exited()
	}
	events := eng.Events()
	for {
		select {
		case sig := <-sigs:
			stopSig = sig
			out.stopping(sig)
			return nil
		case <-ctx.Done():
			select {
			case sig := <-sigs:
				stopSig = sig
			default:
			}
			out.stopping(stopSig)
			return nil
		case <-applyNow:
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := eng.Apply(actx)
			cancel()
			if errors.Is(err, engine.ErrNothingToApply) {
				out.warn("SIGUSR1: no release is ready to install")
			} else if err != nil {
				out.warn("SIGUSR1: %v", err)
			}
		case err := <-childExited:
			out.exited(pos[0], err)
			if err != nil {
				return fmt.Errorf("%s exited: %v", pos[0], err)
			}
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			switch ev := ev.(type) {
			case engine.Installed:
				saveVersion(stateDir, ev.Version, out)
			case engine.RolledBack:
				saveVersion(stateDir, ev.PreviousVersion, out)
				if sup != nil {
					sup.Restored()
				}
			}
			out.event(ev)
		}
	}
}

// saveVersion records that the target now holds version v, for the next
// start of rpe node.
func saveVersion(stateDir, v string, out *nodeOutput) {
	if err := writeFileAtomic(filepath.Join(stateDir, NodeVersionFile), []byte(v+"\n"), 0o644); err != nil {
		out.warn("cannot record the installed version: %v", err)
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// waitJoined waits until the node's DHT routing table has a node, and fails
// with one line when nobody answers in time.
func waitJoined(ctx context.Context, eng *engine.Engine, boot []string, d time.Duration) error {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for eng.Status().DHTNodes == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			where := "the public Mainline routers"
			if len(boot) > 0 {
				where = strings.Join(boot, ", ")
			}
			return fmt.Errorf("%v at %s within %v; check --bootstrap (is a DHT node such as `rpe dht-node` running there?)", engine.ErrUnreachable, where, d)
		case <-tick.C:
		}
	}
	return nil
}

// nodeOutput prints what a node does: lines for people, or with --json one
// JSON object per event and nothing else ({"event": kind, "time": ..., and
// the event's fields}; the kinds are listed in docs/FORMATS.md).
type nodeOutput struct {
	w     io.Writer
	json  bool
	quiet bool
	mu    sync.Mutex
	bar   *byteBar
}

func newNodeOutput(e *env, of outFlags) *nodeOutput {
	o := &nodeOutput{w: e.stdout, json: *of.json, quiet: *of.quiet}
	if !o.json && !o.quiet {
		o.bar = newByteBar(e.stdout)
	}
	return o
}

// emit writes one JSON event (--json only).
func (o *nodeOutput) emit(kind string, m map[string]any) {
	if m == nil {
		m = map[string]any{}
	}
	m["event"], m["time"] = kind, time.Now().UTC()
	o.mu.Lock()
	defer o.mu.Unlock()
	json.NewEncoder(o.w).Encode(m)
}

// say prints a line for people (not with --json or --quiet).
func (o *nodeOutput) say(format string, a ...any) {
	if o.json || o.quiet {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format+"\n", a...)
}

// warn prints a warning, also with --quiet; with --json a "warning" event.
func (o *nodeOutput) warn(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if o.json {
		o.emit("warning", map[string]any{"msg": msg})
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintln(o.w, "warning: "+msg)
}

func (o *nodeOutput) following(key, app, channel, platform, target, holds string) {
	if o.json {
		o.emit("following", map[string]any{"pubkey": key, "app": app, "channel": channel, "platform": platform, "target": target, "holds": holds})
		return
	}
	o.say("following %s for %s/%s/%s; %s holds %s", key, app, channel, platform, target, holds)
}

// started reports a child started: the first start, or a restart into a
// new or a restored version.
func (o *nodeOutput) started(argv []string, pid int, restart bool) {
	kind := "started"
	if restart {
		kind = "restarted"
	}
	if o.json {
		o.emit(kind, map[string]any{"pid": pid, "cmd": argv})
		return
	}
	o.say("%s %s (pid %d)", kind, strings.Join(argv, " "), pid)
}

func (o *nodeOutput) stopping(sig os.Signal) {
	if o.json {
		o.emit("stopping", map[string]any{"signal": sig.String()})
		return
	}
	o.say("stopping (%v)", sig)
}

func (o *nodeOutput) exited(name string, err error) {
	if o.json {
		m := map[string]any{"cmd": name}
		if err != nil {
			m["err"] = err.Error()
		}
		o.emit("exited", m)
		return
	}
	if err == nil {
		o.say("%s exited", name)
	}
}

func (o *nodeOutput) event(ev engine.Event) {
	if o.json {
		m := map[string]any{}
		kind := strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", ev), "engine."))
		switch ev := ev.(type) {
		case engine.ReleaseFound:
			m["version"], m["manifest_id"], m["size"] = ev.Version, ev.ManifestID.String(), ev.Size
		case engine.Progress:
			m["verified"], m["total"], m["bytes"], m["size"], m["peers"] = ev.Verified, ev.Total, ev.Bytes, ev.Size, ev.Peers
		case engine.NotRolledOut:
			m["version"], m["manifest_id"], m["rollout"] = ev.Version, ev.ManifestID.String(), ev.Rollout
		case engine.Reused:
			m["manifest_id"], m["chunks"], m["bytes"], m["verified"], m["total"] = ev.ManifestID.String(), ev.Chunks, ev.Bytes, ev.Verified, ev.Total
		case engine.Verified:
			m["version"], m["manifest_id"] = ev.Version, ev.ManifestID.String()
		case engine.Scheduled:
			m["version"], m["at"] = ev.Version, ev.At
		case engine.Installed:
			m["version"], m["manifest_id"], m["target"], m["restarting"] = ev.Version, ev.ManifestID.String(), ev.Target, ev.Restarting
		case engine.RolledBack:
			m["version"], m["previous_version"], m["manifest_id"], m["reason"], m["restarting"] = ev.Version, ev.PreviousVersion, ev.ManifestID.String(), fmt.Sprint(ev.Reason), ev.Restarting
		case engine.Confirmed:
			m["version"] = ev.Version
		case engine.UpdateReady:
			m["version"], m["manifest_id"], m["pid"] = ev.Version, ev.ManifestID.String(), os.Getpid()
		case engine.Refused:
			m["what"], m["peer"], m["reason"] = ev.What, ev.Peer, fmt.Sprint(ev.Reason)
		case engine.Failed:
			m["stage"], m["err"] = ev.Stage, fmt.Sprint(ev.Err)
		case engine.Stale:
			m["signed"], m["age_s"] = ev.Signed, ev.Age.Seconds()
		case engine.KeyRotated:
			m["old"], m["new"] = ev.Old, ev.New
		case engine.Served, engine.StageRestarted:
			return
		}
		o.emit(kind, m)
		return
	}
	switch ev := ev.(type) {
	case engine.ReleaseFound, engine.Progress:
		if o.bar != nil {
			o.bar.event(ev)
		}
	case engine.NotRolledOut:
		o.say("%s is rolled out to %d%% of nodes, not yet to this one", ev.Version, ev.Rollout)
	case engine.Reused:
		o.say("reused %d of %d chunks (%s) from the installed file; downloading the rest", ev.Chunks, ev.Total, units.FormatSize(ev.Bytes))
	case engine.Verified:
		if o.bar != nil {
			o.bar.finish()
			o.bar = newByteBar(o.w)
		}
		o.say("verified %s (%s)", ev.Version, ev.ManifestID)
	case engine.Scheduled:
		o.say("%s will be installed at %s", ev.Version, ev.At.Format("15:04"))
	case engine.Installed:
		o.say("installed %s at %s", ev.Version, ev.Target)
	case engine.RolledBack:
		o.warn("%s failed its trial (%v); rolled back to %s", ev.Version, ev.Reason, ev.PreviousVersion)
	case engine.Confirmed:
		o.say("%s is healthy", ev.Version)
	case engine.UpdateReady:
		o.say("%s is ready to install: kill -USR1 %d installs it", ev.Version, os.Getpid())
	case engine.Refused:
		if ev.What != engine.RefusedChunk {
			o.say("refused a %s: %v", ev.What, ev.Reason)
		}
	case engine.Failed:
		o.warn("%s: %v", ev.Stage, ev.Err)
	case engine.KeyRotated:
		o.say("the publisher rotated its key: now trusting %s (no longer %s)", ev.New, ev.Old)
	case engine.Stale:
		if ev.Signed.IsZero() {
			o.warn("stale: no record found in %s", age(ev.Age))
		} else {
			o.warn("stale: the newest record was signed %s ago (%s)", age(ev.Age), ev.Signed.UTC().Format(time.RFC3339))
		}
	}
}
