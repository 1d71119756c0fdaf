package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

const helperEnv = "RPE_INSTALLER_TEST_HELPER"

// TestMain turns the test binary into a helper process when helperEnv is
// set: "before" prints its pid and execs the same binary as "after", which
// prints its pid and arguments.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "before":
		fmt.Printf("before pid=%d\n", os.Getpid())
		exe, err := os.Executable()
		if err != nil {
			fmt.Println("executable:", err)
			os.Exit(4)
		}
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, helperEnv+"=") })
		err = ExecSelf(exe, os.Args, append(env, helperEnv+"=after"))
		fmt.Println("exec returned:", err)
		os.Exit(3)
	case "after":
		fmt.Printf("after pid=%d args=%q\n", os.Getpid(), os.Args[1:])
		os.Exit(0)
	default:
		os.Exit(5)
	}
}

func TestExecSelfReplacesProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no exec on Windows")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$", "extra arg")
	cmd.Env = append(os.Environ(), helperEnv+"=before")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`^before pid=(\d+)\nafter pid=(\d+) args=(.*)\n$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("unexpected output:\n%s", out)
	}
	if m[1] != m[2] || m[1] != fmt.Sprint(cmd.Process.Pid) {
		t.Errorf("pids: before %s, after %s, started %d; want one process", m[1], m[2], cmd.Process.Pid)
	}
	if m[3] != `["-test.run=^$" "extra arg"]` {
		t.Errorf("argv not passed on: %s", m[3])
	}
}

// buildSelfupdate builds testdata/selfupdate with the given version into
// dir and returns the binary's path.
func buildSelfupdate(t *testing.T, dir, version string) string {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		gotool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "selfupdate-"+version)
	cmd := exec.Command(gotool, "build", "-o", out,
		"-ldflags", "-X main.version="+version, "./testdata/selfupdate")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

type selfupdate struct {
	target, state, staged string
	v1, v2                []byte
	crash                 string // how 2.0.0 misbehaves, see testdata/selfupdate
	apply                 string // "now" (default) or "restart"
}

// newSelfupdate installs the v1 build as the "app" and stages v2.
func newSelfupdate(t *testing.T, v1, v2, crash string) *selfupdate {
	t.Helper()
	s := &selfupdate{state: filepath.Join(t.TempDir(), "state"), crash: crash}
	appDir := t.TempDir()
	s.target = filepath.Join(appDir, "app")
	s.staged = filepath.Join(t.TempDir(), "staged")
	s.v1, s.v2 = readFile(t, v1), readFile(t, v2)
	writeFile(t, s.target, s.v1, 0o755)
	writeFile(t, s.staged, s.v2, 0o644)
	return s
}

// run starts the app once, as a supervisor would, and returns its output
// and exit code.
func (s *selfupdate) run(t *testing.T, maxAttempts int) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	apply := s.apply
	if apply == "" {
		apply = "now"
	}
	cmd := exec.CommandContext(ctx, s.target, "-state", s.state, "-update", s.staged,
		"-to", "2.0.0", "-manifest", "m2", "-max-attempts", fmt.Sprint(maxAttempts), "-crash", s.crash,
		"-apply", apply)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("run app: %v\n%s", err, out.String())
	return "", 0
}

// wantLines checks that out holds the given lines, in order, each after the
// "pid=N: " prefix, and that every line came from one process.
func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var got []string
	pids := map[string]bool{}
	for _, l := range lines {
		m := regexp.MustCompile(`^(\S+) pid=(\d+): (.*)$`).FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("odd line %q in:\n%s", l, out)
		}
		pids[m[2]] = true
		got = append(got, m[1]+": "+m[3])
	}
	if len(pids) != 1 {
		t.Errorf("output from %d processes, want one (exec keeps the pid):\n%s", len(pids), out)
	}
	if !slices.Equal(got, want) {
		t.Errorf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSelfUpdateProcess runs real builds of a program that swaps its own
// executable and execs into the new version, which confirms its health.
func TestSelfUpdateProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no exec on Windows")
	}
	bin := t.TempDir()
	v1 := buildSelfupdate(t, bin, "1.0.0")
	v2 := buildSelfupdate(t, bin, "2.0.0")
	t.Run("healthy", func(t *testing.T) {
		s := newSelfupdate(t, v1, v2, "")
		out, code := s.run(t, 0)
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantLines(t, out,
			"1.0.0: boot clean", "1.0.0: hello 1.0.0", "1.0.0: exec 2.0.0",
			"2.0.0: boot trial", "2.0.0: confirmed", "2.0.0: hello 2.0.0")
		if !bytes.Equal(readFile(t, s.target), s.v2) || !bytes.Equal(readFile(t, BackupPath(s.state, s.target)), s.v1) {
			t.Error("target is not the new build, or backup not the old one")
		}
		if modeOf(t, s.target) != 0o755 {
			t.Errorf("target mode %v", modeOf(t, s.target))
		}
		if p, err := ReadPending(s.state); p != nil || err != nil {
			t.Errorf("marker left: %+v, %v", p, err)
		}
		// Started again, the new version runs clean and does not update.
		out, code = s.run(t, 0)
		if code != 0 {
			t.Fatalf("second run: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "2.0.0: boot clean", "2.0.0: hello 2.0.0")
	})

	t.Run("crashes after boot", func(t *testing.T) {
		s := newSelfupdate(t, v1, v2, "trial")
		// The supervisor (this test) restarts the app until it exits 0.
		out, code := s.run(t, 2)
		if code != 2 {
			t.Fatalf("first run: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "1.0.0: boot clean", "1.0.0: hello 1.0.0", "1.0.0: exec 2.0.0",
			"2.0.0: boot trial", "2.0.0: crash before confirming")
		out, code = s.run(t, 2)
		if code != 2 {
			t.Fatalf("second run: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "2.0.0: boot trial", "2.0.0: crash before confirming")
		out, code = s.run(t, 2)
		if code != 0 {
			t.Fatalf("third run: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "2.0.0: boot rolled-back",
			"1.0.0: boot clean", "1.0.0: hello 1.0.0", "1.0.0: refuse m2: failed before (<nil>)")
		if !bytes.Equal(readFile(t, s.target), s.v1) {
			t.Error("target is not the old build after the rollback")
		}
	})

	t.Run("crashes before boot", func(t *testing.T) {
		s := newSelfupdate(t, v1, v2, "boot")
		out, code := s.run(t, 0)
		if code != 3 {
			t.Fatalf("first run: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "1.0.0: boot clean", "1.0.0: hello 1.0.0", "1.0.0: exec 2.0.0",
			"2.0.0: crash before boot")
		// The new version never reaches Boot. The old one armed a 2-minute
		// deadline before its exec; the supervisor's clock, ahead by 50 s
		// more at each restart, passes it on the third restart.
		start := time.Now()
		for i := 1; ; i++ {
			r, err := BeforeLaunch(s.state, start.Add(time.Duration(i)*50*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if r.State == BootRolledBack {
				if i != 3 || r.Restart || !errors.Is(r.Reason, ErrHealthDeadline) {
					t.Errorf("rolled back at restart %d: %+v", i, r)
				}
				break
			}
			if r.State != BootWaiting || i > 3 {
				t.Fatalf("restart %d: %s", i, r.State)
			}
			if out, code := s.run(t, 0); code != 3 {
				t.Fatalf("restart %d: exit %d:\n%s", i, code, out)
			}
		}
		out, code = s.run(t, 0)
		if code != 0 {
			t.Fatalf("after rollback: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "1.0.0: boot clean", "1.0.0: hello 1.0.0", "1.0.0: refuse m2: failed before (<nil>)")
		if !bytes.Equal(readFile(t, s.target), s.v1) {
			t.Error("target is not the old build after the rollback")
		}
	})
}

// TestSelfUpdateOnRestartProcess runs real builds that install on restart:
// the old process swaps and runs on, and the next start of the target, the
// new version, is on trial.
func TestSelfUpdateOnRestartProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no exec on Windows")
	}
	bin := t.TempDir()
	v1 := buildSelfupdate(t, bin, "1.0.0")
	v2 := buildSelfupdate(t, bin, "2.0.0")
	// install runs the old version, which installs 2.0.0 on restart and
	// boots again as its engine would if restarted in the same process.
	install := func(t *testing.T, s *selfupdate, maxAttempts int) {
		t.Helper()
		s.apply = "restart"
		out, code := s.run(t, maxAttempts)
		if code != 0 {
			t.Fatalf("old version: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "1.0.0: boot clean", "1.0.0: hello 1.0.0", "1.0.0: installed 2.0.0 on restart",
			"1.0.0: boot again waiting, armed false")
		p, err := ReadPending(s.state)
		if err != nil || p == nil || p.Version != "2.0.0" || p.PreviousVersion != "1.0.0" || !p.Deadline.IsZero() || p.Attempts != 0 {
			t.Fatalf("marker after the install on restart: %+v, %v", p, err)
		}
		if !bytes.Equal(readFile(t, s.target), s.v2) || !bytes.Equal(readFile(t, BackupPath(s.state, s.target)), s.v1) {
			t.Fatal("target is not the new build, or backup not the old one")
		}
	}

	t.Run("healthy", func(t *testing.T) {
		s := newSelfupdate(t, v1, v2, "")
		install(t, s, 0)
		out, code := s.run(t, 0)
		if code != 0 {
			t.Fatalf("restart: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "2.0.0: boot trial", "2.0.0: confirmed", "2.0.0: hello 2.0.0")
		if p, err := ReadPending(s.state); p != nil || err != nil {
			t.Errorf("marker left: %+v, %v", p, err)
		}
		if !bytes.Equal(readFile(t, s.target), s.v2) {
			t.Error("the confirmed version was replaced")
		}
	})

	t.Run("fails its health check", func(t *testing.T) {
		s := newSelfupdate(t, v1, v2, "unhealthy")
		install(t, s, 0)
		out, code := s.run(t, 0)
		if code != 0 {
			t.Fatalf("restart: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "2.0.0: boot trial", "2.0.0: unhealthy, rolled back",
			"1.0.0: boot clean", "1.0.0: hello 1.0.0", "1.0.0: refuse m2: failed before (<nil>)")
		if !bytes.Equal(readFile(t, s.target), s.v1) {
			t.Error("target is not the old build after the rollback")
		}
	})

	t.Run("crashes until MaxAttempts", func(t *testing.T) {
		s := newSelfupdate(t, v1, v2, "trial")
		install(t, s, 2)
		for i := 1; i <= 2; i++ { // the supervisor (this test) restarts it
			out, code := s.run(t, 2)
			if code != 2 {
				t.Fatalf("start %d: exit %d:\n%s", i, code, out)
			}
			wantLines(t, out, "2.0.0: boot trial", "2.0.0: crash before confirming")
		}
		out, code := s.run(t, 2)
		if code != 0 {
			t.Fatalf("third start: exit %d:\n%s", code, out)
		}
		wantLines(t, out, "2.0.0: boot rolled-back",
			"1.0.0: boot clean", "1.0.0: hello 1.0.0", "1.0.0: refuse m2: failed before (<nil>)")
		if !bytes.Equal(readFile(t, s.target), s.v1) {
			t.Error("target is not the old build after the rollback")
		}
	})
}
