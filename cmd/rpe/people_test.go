package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/rpe-project/engine/cli"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	engine "github.com/rpe-project/engine"
	"github.com/rpe-project/engine/actors/installer"
	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/simulation"
)

// testDHT starts a DHT node on loopback for one test and returns its address.
func testDHT(t *testing.T) string {
	t.Helper()
	n, err := network.New(context.Background(), network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", NoBootstrap: true,
		QueryResendDelay: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n.DHTAddr().String()
}

// silentAddr returns a loopback UDP address where a socket is open but
// nothing ever answers: an unreachable bootstrap node.
func silentAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

// published is a release published in-process for the CLI to find.
type published struct {
	boot    string
	keyFile string
	pub     string
	data    []byte
	man     *release.SignedManifest
}

// publishFixture publishes app "myapp" at version with random bytes, from
// a key made by rpe init, and seeds it until the test ends.
func publishFixture(t *testing.T, dir, version string, size int) *published {
	t.Helper()
	boot := testDHT(t)
	keyFile, pub := newKey(t, dir)
	art := artifact(t, dir, "myapp", size)
	data, _ := os.ReadFile(art)
	sk, err := release.ReadSecretKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = hooks.With(ctx, &hooks.Hooks{QueryResendDelay: 200 * time.Millisecond})
	p, err := engine.Publish(ctx, engine.PublishConfig{
		Key: sk, Artifact: art, Version: version, App: "myapp", Bootstrap: []string{boot},
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(context.Background()) })
	return &published{boot: boot, keyFile: keyFile, pub: pub, data: data, man: p.Manifest}
}

func TestFetchAndStatus(t *testing.T) {
	dir := t.TempDir()
	p := publishFixture(t, dir, "1.0.0", 700_000)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "myapp.fetched")
	code, stdout, errOut := rpe(t, "fetch", "--pubkey", p.pub, "--app", "myapp", "--out", out, "--bootstrap", p.boot, "--listen", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("fetch: %d %s", code, errOut)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, p.data) {
		t.Fatalf("fetched file differs from the published artifact (%v)", err)
	}
	if !strings.Contains(stdout, "fetched myapp 1.0.0 (700000 bytes, manifest "+p.man.ID.String()) {
		t.Errorf("fetch printed %q", stdout)
	}
	if names := dirNames(t, outDir); !slices.Equal(names, []string{"myapp.fetched"}) {
		t.Errorf("fetch left %v", names)
	}
	// --json: one object.
	code, stdout, errOut = rpe(t, "fetch", "--json", "--quiet", "--pubkey", p.pub, "--app", "myapp", "--out", out, "--bootstrap", p.boot)
	var fj struct {
		Version    string `json:"version"`
		ManifestID string `json:"manifest_id"`
		Size       int64  `json:"size"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &fj) != nil || fj.Version != "1.0.0" || fj.ManifestID != p.man.ID.String() || fj.Size != 700_000 {
		t.Fatalf("fetch --json: %d %q %s", code, stdout, errOut)
	}

	code, stdout, errOut = rpe(t, "status", "--pubkey", p.pub, "--bootstrap", p.boot, "--listen", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errOut)
	}
	row := regexp.MustCompile(`(?m)^myapp\s+stable\s+` + regexp.QuoteMeta(release.DefaultPlatform()) + `\s+1\.0\.0\s+683\.6 KiB\s+(\d+)\s+` + p.man.Manifest.Expires.UTC().Format("2006-01-02") + `\s+` + p.man.ID.String() + `$`)
	m := row.FindStringSubmatch(stdout)
	if m == nil || m[1] == "0" {
		t.Fatalf("status output lacks the release row with at least one peer:\n%s", stdout)
	}
	if !strings.Contains(stdout, "ago), seq ") || strings.Contains(stdout, "STALE") {
		t.Errorf("status lacks the record age, or calls a fresh record stale: %s", stdout)
	}
	// A record older than --stale-after is marked stale.
	if code, stdout, _ := rpe(t, "status", "--pubkey", p.pub, "--bootstrap", p.boot, "--stale-after", "1ns"); code != 0 || !strings.Contains(stdout, "STALE: signed more than") {
		t.Errorf("status --stale-after 1ns: %d %s", code, stdout)
	}
	code, stdout, _ = rpe(t, "status", "--json", "--app", "myapp", "--pubkey", p.pub, "--bootstrap", p.boot)
	var sj struct {
		Seq     int64             `json:"seq"`
		Entries []cli.StatusEntry `json:"entries"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &sj) != nil || len(sj.Entries) != 1 || sj.Entries[0].Version != "1.0.0" || sj.Entries[0].Size != 700_000 {
		t.Fatalf("status --json: %d %q", code, stdout)
	}
}

// TestPeopleBadInput: every bad input gets one line naming the problem and
// the fix, a non-zero exit, and leaves no file behind.
func TestPeopleBadInput(t *testing.T) {
	dir := t.TempDir()
	p := publishFixture(t, dir, "2.0.0", 100_000)
	other, otherPub := newKey(t, t.TempDir())
	_ = other
	junkKey := filepath.Join(dir, "junk.key")
	os.WriteFile(junkKey, []byte("not a key\n"), 0o600)
	art := filepath.Join(dir, "myapp")
	target := filepath.Join(dir, "installed")
	os.WriteFile(target, []byte("old"), 0o755)
	notDir := filepath.Join(dir, "plainfile")
	os.WriteFile(notDir, nil, 0o644)
	out := filepath.Join(dir, "out")
	boot := []string{"--bootstrap", p.boot, "--listen", "127.0.0.1:0"}
	before := dirNames(t, dir)

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  []string // every one must appear
	}{
		{"fetch without key", []string{"fetch", "--app", "myapp", "--out", out}, exitUsage, []string{"missing --pubkey", "rpe init"}},
		{"fetch malformed key", []string{"fetch", "--pubkey", "nonsense", "--app", "myapp", "--out", out}, exitUsage, []string{`"nonsense" is not a public key`, "52 characters"}},
		{"status malformed key", append([]string{"status", "--pubkey", strings.Repeat("y", 51)}, boot...), exitUsage, []string{"not a public key"}},
		{"node malformed key", []string{"node", "--pubkey", "x", "--app", "myapp", "--target", target}, exitUsage, []string{"not a public key"}},
		{"fetch without app", []string{"fetch", "--pubkey", p.pub, "--out", out}, exitUsage, []string{"missing --app"}},
		{"fetch without out", []string{"fetch", "--pubkey", p.pub, "--app", "myapp"}, exitUsage, []string{"missing --out"}},
		{"publish missing key file", []string{"publish", art, "--key", filepath.Join(dir, "nokey"), "--version", "3.0.0"}, exitError, []string{"does not exist", "rpe init --out"}},
		{"publish malformed key file", []string{"publish", art, "--key", junkKey, "--version", "3.0.0"}, exitError, []string{"not an rpe secret key"}},
		{"publish without key", []string{"publish", art, "--version", "3.0.0"}, exitUsage, []string{"missing --key", "RPE_KEY"}},
		{"fetch unknown app", append([]string{"fetch", "--pubkey", p.pub, "--app", "nosuch", "--out", out}, boot...), exitError, []string{"names no release for this app nosuch/stable", "it names myapp/stable", "check --app"}},
		{"status unknown app", append([]string{"status", "--pubkey", p.pub, "--app", "nosuch"}, boot...), exitError, []string{`"nosuch"`, "myapp/stable", "check --app"}},
		{"fetch unknown key", append([]string{"fetch", "--pubkey", otherPub, "--app", "myapp", "--out", out}, boot...), exitError, []string{"no record signed by this key", "check --pubkey"}},
		{"fetch into missing directory", []string{"fetch", "--pubkey", p.pub, "--app", "myapp", "--out", filepath.Join(dir, "no", "dir", "f")}, exitError, []string{"does not exist", "create it"}},
		{"fetch under a file", []string{"fetch", "--pubkey", p.pub, "--app", "myapp", "--out", filepath.Join(notDir, "f")}, exitError, []string{"is not a directory"}},
		{"node missing target", []string{"node", "--pubkey", p.pub, "--app", "myapp", "--target", filepath.Join(dir, "nosuch")}, exitError, []string{"does not exist", "rpe fetch --out"}},
		{"node run without command", []string{"node", "--pubkey", p.pub, "--app", "myapp", "--target", target, "--run"}, exitUsage, []string{"--run needs the command"}},
		{"node bad apply", []string{"node", "--pubkey", p.pub, "--app", "myapp", "--target", target, "--apply", "later"}, exitUsage, []string{"apply"}},
		{"publish not newer", append([]string{"publish", art, "--key", p.keyFile, "--version", "1.9.0", "--app", "myapp"}, boot...), exitError, []string{"not newer", "2.0.0", "--force"}}, // the network refused it, not the command line
		{"publish manifest of another key", append([]string{"publish", art, "--key", other, "--manifest", art + ".rpem"}, boot...), exitError, []string{"rpem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Never the public DHT: every case names the test's own node.
			if !slices.Contains(tc.args, "--bootstrap") {
				tc.args = append(tc.args, boot...)
			}
			code, _, errOut := rpe(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %q", code, tc.code, errOut)
			}
			for _, m := range tc.msg {
				if !strings.Contains(errOut, m) {
					t.Errorf("message %q lacks %q", errOut, m)
				}
			}
		})
	}
	if after := dirNames(t, dir); !slices.Equal(before, after) {
		t.Fatalf("bad input left files: before %v, after %v", before, after)
	}
}

// TestUnreachableBootstrap: a bootstrap address where nothing answers is
// named, for every networked command, and nothing is written.
func TestUnreachableBootstrap(t *testing.T) {
	silent := silentAddr(t)
	dir := t.TempDir()
	key, pub := newKey(t, dir)
	art := artifact(t, dir, "myapp", 10_000)
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("old"), 0o755)
	before := dirNames(t, dir)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fetch", []string{"fetch", "--pubkey", pub, "--app", "myapp", "--out", filepath.Join(dir, "out")}},
		{"status", []string{"status", "--pubkey", pub}},
		{"publish", []string{"publish", art, "--key", key, "--version", "1.0.0"}},
		{"node", []string{"node", "--pubkey", pub, "--app", "myapp", "--target", target, "--state-dir", t.TempDir(), "--join-timeout", "4s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append(tc.args, "--bootstrap", silent, "--listen", "127.0.0.1:0")
			code, _, errOut := rpe(t, args...)
			if code != exitError || !strings.Contains(errOut, "no DHT node answered at "+silent) || !strings.Contains(errOut, "check --bootstrap") {
				t.Errorf("exit %d %q, want %d naming %s and --bootstrap", code, errOut, exitError, silent)
			}
		})
	}
	t.Cleanup(func() {
		if after := dirNames(t, dir); !slices.Equal(before, after) {
			t.Errorf("left files: before %v, after %v", before, after)
		}
	})
}

// TestUnwritableDirectory: a target or output directory the user cannot
// write to is named before any download, and nothing is written.
func TestUnwritableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes to read-only directories; the missing-directory and not-a-directory cases run in TestPeopleBadInput")
	}
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o755)
	target := filepath.Join(ro, "prog")
	os.WriteFile(target, []byte("old"), 0o755)
	os.Chmod(ro, 0o555)
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	_, pub := newKey(t, dir)
	silent := silentAddr(t)
	for _, args := range [][]string{
		{"fetch", "--pubkey", pub, "--app", "prog", "--out", filepath.Join(ro, "new"), "--bootstrap", silent},
		{"node", "--pubkey", pub, "--app", "prog", "--target", target, "--state-dir", t.TempDir(), "--bootstrap", silent},
	} {
		code, _, errOut := rpe(t, args...)
		if code != exitError || !strings.Contains(errOut, "cannot write in "+ro) || !strings.Contains(errOut, "writable directory") {
			t.Errorf("rpe %s: exit %d %q", args[0], code, errOut)
		}
	}
	if names := dirNames(t, ro); !slices.Equal(names, []string{"prog"}) {
		t.Errorf("left %v", names)
	}
}

// syncBuffer is a bytes.Buffer safe for a child process and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// TestNodeRunRestartsChild: rpe node --run runs a program, swaps in the
// published version, restarts the child into it and confirms it healthy;
// a later release that exits at once is rolled back and the old child
// started again.
func TestNodeRunRestartsChild(t *testing.T) {
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
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	target := script("prog", `echo "prog v1"; exec sleep 600`)
	v2 := script("prog-v2", `echo "prog v2"; exec sleep 600`)
	v3 := script("prog-v3", `echo "prog v3 crashing"; exit 3`)
	want2, _ := os.ReadFile(v2)

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"node", "--pubkey", pub, "--app", "prog", "--target", target, "--version", "1.0.0",
			"--state-dir", filepath.Join(dir, "state"), "--poll", "1s", "--healthy-after", "2s",
			"--bootstrap", boot, "--listen", "127.0.0.1:0", "--run", "--", target}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("rpe node did not stop")
		}
	})
	waitUntil(t, 20*time.Second, "prog v1 to start", func() bool { return strings.Contains(stdout.String(), "prog v1") })

	// Each publisher is stopped before the next release: a running
	// publisher would otherwise take the newer release as an update of its
	// own artifact (see the report on engine.Publish).
	publish := func(art, version string) *engine.Publisher {
		pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer pcancel()
		pctx = hooks.With(pctx, &hooks.Hooks{QueryResendDelay: 200 * time.Millisecond})
		p, err := engine.Publish(pctx, engine.PublishConfig{
			Key: sk, Artifact: art, Version: version, App: "prog", Bootstrap: []string{boot},
			ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", StateDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Stop(context.Background()) })
		return p
	}
	p2 := publish(v2, "1.1.0")
	waitUntil(t, 60*time.Second, "1.1.0 to be confirmed healthy", func() bool { return strings.Contains(stdout.String(), "1.1.0 is healthy") })
	if !strings.Contains(stdout.String(), "prog v2") {
		t.Fatalf("child was not restarted into v2:\n%s", stdout.String())
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want2) {
		t.Fatal("target is not v2")
	}

	p2.Stop(context.Background())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	})
	publish(v3, "1.2.0")
	waitUntil(t, 60*time.Second, "1.2.0 to be rolled back", func() bool { return strings.Contains(stdout.String(), "rolled back to 1.1.0") })
	waitUntil(t, 10*time.Second, "v2 to run again", func() bool { return strings.Count(stdout.String(), "prog v2") >= 2 })
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want2) {
		t.Fatal("target is not v2 after the rollback")
	}
	if v, _ := os.ReadFile(filepath.Join(dir, "state", cli.NodeVersionFile)); strings.TrimSpace(string(v)) != "1.1.0" {
		t.Errorf("recorded version %q, want 1.1.0", v)
	}
}

// TestDemoSmall runs rpe demo with a few nodes and checks its JSON report.
func TestDemoSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a network of engines")
	}
	code, stdout, errOut := rpe(t, "demo", "--nodes", "5", "--size", "1MiB", "--json", "--quiet")
	if code != 0 {
		t.Fatalf("demo: %d %s", code, errOut)
	}
	var rep simulation.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("demo --json: %v\n%s", err, stdout)
	}
	if rep.Nodes != 5 || rep.Completed != rep.Nodes || rep.BadInstalls != 0 || rep.TAllS == nil || rep.TMinS == nil ||
		rep.PublisherUploadBytes <= 0 || rep.TotalUploadBytes < 5<<20 {
		t.Fatalf("demo report: %+v", rep)
	}
}

// TestNodeResumesTrial: when rpe node starts while a version is on trial
// (it was stopped inside the health window), the child must pass the trial
// again; one that exits at once is rolled back to the backup.
func TestNodeResumesTrial(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	boot := testDHT(t)
	_, pub := newKey(t, dir)
	state := filepath.Join(dir, "state")
	target := filepath.Join(dir, "prog")
	old := []byte("#!/bin/sh\necho \"prog v1\"; exec sleep 600\n")
	os.WriteFile(target, []byte("#!/bin/sh\necho \"prog v2 crashing\"; exit 3\n"), 0o755)
	backup := installer.BackupPath(state, target)
	os.MkdirAll(filepath.Dir(backup), 0o755)
	os.WriteFile(backup, old, 0o755)
	os.WriteFile(filepath.Join(state, cli.NodeVersionFile), []byte("1.1.0\n"), 0o644)
	if err := installer.WritePending(state, installer.Pending{Version: "1.1.0", PreviousVersion: "1.0.0",
		ManifestID: strings.Repeat("ab", 32), Backup: backup, Target: target}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"node", "--pubkey", pub, "--app", "prog", "--target", target,
			"--state-dir", state, "--healthy-after", "5s", "--bootstrap", boot, "--listen", "127.0.0.1:0",
			"--run", "--", target}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("rpe node did not stop")
		}
	})
	waitUntil(t, 30*time.Second, "the rollback and v1 running", func() bool {
		return strings.Contains(stdout.String(), "rolled back to 1.0.0") && strings.Contains(stdout.String(), "prog v1")
	})
	if got, _ := os.ReadFile(target); !bytes.Equal(got, old) {
		t.Fatalf("target was not rolled back:\n%s", stdout.String())
	}
	if failed, err := installer.IsFailed(state, strings.Repeat("ab", 32)); err != nil || !failed {
		t.Errorf("release not listed as failed: %v %v", failed, err)
	}
	if v, _ := os.ReadFile(filepath.Join(state, cli.NodeVersionFile)); strings.TrimSpace(string(v)) != "1.0.0" {
		t.Errorf("recorded version %q, want 1.0.0", v)
	}
	select {
	case code := <-done:
		t.Fatalf("rpe node ended (%d) after the rollback:\n%s\n%s", code, stdout.String(), stderr.String())
	default:
	}
}
