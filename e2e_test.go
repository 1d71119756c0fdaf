package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// goBuild builds a package of this module into dir and returns the binary.
func goBuild(t *testing.T, dir, name, pkg string, ldflags string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	args := []string{"build", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// lineWatcher reads a process's output and lets a test wait for a line.
type lineWatcher struct {
	mu    sync.Mutex
	cond  *sync.Cond
	lines []string
	eof   bool
}

func watchLines(r io.Reader) *lineWatcher {
	w := &lineWatcher{}
	w.cond = sync.NewCond(&w.mu)
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.cond.Broadcast()
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.eof = true
		w.cond.Broadcast()
		w.mu.Unlock()
	}()
	return w
}

// waitFor returns the first line matching re, or "" at the deadline.
func (w *lineWatcher) waitFor(re *regexp.Regexp, deadline time.Time) string {
	stop := time.AfterFunc(time.Until(deadline), func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer stop.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 0; ; {
		for ; i < len(w.lines); i++ {
			if re.MatchString(w.lines[i]) {
				return w.lines[i]
			}
		}
		if w.eof || time.Now().After(deadline) {
			return ""
		}
		w.cond.Wait()
	}
}

func (w *lineWatcher) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// TestSelfUpdateEndToEnd runs real processes on loopback: five copies of
// examples/hello at 1.0.0 follow a publisher key; `rpe publish` publishes
// 1.1.0; every process must swap its own binary, re-execute and print
// "hello 1.1.0", and the publisher must upload fewer than five copies.
func TestSelfUpdateEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	const nodes = 5
	bin := t.TempDir()
	v1 := goBuild(t, bin, "hello-1.0.0", "./examples/hello", "-X main.version=1.0.0")
	v2 := goBuild(t, bin, "hello-1.1.0", "./examples/hello", "-X main.version=1.1.0")
	rpe := goBuild(t, bin, "rpe", "./cmd/rpe", "")
	want, err := os.ReadFile(v2)
	if err != nil {
		t.Fatal(err)
	}

	boot := testNet(t)
	key := testKey(t)
	keyFile := filepath.Join(t.TempDir(), "publisher.key")
	if err := release.WriteSecretKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	pub := release.PublicKeyOf(key).String()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type proc struct {
		cmd    *exec.Cmd
		target string
		out    *lineWatcher
	}
	var procs []proc
	for i := 0; i < nodes; i++ {
		dir := t.TempDir()
		target := filepath.Join(dir, "hello")
		b, _ := os.ReadFile(v1)
		if err := os.WriteFile(target, b, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, target, "-pubkey", pub, "-bootstrap", strings.Join(boot, ","),
			"-state", filepath.Join(dir, "state"), "-poll", "500ms", "-listen", "127.0.0.1")
		pr, pw := io.Pipe()
		cmd.Stdout = pw
		cmd.Stderr = pw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait(); pw.Close() })
		procs = append(procs, proc{cmd: cmd, target: target, out: watchLines(pr)})
	}
	for i, p := range procs {
		if p.out.waitFor(regexp.MustCompile(`^hello 1\.0\.0$`), time.Now().Add(30*time.Second)) == "" {
			t.Fatalf("process %d never printed hello 1.0.0:\n%s", i, p.out.all())
		}
	}

	pubCmd := exec.CommandContext(ctx, rpe, "publish", v2, "--key", keyFile, "--version", "1.1.0", "--app", "hello",
		"--bootstrap", strings.Join(boot, ","), "--listen", "127.0.0.1:0", "--state-dir", t.TempDir())
	pr, pw := io.Pipe()
	pubCmd.Stdout = pw
	pubCmd.Stderr = pw
	if err := pubCmd.Start(); err != nil {
		t.Fatal(err)
	}
	pubOut := watchLines(pr)
	defer func() { pubCmd.Process.Signal(syscall.SIGTERM); pubCmd.Wait(); pw.Close() }()

	deadline := time.Now().Add(3 * time.Minute)
	for i, p := range procs {
		if p.out.waitFor(regexp.MustCompile(`^hello 1\.1\.0$`), deadline) == "" {
			t.Fatalf("process %d never printed hello 1.1.0:\n%s\n--- publisher:\n%s", i, p.out.all(), pubOut.all())
		}
		got, err := os.ReadFile(p.target)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("process %d: binary on disk differs from the 1.1.0 build", i)
		}
	}

	// Ask the publisher for its totals and check it served fewer than five
	// full copies.
	pubCmd.Process.Signal(syscall.SIGINT)
	line := pubOut.waitFor(regexp.MustCompile(`uploaded \d+ bytes`), time.Now().Add(30*time.Second))
	if line == "" {
		t.Fatalf("publisher printed no upload total:\n%s", pubOut.all())
	}
	m := regexp.MustCompile(`uploaded (\d+) bytes`).FindStringSubmatch(line)
	up, _ := strconv.ParseInt(m[1], 10, 64)
	copies := float64(up) / float64(len(want))
	t.Logf("publisher uploaded %d bytes = %.2f copies of %d bytes to %d nodes", up, copies, len(want), nodes)
	if copies >= nodes {
		t.Errorf("publisher uploaded %.2f copies for %d nodes; want fewer than %d", copies, nodes, nodes)
	}
}

// TestAppPublishesItself runs real processes on loopback: examples/hello
// 1.1.0 publishes itself ("hello rpe publish --key K", no rpe program:
// the running binary, under its own app name and version), and a hello
// 1.0.0 node swaps its binary for it, re-executes and prints hello 1.1.0.
func TestAppPublishesItself(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	bin := t.TempDir()
	v1 := goBuild(t, bin, "hello-1.0.0", "./examples/hello", "-X main.version=1.0.0")
	v2 := goBuild(t, bin, "hello-1.1.0", "./examples/hello", "-X main.version=1.1.0")
	want, err := os.ReadFile(v2)
	if err != nil {
		t.Fatal(err)
	}
	boot := strings.Join(testNet(t), ",")
	keyFile := filepath.Join(t.TempDir(), "publisher.key")
	out, err := exec.Command(v2, "rpe", "init", "--out", keyFile).CombinedOutput()
	if err != nil {
		t.Fatalf("hello rpe init: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`public key: (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("hello rpe init printed no public key:\n%s", out)
	}
	pub := string(m[1])

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	target := filepath.Join(dir, "hello")
	b, _ := os.ReadFile(v1)
	if err := os.WriteFile(target, b, 0o755); err != nil {
		t.Fatal(err)
	}
	node := exec.CommandContext(ctx, target, "-pubkey", pub, "-bootstrap", boot,
		"-state", filepath.Join(dir, "state"), "-poll", "500ms", "-listen", "127.0.0.1")
	pr, pw := io.Pipe()
	node.Stdout, node.Stderr = pw, pw
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Process.Signal(syscall.SIGTERM); node.Wait(); pw.Close() })
	nodeOut := watchLines(pr)
	if nodeOut.waitFor(regexp.MustCompile(`^hello 1\.0\.0$`), time.Now().Add(30*time.Second)) == "" {
		t.Fatalf("the node never printed hello 1.0.0:\n%s", nodeOut.all())
	}

	// The publisher names neither the artifact, the app nor the version.
	pubCmd := exec.CommandContext(ctx, v2, "rpe", "publish", "--key", keyFile,
		"--bootstrap", boot, "--listen", "127.0.0.1:0", "--state-dir", t.TempDir())
	ppr, ppw := io.Pipe()
	pubCmd.Stdout, pubCmd.Stderr = ppw, ppw
	if err := pubCmd.Start(); err != nil {
		t.Fatal(err)
	}
	pubOut := watchLines(ppr)
	defer func() { pubCmd.Process.Signal(syscall.SIGTERM); pubCmd.Wait(); ppw.Close() }()
	if pubOut.waitFor(regexp.MustCompile(`^release +hello \S+ \S+ 1\.1\.0 `), time.Now().Add(30*time.Second)) == "" {
		t.Fatalf("hello rpe publish did not say it published hello 1.1.0:\n%s", pubOut.all())
	}

	if nodeOut.waitFor(regexp.MustCompile(`^hello 1\.1\.0$`), time.Now().Add(2*time.Minute)) == "" {
		t.Fatalf("the node never printed hello 1.1.0:\n%s\n--- publisher:\n%s", nodeOut.all(), pubOut.all())
	}
	got, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the node's binary is not the published 1.1.0 build (%v)", err)
	}

	// status, from the same binary, lists the release.
	st, err := exec.Command(v2, "rpe", "status", "--pubkey", pub, "--bootstrap", boot, "--listen", "127.0.0.1:0", "--json").CombinedOutput()
	var listing struct {
		Entries []struct{ App, Version string }
	}
	if err != nil || json.Unmarshal(st, &listing) != nil || len(listing.Entries) != 1 ||
		listing.Entries[0].App != "hello" || listing.Entries[0].Version != "1.1.0" {
		t.Fatalf("hello rpe status: %v\n%s", err, st)
	}
}
