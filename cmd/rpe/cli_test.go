package main

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/rpe-project/engine/cli"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asRPE, set in the environment, makes the test binary run as rpe, so a
// test can signal a real rpe process without building one.
const asRPE = "RPE_TEST_AS_RPE"

func TestMain(m *testing.M) {
	if os.Getenv(asRPE) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestVersionCommand(t *testing.T) {
	code, out, errOut := rpe(t, "version")
	if code != 0 || !strings.HasPrefix(out, "rpe ") || !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
		t.Fatalf("rpe version: %d %q %q", code, out, errOut)
	}
	code, out, _ = rpe(t, "version", "--json")
	var b cli.BuildInfo
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b.Go != runtime.Version() || b.Version == "" {
		t.Fatalf("rpe version --json: %d %q", code, out)
	}
	if code, _, _ := rpe(t, "version", "extra"); code != exitUsage {
		t.Errorf("rpe version extra: exit %d, want %d", code, exitUsage)
	}
}

func TestDHTNodeListen(t *testing.T) {
	code, _, errOut := rpe(t, "dht-node")
	if code != exitUsage || !strings.Contains(errOut, "missing --listen") {
		t.Errorf("dht-node without --listen: %d %q", code, errOut)
	}
	_, help, _ := rpe(t, "dht-node", "--help")
	if !strings.Contains(help, "required") || strings.Contains(help, "default all interfaces") {
		t.Errorf("dht-node --help does not say --listen is required:\n%s", help)
	}
	// It keeps no state, so it takes no --state-dir.
	if code, _, _ := rpe(t, "dht-node", "--listen", "127.0.0.1:0", "--state-dir", t.TempDir()); code != exitUsage {
		t.Errorf("dht-node --state-dir: exit %d, want %d", code, exitUsage)
	}
}

func TestPublishCommandLine(t *testing.T) {
	dir := t.TempDir()
	keyFile, _ := newKey(t, dir)
	art := artifact(t, dir, "Bad Name.bin", 1000)
	code, _, errOut := rpe(t, "publish", art, "--key", keyFile, "--version", "1.0.0", "--bootstrap", "127.0.0.1:1")
	if code != exitUsage || !strings.Contains(errOut, "--app") || !strings.Contains(errOut, "first dot") {
		t.Errorf("publish with a bad default app name: %d %q", code, errOut)
	}
	art = artifact(t, dir, "myapp.bin", 1000)
	if code, _, _ := rpe(t, "sign", art, "--key", keyFile, "--version", "1.0.0"); code != 0 {
		t.Fatal("sign failed")
	}
	for _, flag := range []string{"--version", "--app", "--channel", "--platform", "--expires"} {
		code, _, errOut := rpe(t, "publish", art, "--key", keyFile, "--manifest", art+".rpem", flag, "2", "--bootstrap", "127.0.0.1:1")
		if code != exitUsage || !strings.Contains(errOut, flag+" with --manifest") {
			t.Errorf("publish --manifest %s: %d %q", flag, code, errOut)
		}
	}
}

// TestBadManifestSameExit: verify and publish read a .rpem the same way, so
// the same bad file gives the same exit code (3) and reason, said once.
func TestBadManifestSameExit(t *testing.T) {
	dir := t.TempDir()
	keyFile, pub := newKey(t, dir)
	otherKey, _ := newKey(t, t.TempDir())
	art := artifact(t, dir, "myapp", 1000)
	bad := filepath.Join(dir, "garbage.rpem")
	os.WriteFile(bad, []byte("garbage"), 0o644)
	other := filepath.Join(dir, "other.rpem")
	if code, _, _ := rpe(t, "sign", art, "--key", otherKey, "--version", "1.0.0", "--out", other); code != 0 {
		t.Fatal("sign failed")
	}
	for _, m := range []string{bad, other} {
		vc, _, verr := rpe(t, "verify", art, "--manifest", m, "--pubkey", pub)
		pc, _, perr := rpe(t, "publish", art, "--manifest", m, "--key", keyFile, "--bootstrap", "127.0.0.1:1")
		if vc != exitRejected || pc != exitRejected {
			t.Errorf("%s: verify exit %d, publish exit %d, want %d: %q %q", filepath.Base(m), vc, pc, exitRejected, verr, perr)
		}
		for _, s := range []string{verr, perr} {
			if strings.Contains(s, "malformed manifest: malformed manifest") {
				t.Errorf("reason said twice: %q", s)
			}
		}
	}
}

// TestWriteErrorNamesFile: a file that cannot be written is named as asked
// for, not as the temporary file that failed, with the fix.
func TestWriteErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	keyFile, _ := newKey(t, dir)
	art := artifact(t, dir, "myapp", 1000)
	out := filepath.Join(dir, "missing", "myapp.rpem")
	code, _, errOut := rpe(t, "sign", art, "--key", keyFile, "--version", "1.0.0", "--out", out)
	if code != exitError || !strings.Contains(errOut, "cannot write "+out) || !strings.Contains(errOut, "create it") || strings.Contains(errOut, ".tmp") {
		t.Errorf("sign --out in a missing directory: %d %q", code, errOut)
	}
}

// TestPublishAgainAndFetchStateDir: a publisher restarted on the same state
// dir seeds the same release again without --force; a different release of
// the same version is refused with exit 1 (not 2) naming the fixes; rpe
// fetch makes the --state-dir it is given.
func TestPublishAgainAndFetchStateDir(t *testing.T) {
	dir := t.TempDir()
	boot := testDHT(t)
	keyFile, pub := newKey(t, dir)
	art := artifact(t, dir, "myapp.1.0.0", 300_000)
	stateDir := filepath.Join(dir, "pubstate")
	publish := func(stateDir, expires string) (stop func() (int, string)) {
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"publish", art, "--key", keyFile, "--version", "1.0.0", "--state-dir", stateDir, "--expires", expires,
				"--bootstrap", boot, "--listen", "127.0.0.1:0"}, &stdout, &stderr)
		}()
		waitUntil(t, 30*time.Second, "publish to seed", func() bool {
			select {
			case code := <-done:
				t.Fatalf("publish exited %d: %s", code, stderr.String())
			default:
			}
			return strings.Contains(stdout.String(), "seeding on")
		})
		return func() (int, string) {
			cancel()
			return <-done, stdout.String()
		}
	}
	stop := publish(stateDir, "90d")
	code, out1 := stop()
	if code != 0 || !strings.Contains(out1, "release     myapp stable") {
		t.Fatalf("first publish (app name: up to the first dot): %d %q", code, out1)
	}
	// The same release again: no --force needed. Signing anew (another
	// expiry) would make another release; the one in the state dir is
	// seeded instead.
	stop = publish(stateDir, "60d")
	fetched := filepath.Join(dir, "fetched")
	fetchState := filepath.Join(dir, "new", "nested", "state")
	code, _, errOut := rpe(t, "fetch", "--pubkey", pub, "--app", "myapp", "--out", fetched, "--state-dir", fetchState,
		"--bootstrap", boot, "--listen", "127.0.0.1:0", "--quiet", "--timeout", "60s")
	if code != 0 {
		t.Errorf("fetch with a new --state-dir: %d %q", code, errOut)
	}
	if fi, err := os.Stat(fetchState); err != nil || !fi.IsDir() {
		t.Errorf("fetch did not make --state-dir: %v", err)
	}
	// Another state dir and another expiry: the manifest is signed anew, a
	// different release of the same version, refused. (Signed within the
	// same second with the same expiry, it would be the identical release.)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr syncBuffer
	code = run(ctx, []string{"publish", art, "--key", keyFile, "--version", "1.0.0", "--state-dir", t.TempDir(),
		"--expires", "30d", "--bootstrap", boot, "--listen", "127.0.0.1:0"}, &stdout, &stderr)
	if errOut := stderr.String(); code != exitError || !strings.Contains(errOut, "not newer") || !strings.Contains(errOut, "--state-dir") || !strings.Contains(errOut, "--force") {
		t.Errorf("publish of the same version anew: %d %q %q", code, errOut, stdout.String())
	}
	code, out2 := stop()
	if id1, id2 := manifestID(out1), manifestID(out2); code != 0 || id1 == "" || id1 != id2 {
		t.Fatalf("second publish: exit %d, manifest %q, first %q", code, id2, id1)
	}
}

// manifestID is the ID on rpe publish's "manifest ID" line.
func manifestID(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if id, ok := strings.CutPrefix(l, "manifest ID "); ok {
			return id
		}
	}
	return ""
}

// TestSIGTERMCleansUp: SIGTERM stops rpe fetch as Ctrl-C does, removing
// its temporary files (one of them would grow to a full copy of the
// release).
func TestSIGTERMCleansUp(t *testing.T) {
	dir := t.TempDir()
	_, pub := newKey(t, dir)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	// A bootstrap node that never answers and --wait: fetch keeps trying,
	// with its temporary output and state beside --out.
	cmd := exec.Command(os.Args[0], "fetch", "--pubkey", pub, "--app", "myapp", "--out", filepath.Join(outDir, "myapp"),
		"--bootstrap", silentAddr(t), "--wait", "5m", "--quiet")
	cmd.Env = append(os.Environ(), asRPE+"=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "fetch's temporary files", func() bool { return len(dirNames(t, outDir)) > 0 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitError || ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
		t.Errorf("fetch after SIGTERM: %v, want exit %d", err, exitError)
	}
	if names := dirNames(t, outDir); len(names) > 0 {
		t.Errorf("SIGTERM left %v", names)
	}
	if s := stderr.String(); !strings.HasPrefix(s, "rpe: fetch: ") || strings.Count(s, "\n") != 1 {
		t.Errorf("stderr %q, want one line", s)
	}
}
