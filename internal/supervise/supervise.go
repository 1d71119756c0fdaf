// Package supervise runs a program as a child process and keeps it running
// across updates, as `rpe node --run` does: the engine's installer swaps
// the file, and instead of replacing its own process it calls Exec, which
// restarts the child into the new version, then HealthCheck, which says
// whether the new child stayed up long enough.
//
// The supervisor decides nothing about the trial and writes no state: the
// installer stage is the trial's only writer (see actors/installer). The
// supervisor only reports what the child did.
//
// Which exit goes where: a child run that is on trial (started by Exec for
// a new version, or running while a HealthCheck waits) ends the trial when
// it exits, and HealthCheck returns the exit as its error; any other exit
// (the program stopped by itself, or the restored version after a
// rollback) is sent on Exited, and the caller decides (rpe node stops).
//
// Stop passes a signal to the child and waits for it, killing it after a
// timeout, so a service manager that stops the supervisor stops the child
// too and no orphan is left.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// ErrExited is the error (wrapped) of a HealthCheck whose child exited
// before it was healthy.
var ErrExited = errors.New("exited before it was healthy")

// Config configures a Supervisor.
type Config struct {
	// Argv is the command to run: the program and its arguments; required.
	Argv []string
	// Stdout and Stderr receive the child's output; nil discards it.
	Stdout, Stderr io.Writer
	// Healthy is how long a new version must keep running to be healthy;
	// default 10s.
	Healthy time.Duration
	// StopTimeout is how long Stop and a restart wait for the child after
	// the signal before killing it; default 10s.
	StopTimeout time.Duration
	// OnStart, when set, is called with each child started: its process ID
	// and whether it was a restart (into a new or a restored version).
	OnStart func(pid int, restart bool)
}

// Supervisor runs one child at a time. Its methods are safe for concurrent
// use.
type Supervisor struct {
	cfg    Config
	exited chan error

	mu      sync.Mutex
	cur     *run
	started chan struct{} // closed at the first start
	// checking counts HealthChecks waiting: a child started meanwhile is on
	// trial from its start.
	checking int
	// failed is set when a HealthCheck failed: the next Exec restarts into
	// the restored version, which is not on trial.
	failed bool
}

// run is one run of the child.
type run struct {
	cmd      *exec.Cmd
	done     chan struct{}
	err      error // the exit, once done is closed
	trial    bool  // its exit ends a trial instead of going to Exited
	stopping bool  // stopped by the supervisor, not by itself
	at       time.Time
}

// New returns a supervisor; nothing runs until Start.
func New(cfg Config) (*Supervisor, error) {
	if len(cfg.Argv) == 0 || cfg.Argv[0] == "" {
		return nil, errors.New("supervise: no command to run")
	}
	if cfg.Healthy <= 0 {
		cfg.Healthy = 10 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	return &Supervisor{cfg: cfg, exited: make(chan error, 1), started: make(chan struct{})}, nil
}

// Exited receives the exit of a child that stopped by itself outside a
// trial (nil for exit status 0).
func (s *Supervisor) Exited() <-chan error { return s.exited }

// Start starts the child unless one runs already: the first start and a
// restart by the installer (a rollback found as the engine starts) may come
// in either order, and only one child may run.
func (s *Supervisor) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running() {
		return nil
	}
	return s.startLocked(false, false)
}

// PID is the running child's process ID, or 0.
func (s *Supervisor) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running() {
		return 0
	}
	return s.cur.cmd.Process.Pid
}

func (s *Supervisor) running() bool {
	if s.cur == nil {
		return false
	}
	select {
	case <-s.cur.done:
		return false
	default:
		return true
	}
}

// startLocked starts a child; s.mu is held.
func (s *Supervisor) startLocked(trial, restart bool) error {
	cmd := exec.Command(s.cfg.Argv[0], s.cfg.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = s.cfg.Stdout, s.cfg.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.cfg.Argv[0], err)
	}
	r := &run{cmd: cmd, done: make(chan struct{}), trial: trial || s.checking > 0, at: time.Now()}
	s.cur = r
	select {
	case <-s.started:
	default:
		close(s.started)
	}
	go s.wait(r)
	if s.cfg.OnStart != nil {
		s.cfg.OnStart(cmd.Process.Pid, restart)
	}
	return nil
}

func (s *Supervisor) wait(r *run) {
	err := r.cmd.Wait()
	s.mu.Lock()
	r.err = err
	report := !r.trial && !r.stopping
	close(r.done)
	s.mu.Unlock()
	if report {
		select {
		case s.exited <- err:
		default:
		}
	}
}

// Exec is the engine's Exec: the target (path) now holds another version,
// so the child is stopped and started again. argv and env are the
// supervisor's own and are ignored. After an install the new child is on
// trial; after a failed HealthCheck (a rollback) it is the restored
// version, not on trial.
func (s *Supervisor) Exec(path string, argv, env []string) error {
	s.mu.Lock()
	trial := !s.failed
	s.failed = false
	s.mu.Unlock()
	s.stop(syscall.SIGTERM)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked(trial, true)
}

// Restored says the installer rolled back and restarted the child into the
// restored version without a failed HealthCheck (a rollback found as the
// engine started): the running child is not on trial, and if it has exited
// already, its exit goes to Exited now.
func (s *Supervisor) Restored() {
	s.mu.Lock()
	r := s.cur
	report := false
	if r != nil && r.trial && s.checking == 0 {
		r.trial = false
		select {
		case <-r.done:
			report = !r.stopping
		default:
		}
	}
	s.mu.Unlock()
	if report {
		select {
		case s.exited <- r.err:
		default:
		}
	}
}

// HealthCheck is the engine's HealthCheck: it waits for a child to run
// (rpe node may start it after the engine), then returns nil once that
// child has kept running for Config.Healthy, or an error wrapping ErrExited
// if it exits first. ctx ends the wait (the trial's deadline).
func (s *Supervisor) HealthCheck(ctx context.Context) (err error) {
	s.mu.Lock()
	s.checking++
	started := s.started
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.checking--
		if err != nil {
			s.failed = true
		}
		s.mu.Unlock()
	}()
	select {
	case <-started:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	r := s.cur
	r.trial = true
	s.mu.Unlock()
	t := time.NewTimer(s.cfg.Healthy)
	defer t.Stop()
	select {
	case <-t.C:
		s.mu.Lock()
		r.trial = false
		s.mu.Unlock()
		return nil
	case <-r.done:
		return fmt.Errorf("%w: after %v (healthy after %v): %v", ErrExited, time.Since(r.at).Round(time.Millisecond), s.cfg.Healthy, exitText(r.err))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exitText names an exit: "exit status 1", "signal: killed", or "exit
// status 0" for a clean exit.
func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// Stop passes sig to the child and waits for it to exit, killing it after
// Config.StopTimeout. It returns the child's exit (nil if none ran).
func (s *Supervisor) Stop(sig os.Signal) error {
	return s.stop(sig)
}

func (s *Supervisor) stop(sig os.Signal) error {
	s.mu.Lock()
	r := s.cur
	if r == nil {
		s.mu.Unlock()
		return nil
	}
	r.stopping = true
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	default:
	}
	r.cmd.Process.Signal(sig)
	t := time.NewTimer(s.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		r.cmd.Process.Kill()
		<-r.done
	}
	return r.err
}
