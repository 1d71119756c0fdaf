package supervise

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

func sh(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	return p
}

func newSup(t *testing.T, healthy time.Duration, script string) *Supervisor {
	t.Helper()
	s, err := New(Config{Argv: []string{sh(t), "-c", script}, Healthy: healthy, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(syscall.SIGKILL) })
	return s
}

// TestStartsOnce: rpe node's first start and a restart by the installer can
// race; a start while the child runs must not start a second one, and Exec
// replaces it.
func TestStartsOnce(t *testing.T) {
	s := newSup(t, time.Second, "exec sleep 60")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	first := s.PID()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.PID() != first {
		t.Fatalf("a second start replaced child %d with %d", first, s.PID())
	}
	if err := s.Exec("", nil, nil); err != nil {
		t.Fatal(err)
	}
	if s.PID() == first || s.PID() == 0 {
		t.Fatalf("Exec kept child %d (now %d)", first, s.PID())
	}
	if alive(first) {
		t.Fatalf("old child %d still runs after Exec", first)
	}
}

// TestTrialExit: a child restarted into a new version that exits before it
// is healthy fails the HealthCheck (and is not reported on Exited); the
// restart after that (the rollback) is not on trial, so its exit is.
func TestTrialExit(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "crash")
	ready := filepath.Join(dir, "ready")
	s := newSup(t, time.Minute, `if [ -e `+flag+` ]; then exit 3; fi; touch `+ready+`; exec sleep 60`)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	// The first child must be past its check before the flag exists, or it
	// exits 3 by itself, outside any trial, and rightly reports on Exited.
	waitFile(t, ready)
	os.WriteFile(flag, nil, 0o600)
	if err := s.Exec("", nil, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.HealthCheck(ctx)
	if !errors.Is(err, ErrExited) {
		t.Fatalf("HealthCheck of a crashing child: %v, want ErrExited", err)
	}
	select {
	case err := <-s.Exited():
		t.Fatalf("the trial's exit went to Exited too: %v", err)
	default:
	}
	// The rollback restarts into the old version: not on trial.
	os.Remove(flag)
	if err := s.Exec("", nil, nil); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	syscall.Kill(pid, syscall.SIGKILL)
	select {
	case err := <-s.Exited():
		if err == nil {
			t.Fatal("a killed child reported a clean exit")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the restored child's exit was not reported")
	}
}

// TestTrialHealthy: a child that keeps running for Healthy passes.
func TestTrialHealthy(t *testing.T) {
	s := newSup(t, 100*time.Millisecond, "exec sleep 60")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	// The check waits for the first start (rpe node starts the child after
	// the engine, which may already run a trial).
	go func() { done <- s.HealthCheck(ctx) }()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("HealthCheck of a running child: %v", err)
	}
	// After the trial, an exit is the program's own.
	syscall.Kill(s.PID(), syscall.SIGKILL)
	select {
	case <-s.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("exit after the trial not reported")
	}
}

// TestRestoredReportsExit: after a rollback found at start (no failed
// check), the restored child is not on trial: its exit, even an early one,
// reaches Exited once the supervisor is told.
func TestRestoredReportsExit(t *testing.T) {
	s := newSup(t, time.Minute, "exit 4")
	if err := s.Exec("", nil, nil); err != nil {
		t.Fatal(err)
	}
	s.Restored()
	select {
	case err := <-s.Exited():
		if err == nil {
			t.Fatal("exit 4 reported as clean")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the restored child's exit was not reported")
	}
}

// TestStopPassesSignal: Stop passes the signal on and waits for the child,
// which may clean up; nothing is left running.
func TestStopPassesSignal(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "got")
	ready := make(chan struct{})
	s, err := New(Config{Argv: []string{sh(t), "-c", `trap 'echo TERM > ` + mark + `; exit 0' TERM; echo ready; while :; do sleep 0.05; done`},
		Stdout: signalWriter(ready), StopTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(syscall.SIGKILL) })
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	select {
	case <-ready: // the trap is set
	case <-time.After(30 * time.Second):
		t.Fatal("child did not start")
	}
	if err := s.Stop(syscall.SIGTERM); err != nil {
		t.Fatalf("Stop: child exit %v", err)
	}
	if b, _ := os.ReadFile(mark); string(b) != "TERM\n" {
		t.Fatalf("child did not get SIGTERM (%q)", b)
	}
	if alive(pid) {
		t.Fatalf("child %d runs after Stop", pid)
	}
}

// signalWriter closes ch at the first write.
type signalWriter chan struct{}

func (w signalWriter) Write(b []byte) (int, error) {
	select {
	case <-w:
	default:
		close(w)
	}
	return len(b), nil
}

// alive reports whether pid names a process that is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return true
}

func itoa(n int) string { return strconv.Itoa(n) }

// waitFile waits until path exists, failing the test after 30 s.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within 30 s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
