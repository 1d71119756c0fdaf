package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/internal/supervise"
	"github.com/rpe-project/engine/release"
)

// TestRPEProcess is not a test: the tests below run the test binary again
// with RPE_TEST_PROCESS set, and then it is rpe, with main's signal
// handling and the command line in RPE_TEST_ARGS (JSON).
func TestRPEProcess(t *testing.T) {
	if os.Getenv("RPE_TEST_PROCESS") != "1" {
		t.Skip("helper process for the tests that run rpe as a process")
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv("RPE_TEST_ARGS")), &args); err != nil {
		os.Exit(100)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// rpeProcess starts rpe as a real process with args.
func rpeProcess(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^TestRPEProcess$")
	cmd.Env = append(os.Environ(), "RPE_TEST_PROCESS=1", "RPE_TEST_ARGS="+string(a))
	return cmd
}

// TestNodeSignalStopsChild: SIGTERM or SIGINT to rpe node --run is passed
// on to the child, and rpe node exits only once the child has: no copy of
// the program is left running (as a service manager expects). With --json,
// stdout carries only JSON events; the child's output goes to stderr.
func TestNodeSignalStopsChild(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	boot := testDHT(t)
	_, pub := newKey(t, dir)
	target := filepath.Join(dir, "prog")
	os.WriteFile(target, []byte("#!/bin/sh\n"), 0o755)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "got")
			script := `trap 'echo $0 > ` + mark + `; exit 0' TERM INT; echo ready; while :; do sleep 0.05; done`
			cmd := rpeProcess(t, "node", "--pubkey", pub, "--app", "prog", "--target", target, "--version", "1.0.0",
				"--state-dir", filepath.Join(t.TempDir(), "state"), "--bootstrap", boot, "--listen", "127.0.0.1:0", "--json",
				"--run", "--", sh, "-c", script, "child")
			stdout, _ := cmd.StdoutPipe()
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			ready := make(chan struct{})
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					if sc.Text() == "ready" {
						close(ready)
					}
				}
			}()
			events := make(chan map[string]any, 16)
			bad := make(chan string, 1)
			go func() {
				defer close(events)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					var m map[string]any
					if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m["event"] == nil {
						bad <- sc.Text()
						return
					}
					events <- m
				}
			}()
			child := 0
			deadline := time.After(60 * time.Second)
			for child == 0 {
				select {
				case m := <-events:
					if m["event"] == "started" {
						child = int(m["pid"].(float64))
					}
				case line := <-bad:
					t.Fatalf("stdout line is not a JSON event: %q", line)
				case <-deadline:
					t.Fatal("no started event")
				}
			}
			select {
			case <-ready:
			case <-deadline:
				t.Fatal("child output did not reach stderr")
			}
			cmd.Process.Signal(sig)
			var stopping bool
			for m := range events {
				stopping = stopping || m["event"] == "stopping"
			}
			select {
			case line := <-bad:
				t.Fatalf("stdout line is not a JSON event: %q", line)
			default:
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("rpe node after %v: %v", sig, err)
			}
			if !stopping {
				t.Error("no stopping event")
			}
			if b, _ := os.ReadFile(mark); strings.TrimSpace(string(b)) != "child" {
				t.Fatalf("child did not get the signal before rpe node exited (%q)", b)
			}
			if processAlive(child) {
				t.Fatalf("child %d still runs after rpe node exited: an orphan", child)
			}
		})
	}
}

// processAlive reports whether pid names a live (not zombie) process.
func processAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// TestNodeBadVersionCreatesNothing: a bad --version is refused before rpe
// node creates its state directory.
func TestNodeBadVersionCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "prog")
	os.WriteFile(target, []byte("#!/bin/sh\n"), 0o755)
	state := filepath.Join(dir, "state")
	code, _, errOut := rpe(t, "node", "--pubkey", strings.Repeat("y", 52), "--app", "prog", "--target", target,
		"--version", "not-a-version", "--state-dir", state, "--bootstrap", "127.0.0.1:1")
	if code != exitUsage || !strings.Contains(errOut, "--version") {
		t.Fatalf("exit %d, %q; want %d and a line about --version", code, errOut, exitUsage)
	}
	if _, err := os.Stat(state); err == nil {
		t.Fatal("state directory created for a refused command line")
	}
}

// nodeEvents reads rpe node --json's stdout: every line must be a JSON
// event; bad lines are reported on the returned channel's close with a
// "bad" event.
func nodeEvents(t *testing.T, r io.Reader) <-chan map[string]any {
	t.Helper()
	events := make(chan map[string]any, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m["event"] == nil {
				events <- map[string]any{"event": "bad", "line": sc.Text()}
				return
			}
			events <- m
		}
	}()
	return events
}

// waitEvent returns the first event of kind for which ok holds, failing on
// a stdout line that is not a JSON event or after d.
func waitEvent(t *testing.T, events <-chan map[string]any, d time.Duration, kind string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, open := <-events:
			if !open {
				t.Fatalf("rpe node's stdout ended before a %s event", kind)
			}
			if m["event"] == "bad" {
				t.Fatalf("stdout line is not a JSON event: %q", m["line"])
			}
			if (kind == "" || m["event"] == kind) && (ok == nil || ok(m)) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", kind, d)
		}
	}
}

// TestNodeRollsBackCrashingRelease: real processes. rpe node --run --json
// --apply manual runs 1.0.0; 2.0.0 is published, announced (updateready)
// and installed on SIGUSR1; it exits 1 at start, so it is rolled back to
// 1.0.0 with a typed rolledback event that says why, and 1.0.0 runs again.
// A restarted rpe node refuses 2.0.0 (never retried).
func TestNodeRollsBackCrashingRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes and a network")
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	boot := testDHT(t)
	key, pub := newKey(t, dir)
	sk, _ := release.ReadSecretKeyFile(key)
	target := filepath.Join(dir, "prog")
	v1 := []byte("#!/bin/sh\necho \"prog 1.0.0\"; exec sleep 600\n")
	os.WriteFile(target, v1, 0o755)
	v2 := filepath.Join(dir, "prog-2.0.0")
	os.WriteFile(v2, []byte("#!/bin/sh\necho \"prog 2.0.0 fails\"; exit 1\n"), 0o755)
	state := filepath.Join(dir, "state")
	start := func(extra ...string) (*exec.Cmd, <-chan map[string]any) {
		args := append([]string{"node", "--pubkey", pub, "--app", "prog", "--target", target}, extra...)
		cmd := rpeProcess(t, append(args, "--state-dir", state, "--poll", "1s", "--healthy-after", "5s", "--apply", "manual", "--json",
			"--bootstrap", boot, "--listen", "127.0.0.1:0", "--run", "--", target)...)
		stdout, _ := cmd.StdoutPipe()
		// A file, not a pipe: a child left running cannot block Wait.
		errf, err := os.CreateTemp(dir, "stderr")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = errf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(errf.Name())
				t.Logf("rpe node stderr:\n%s", b)
			}
		})
		return cmd, nodeEvents(t, stdout)
	}
	cmd, events := start("--version", "1.0.0")
	waitEvent(t, events, 60*time.Second, "started", nil)

	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pcancel()
	p, err := engine.Publish(hooks.With(pctx, &hooks.Hooks{QueryResendDelay: 200 * time.Millisecond}), engine.PublishConfig{
		Key: sk, Artifact: v2, Version: "2.0.0", App: "prog", Bootstrap: []string{boot},
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })

	waitEvent(t, events, 60*time.Second, "updateready", func(m map[string]any) bool { return m["version"] == "2.0.0" })
	cmd.Process.Signal(syscall.SIGUSR1)
	// The install, the restart into 2.0.0, its rollback, and the restart
	// into 1.0.0 (the supervisor reports its restarts at once, the install
	// and the rollback come through the engine: the order on stdout may
	// vary).
	var rb map[string]any
	installed, restarts := 0, 0
	for rb == nil || installed == 0 || restarts < 2 {
		m := waitEvent(t, events, 30*time.Second, "", nil)
		switch m["event"] {
		case "rolledback":
			rb = m
		case "restarted":
			restarts++
		case "installed":
			if installed++; m["version"] != "2.0.0" || installed > 1 {
				t.Fatalf("installed %v (install number %d)", m, installed)
			}
		}
	}
	reason, _ := rb["reason"].(string)
	if rb["version"] != "2.0.0" || rb["previous_version"] != "1.0.0" || !strings.Contains(reason, "exit status 1") ||
		!strings.Contains(reason, supervise.ErrExited.Error()) {
		t.Fatalf("rolledback event %v: want 2.0.0 -> 1.0.0 because it exited with status 1", rb)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, v1) {
		t.Fatalf("target after the rollback is not 1.0.0: %q", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for range events {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rpe node after SIGTERM: %v", err)
	}

	// The next start finds 2.0.0 again and refuses it: never retried.
	_, events = start()
	waitEvent(t, events, 60*time.Second, "refused", func(m map[string]any) bool {
		return m["what"] == "release" && strings.Contains(fmt.Sprint(m["reason"]), "2.0.0")
	})
	if got, _ := os.ReadFile(target); !bytes.Equal(got, v1) {
		t.Fatalf("target is not 1.0.0 after the restart: %q", got)
	}
}
