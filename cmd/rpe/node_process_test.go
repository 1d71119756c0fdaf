package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
