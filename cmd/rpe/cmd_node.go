package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/actors/installer"
	"github.com/rpe-project/engine/release"
)

func init() {
	register(&command{
		name: "node",
		args: "--pubkey KEY --app A --target PATH [--channel C] [--version V] [--apply now|on-restart|at=HH:MM] [--secret FILE] [--stale-after D] [--run -- CMD ARGS...]",
		summary: "Keep any program up to date: follow the key, download, verify and swap PATH; " +
			"with --run, run CMD as a child and restart it into each new version. Seeds what it has.",
		run: runNode,
	})
}

// nodeVersionFile, in the state directory, holds the version rpe node last
// installed at the target, so a restarted rpe node knows what PATH holds.
const nodeVersionFile = "rpe-node-version"

func runNode(ctx context.Context, e *env, args []string) error {
	c := commands["node"]
	fs := newFlags(e, c)
	tf := addTargetFlags(fs)
	target := fs.String("target", "", "the program `PATH` to keep up to date (must exist)")
	version := fs.String("version", "", "the `version` PATH holds now (default: what rpe node last installed there, else 0.0.0: install the newest release)")
	var policy engine.Policy
	fs.Var(&policy, "apply", "when to install: now, on-restart or at=HH:MM (default now)")
	run := fs.Bool("run", false, "run the program given after -- as a child and restart it into each new version")
	healthy := fs.Duration("healthy-after", 10*time.Second, "with --run: a new version that keeps running this long is healthy; one that exits sooner is rolled back")
	poll := fs.Duration("poll", 5*time.Minute, "mean time between DHT lookups of the record")
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
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("--state-dir %s: %v; choose a writable directory", stateDir, errors.Unwrap(err))
	}
	current := *version
	if current == "" {
		if b, err := readFileLimit(filepath.Join(stateDir, nodeVersionFile), 256); err == nil {
			current = strings.TrimSpace(string(b))
		}
	}
	if current == "" {
		current = "0.0.0"
	}
	if _, err := release.ParseVersion(current); err != nil {
		return usageError{fmt.Errorf("--version: %w", err)}
	}
	if policy == engine.ApplyOnRestart && !*run {
		// Nothing to restart: swap at once.
		policy = engine.ApplyNow
	}

	out := newNodeOutput(e, of)
	var ch *child
	if *run {
		ch = &child{argv: pos, stdout: e.stdout, stderr: e.stderr, exited: make(chan error, 1)}
	}
	sup := &nodeSupervisor{stateDir: stateDir, child: ch, healthy: *healthy, out: out, trialExit: make(chan error, 1), version: current}
	var healthCheck func(context.Context) error
	childStarted := make(chan struct{})
	if pending, _ := installer.ReadPending(stateDir); ch != nil && pending != nil && pending.Version == current {
		// rpe node stopped while current was on trial: the engine resumes
		// the trial, and the child must pass it again.
		sup.trial, sup.previous = true, pending.PreviousVersion
		healthCheck = func(hctx context.Context) error { return sup.resumeTrial(hctx, childStarted, pending.Version) }
	}
	secret, err := sharedSecret(*secretFile)
	if err != nil {
		return err
	}
	eng, err := engine.Start(ctx, engine.Config{
		SharedSecret: secret,
		HealthCheck:  healthCheck,
		PublisherKey: *tf.pubkey, App: *tf.app, Channel: *tf.channel, Platform: *tf.platform,
		CurrentVersion: current, Target: abs, StateDir: stateDir, Apply: policy, Exec: sup.exec,
		Bootstrap: boot, ListenDHT: ldht, ListenQUIC: lquic, Logger: of.logger(e), PollInterval: *poll,
		StaleAfter: *staleAfter,
	})
	if err != nil {
		return explain(err)
	}
	defer func() {
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
	out.info("following %s for %s/%s/%s; %s holds %s", *tf.pubkey, *tf.app, *tf.channel, *tf.platform, *target, holds)
	if ch != nil {
		if err := ch.start(); err != nil {
			return fmt.Errorf("--run %s: %v", pos[0], err)
		}
		close(childStarted)
		defer ch.stop(10 * time.Second)
		out.info("started %s (pid %d)", strings.Join(pos, " "), ch.pid())
	}
	var childExited <-chan error
	if ch != nil {
		childExited = ch.exited
	}
	events := eng.Events()
	for {
		select {
		case <-ctx.Done():
			out.info("stopping")
			return nil
		case err := <-childExited:
			if sup.childExited(err) {
				continue // the supervisor rolls back and restarts it
			}
			if err != nil {
				return fmt.Errorf("%s exited: %v", pos[0], err)
			}
			out.info("%s exited", pos[0])
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if in, ok := ev.(engine.Installed); ok {
				sup.installed(in.Version)
			}
			out.event(ev)
		}
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

// nodeSupervisor is the engine's Execer for rpe node: instead of replacing
// rpe, it restarts the child into the new version and watches it through
// the installer's trial (confirm when healthy, roll back when not).
type nodeSupervisor struct {
	stateDir string
	child    *child
	healthy  time.Duration
	out      *nodeOutput

	// trialExit passes the child's exit to the trial being watched.
	trialExit chan error

	mu    sync.Mutex
	trial bool
	// version is what the target holds, previous what it held before the
	// last install (what a rollback restores).
	version, previous string
}

// installed records that the target now holds version v.
func (s *nodeSupervisor) installed(v string) {
	s.mu.Lock()
	s.previous, s.version = s.version, v
	s.mu.Unlock()
	s.saveVersion(v)
}

func (s *nodeSupervisor) saveVersion(v string) {
	if err := writeFileAtomic(filepath.Join(s.stateDir, nodeVersionFile), []byte(v+"\n"), 0o644); err != nil {
		s.out.info("warning: cannot record the installed version: %v", err)
	}
}

// childExited hands the child's exit to a running trial and says whether
// there was one.
func (s *nodeSupervisor) childExited(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.trial {
		return false
	}
	select {
	case s.trialExit <- err:
	default:
	}
	return true
}

func (s *nodeSupervisor) exec(path string, argv, env []string) error {
	if s.child == nil {
		// Nothing runs the program: the swap is final.
		if err := installer.ClearPending(s.stateDir); err != nil {
			return err
		}
		return nil
	}
	p, err := installer.ReadPending(s.stateDir)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.trial = p != nil
	s.mu.Unlock()
	select {
	case <-s.trialExit: // an exit from an earlier trial
	default:
	}
	if err := s.child.restart(10 * time.Second); err != nil {
		s.mu.Lock()
		s.trial = false
		s.mu.Unlock()
		return err // the installer puts the old version back
	}
	if p == nil {
		return nil
	}
	s.out.info("restarted %s into %s (pid %d)", s.child.argv[0], p.Version, s.child.pid())
	res, err := installer.Boot(s.stateDir, p.Version, time.Now())
	if err != nil || res.State != installer.BootTrial {
		s.mu.Lock()
		s.trial = false
		s.mu.Unlock()
		return nil
	}
	go s.watchTrial(res, p)
	return nil
}

// resumeTrial is the engine's health check when rpe node starts while a
// version is on trial: the child must keep running for the health window.
// On failure the engine rolls back and calls exec, which restarts the child.
func (s *nodeSupervisor) resumeTrial(ctx context.Context, started <-chan struct{}, version string) error {
	defer func() {
		s.mu.Lock()
		s.trial = false
		s.mu.Unlock()
	}()
	select {
	case <-started:
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTimer(s.healthy)
	defer t.Stop()
	select {
	case <-t.C:
		s.out.info("%s is healthy", version)
		return nil
	case err := <-s.trialExit:
		s.mu.Lock()
		prev := s.previous
		s.version = prev
		s.mu.Unlock()
		s.saveVersion(prev)
		s.out.info("%s exited after less than %v (%v); rolling back to %s", version, s.healthy, err, prev)
		return fmt.Errorf("exited after less than %v: %v", s.healthy, err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchTrial confirms the new version once the child has run for the
// health window, or rolls back and restarts the old one if it exits sooner.
func (s *nodeSupervisor) watchTrial(res installer.BootResult, p *installer.Pending) {
	defer func() {
		s.mu.Lock()
		s.trial = false
		s.mu.Unlock()
	}()
	t := time.NewTimer(s.healthy)
	defer t.Stop()
	select {
	case <-t.C:
		if err := res.Confirm(); err != nil {
			s.out.info("warning: confirm %s: %v", p.Version, err)
			return
		}
		s.out.info("%s is healthy", p.Version)
	case err := <-s.trialExit:
		reason := fmt.Errorf("exited after less than %v: %v", s.healthy, err)
		if rerr := res.RollBack(reason, time.Now()); rerr != nil {
			s.out.info("warning: roll back %s: %v", p.Version, rerr)
			return
		}
		s.mu.Lock()
		prev := s.previous
		s.version = prev
		s.mu.Unlock()
		s.saveVersion(prev)
		s.out.info("%s %s; rolled back to %s", p.Version, reason, prev)
		if err := s.child.start(); err != nil {
			s.out.info("warning: restart %s: %v", s.child.argv[0], err)
		}
	}
}

// child is the program rpe node --run keeps running.
type child struct {
	argv           []string
	stdout, stderr io.Writer
	// exited receives the exit of a child that stopped by itself.
	exited chan error

	mu  sync.Mutex
	cur *proc
}

// proc is one run of the child.
type proc struct {
	cmd      *exec.Cmd
	done     chan struct{}
	stopping atomic.Bool // stopped by rpe node, not by itself
}

// start starts the child unless it is running already: rpe node's own
// first start and a restart by the engine (a rollback found at boot) may
// come in either order, and only one child may run.
func (c *child) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		select {
		case <-c.cur.done:
		default:
			return nil
		}
	}
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Stdout, cmd.Stderr = c.stdout, c.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	c.cur = p
	go func() {
		err := cmd.Wait()
		if !p.stopping.Load() {
			select {
			case c.exited <- err:
			default:
			}
		}
		close(p.done)
	}()
	return nil
}

func (c *child) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return 0
	}
	return c.cur.cmd.Process.Pid
}

// stop asks the child to stop (SIGTERM) and kills it after timeout.
func (c *child) stop(timeout time.Duration) {
	c.mu.Lock()
	p := c.cur
	c.mu.Unlock()
	if p == nil {
		return
	}
	p.stopping.Store(true)
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (c *child) restart(timeout time.Duration) error {
	c.stop(timeout)
	return c.start()
}

// nodeOutput prints what a node does: lines for people, or one JSON object
// per event with --json.
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

func (o *nodeOutput) info(format string, a ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	msg := fmt.Sprintf(format, a...)
	if o.json {
		json.NewEncoder(o.w).Encode(map[string]any{"event": "info", "time": time.Now().UTC(), "msg": msg})
		return
	}
	if !o.quiet || strings.HasPrefix(msg, "warning") {
		fmt.Fprintln(o.w, msg)
	}
}

func (o *nodeOutput) event(ev engine.Event) {
	if o.json {
		o.mu.Lock()
		defer o.mu.Unlock()
		m := map[string]any{"event": strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", ev), "engine.")), "time": time.Now().UTC()}
		switch ev := ev.(type) {
		case engine.ReleaseFound:
			m["version"], m["manifest_id"], m["size"] = ev.Version, ev.ManifestID.String(), ev.Size
		case engine.Progress:
			m["verified"], m["total"], m["bytes"], m["size"], m["peers"] = ev.Verified, ev.Total, ev.Bytes, ev.Size, ev.Peers
		case engine.Verified:
			m["version"], m["manifest_id"] = ev.Version, ev.ManifestID.String()
		case engine.Scheduled:
			m["version"], m["at"] = ev.Version, ev.At
		case engine.Installed:
			m["version"], m["manifest_id"], m["target"], m["restarting"] = ev.Version, ev.ManifestID.String(), ev.Target, ev.Restarting
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
		json.NewEncoder(o.w).Encode(m)
		return
	}
	switch ev := ev.(type) {
	case engine.ReleaseFound, engine.Progress:
		if o.bar != nil {
			o.bar.event(ev)
		}
	case engine.Verified:
		if o.bar != nil {
			o.bar.finish()
			o.bar = newByteBar(o.w)
		}
		o.info("verified %s (%s)", ev.Version, ev.ManifestID)
	case engine.Scheduled:
		o.info("%s will be installed at %s", ev.Version, ev.At.Format("15:04"))
	case engine.Installed:
		o.info("installed %s at %s", ev.Version, ev.Target)
	case engine.Refused:
		if ev.What != engine.RefusedChunk {
			o.info("refused a %s: %v", ev.What, ev.Reason)
		}
	case engine.Failed:
		o.info("warning: %s: %v", ev.Stage, ev.Err)
	case engine.KeyRotated:
		o.info("the publisher rotated its key: now trusting %s (no longer %s)", ev.New, ev.Old)
	case engine.Stale:
		if ev.Signed.IsZero() {
			o.info("warning: stale: no record found in %s", age(ev.Age))
		} else {
			o.info("warning: stale: the newest record was signed %s ago (%s)", age(ev.Age), ev.Signed.UTC().Format(time.RFC3339))
		}
	}
}
