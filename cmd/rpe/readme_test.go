package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlock returns the first fenced block of the given language in the
// README section whose heading starts with heading.
func readmeBlock(t *testing.T, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## "+heading)
	if i < 0 {
		t.Fatalf("README has no section %q", heading)
	}
	s = s[i+1:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	m := regexp.MustCompile("(?s)```" + lang + "\n(.*?)```").FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("README section %q has no %s block", heading, lang)
	}
	return m[1]
}

// TestReadmeTop checks the two commands at the top of the README: the demo
// and the test command .ci/run runs.
func TestReadmeTop(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), 2)
	if len(blocks) < 2 || blocks[0][1] != "go run ./cmd/rpe demo\n" || blocks[1][1] != "go vet ./... && go test ./... && go test -race -short . ./actors/... ./internal/... ./network/... ./wire/...\n" {
		t.Fatalf("README's first two commands are %q", blocks)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ci), "\n"+blocks[1][1]) {
		t.Errorf(".ci/run does not run the README's test command %q", blocks[1][1])
	}
}

// TestReadmeEmbedMatchesExample keeps the README's Go snippet in step with
// Example in example_test.go, which go test compiles and runs.
func TestReadmeEmbedMatchesExample(t *testing.T) {
	snippet := readmeBlock(t, "Embed", "go")
	ex, err := os.ReadFile("../../example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ex), snippet) {
		t.Fatalf("README's Go snippet is not part of example_test.go; copy it from there:\n%s", snippet)
	}
}

// TestReadmeWorkflow runs the README's publish workflow exactly as written,
// with bash and a built rpe on PATH, in a directory holding ./myapp (the new
// build) and ./installed/myapp (the old one): a private DHT node, rpe init,
// sign, publish, fetch and node on loopback. The fetched file and the
// updated target must be byte-identical to the published artifact.
func TestReadmeWorkflow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rpe and runs processes")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	script := readmeBlock(t, "Publish", "sh")
	const port = "127.0.0.1:6881"
	if !strings.Contains(script, port) {
		t.Fatalf("the workflow no longer uses %s:\n%s", port, script)
	}
	// The one change ever made: another port when 6881 is taken here.
	if c, err := net.ListenPacket("udp", port); err == nil {
		c.Close()
	} else {
		free, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := free.LocalAddr().String()
		free.Close()
		t.Logf("%s is taken; using %s", port, addr)
		script = strings.ReplaceAll(script, port, addr)
	}

	bin := t.TempDir()
	if out, err := exec.Command(goTool, "build", "-o", filepath.Join(bin, "rpe"), ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// An empty directory: the workflow makes its own files.
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "workflow.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(bin, "output.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cache := t.TempDir()
	cmd := exec.Command(bash, "-e", filepath.Join(bin, "workflow.sh"))
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME=" + cache, "XDG_CACHE_HOME=" + cache, "TMPDIR=" + os.TempDir()}
	// A file, not a pipe: the background jobs keep writing after bash ends.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	output := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	t.Cleanup(func() { stopGroup(t, pgid) })

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("the README workflow failed: %v\n%s", err, output())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the README workflow did not finish in 60s:\n%s", output())
	}
	newBuild, err := os.ReadFile(filepath.Join(work, "myapp"))
	if err != nil || !bytes.Contains(newBuild, []byte("1.1.0")) {
		t.Fatalf("the workflow made no new build myapp (%v):\n%s", err, output())
	}
	got, err := os.ReadFile(filepath.Join(work, "myapp.fetched"))
	if err != nil || !bytes.Equal(got, newBuild) {
		t.Fatalf("myapp.fetched differs from the published myapp (%v):\n%s", err, output())
	}
	// The node swaps the file, then reports it: wait for both.
	deadline := time.Now().Add(45 * time.Second)
	for {
		got, _ := os.ReadFile(filepath.Join(work, "installed", "myapp"))
		swapped := bytes.Equal(got, newBuild)
		if swapped && strings.Contains(output(), "installed 1.1.0 at ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rpe node did not update installed/myapp and report it within 45s (swapped: %v):\n%s", swapped, output())
		}
		time.Sleep(100 * time.Millisecond) // polling a file; nothing to wait on
	}
}

// stopGroup stops every process of a process group: SIGTERM, then SIGKILL.
func stopGroup(t *testing.T, pgid int) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	t.Log("killed the workflow's processes after SIGTERM")
}
