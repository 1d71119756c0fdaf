package installer

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 29, 4, 0, 0, 123456789, time.UTC)

func samplePending(f *swapFixture) Pending {
	return Pending{
		Version: "1.1.0", PreviousVersion: "1.0.0", ManifestID: "ab12",
		Target: f.target, Backup: f.backup,
	}
}

func TestPendingRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "sub") // created by WritePending
	if p, err := ReadPending(dir); p != nil || err != nil {
		t.Fatalf("no marker: got %+v, %v", p, err)
	}
	want := Pending{
		Version: "1.2.3-rc.1+b5", PreviousVersion: "1.2.2", ManifestID: strings.Repeat("0f", 32),
		Backup: "/var/lib/app/backup/app", Target: "/usr/local/bin/app",
		Deadline: t0.Add(90 * time.Second).In(time.FixedZone("Z", 3600)), Attempts: 2,
		MaxAttempts: 5, HealthTimeout: 1500 * time.Millisecond,
		Size: 1 << 40, SHA256: strings.Repeat("9a", 32), ReplacedUnconfirmed: true, InstalledBy: "1.2.3-rc.0",
	}
	if err := WritePending(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPending(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Deadline.Equal(want.Deadline) {
		t.Errorf("deadline %v, want %v", got.Deadline, want.Deadline)
	}
	got.Deadline, want.Deadline = time.Time{}, time.Time{}
	if *got != want {
		t.Errorf("round trip:\n got %+v\nwant %+v", *got, want)
	}
	if fi, err := os.Stat(filepath.Join(dir, PendingFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("marker mode: %v, %v", fi.Mode(), err)
	}
	// A zero deadline stays zero (unarmed).
	want.Deadline = time.Time{}
	if err := WritePending(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadPending(dir); err != nil || !got.Deadline.IsZero() {
		t.Errorf("unarmed deadline: %v, %v", got, err)
	}
	noTemp(t, dir)
	for range 2 {
		if err := ClearPending(dir); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := ReadPending(dir); p != nil || err != nil {
		t.Fatalf("after clear: got %+v, %v", p, err)
	}
}

func TestWritePendingRefusesBadMarker(t *testing.T) {
	dir := t.TempDir()
	good := Pending{Version: "1", Target: "/a", Backup: "/b"}
	bad := []Pending{
		{Target: "/a", Backup: "/b"},
		{Version: "1", Target: "a", Backup: "/b"},
		{Version: "1", Target: "/a", Backup: "b"},
		{Version: "1", Target: "/a", Backup: "/a/"},
		{Version: "1", Target: "/a", Backup: "/b", Attempts: -1},
		{Version: "1", Target: "/a", Backup: "/b", HealthTimeout: -1},
		{Version: "1", Target: "/a", Backup: "/b", Size: 5},
		{Version: "1", Target: "/a", Backup: "/b", Size: 5, SHA256: strings.Repeat("9A", 32)},
		{Version: "1", Target: "/a", Backup: "/b", Size: 5, SHA256: "9a"},
		{Version: "1", Target: "/a", Backup: "/b", Size: -1, SHA256: strings.Repeat("9a", 32)},
	}
	for _, p := range bad {
		if err := WritePending(dir, p); !errors.Is(err, ErrBadPending) {
			t.Errorf("WritePending(%+v) = %v, want ErrBadPending", p, err)
		}
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("refused markers left files: %v", got)
	}
	if err := WritePending(dir, good); err != nil {
		t.Fatal(err)
	}
}

func TestReadPendingCorrupt(t *testing.T) {
	valid := `{"format":1,"version":"1.1.0","target":"/a","backup":"/b","attempts":0}`
	if _, err := decodePending([]byte(valid)); err != nil {
		t.Fatalf("the base case must be valid: %v", err)
	}
	cases := map[string]string{
		"empty":              "",
		"truncated":          valid[:len(valid)/2],
		"not JSON":           "\x00\x01binary",
		"null":               "null",
		"array":              "[]",
		"format 0":           strings.Replace(valid, `"format":1`, `"format":0`, 1),
		"format 2":           strings.Replace(valid, `"format":1`, `"format":2`, 1),
		"unknown field":      strings.Replace(valid, `{`, `{"extra":1,`, 1),
		"trailing data":      valid + `{}`,
		"no version":         strings.Replace(valid, `"1.1.0"`, `""`, 1),
		"relative target":    strings.Replace(valid, `"/a"`, `"a"`, 1),
		"negative attempts":  strings.Replace(valid, `"attempts":0`, `"attempts":-3`, 1),
		"attempts as string": strings.Replace(valid, `"attempts":0`, `"attempts":"0"`, 1),
		"bad deadline":       strings.Replace(valid, `{`, `{"deadline":"tomorrow",`, 1),
		"huge timeout":       strings.Replace(valid, `{`, `{"health_timeout_ms":9223372036854775807,`, 1),
		"too large":          strings.Replace(valid, `"1.1.0"`, `"`+strings.Repeat("9", maxStateFile)+`"`, 1),
		"size without sha":   strings.Replace(valid, `{`, `{"size":5,`, 1),
		"sha256 not hex":     strings.Replace(valid, `{`, `{"size":5,"sha256":"`+strings.Repeat("zz", 32)+`",`, 1),
		"sha256 short":       strings.Replace(valid, `{`, `{"size":5,"sha256":"abcd",`, 1),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, PendingFile), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := ReadPending(dir)
			if !errors.Is(err, ErrBadPending) || p != nil {
				t.Fatalf("ReadPending = %+v, %v; want ErrBadPending", p, err)
			}
			// Boot refuses to act on it and changes nothing.
			if _, err := Boot(dir, "1.1.0", t0); !errors.Is(err, ErrBadPending) {
				t.Errorf("Boot = %v, want ErrBadPending", err)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, PendingFile)); string(got) != body {
				t.Error("Boot changed the bad marker")
			}
			if err := ClearPending(dir); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// swapped returns a fixture after a Swap and a written marker, as the old
// process leaves things right before the exec.
func swapped(t *testing.T, p func(*Pending)) (*swapFixture, Pending) {
	t.Helper()
	f := newSwapFixture(t)
	if err := Swap(f.target, f.staged, f.backup); err != nil {
		t.Fatal(err)
	}
	pend := samplePending(f)
	if p != nil {
		p(&pend)
	}
	if err := WritePending(f.stateDir, pend); err != nil {
		t.Fatal(err)
	}
	return f, pend
}

func mustBoot(t *testing.T, dir, version string, now time.Time, want BootState) BootResult {
	t.Helper()
	r, err := Boot(dir, version, now)
	if err != nil {
		t.Fatalf("Boot(%s, %v): %v", version, now, err)
	}
	if r.State != want {
		t.Fatalf("Boot(%s, %v) = %s, want %s", version, now, r.State, want)
	}
	return r
}

func assertTarget(t *testing.T, f *swapFixture, want []byte, what string) {
	t.Helper()
	if !bytes.Equal(readFile(t, f.target), want) {
		t.Fatalf("target is not the %s version", what)
	}
}

func TestBootClean(t *testing.T) {
	r := mustBoot(t, t.TempDir(), "1.0.0", t0, BootClean)
	if r.Pending != nil || r.Restart {
		t.Errorf("clean boot: %+v", r)
	}
	if err := r.Confirm(); !errors.Is(err, ErrNoPending) {
		t.Errorf("Confirm on a clean boot: %v", err)
	}
}

func TestBootTrialConfirm(t *testing.T) {
	f, _ := swapped(t, nil)
	r := mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	if r.Pending.Attempts != 1 || !r.Pending.Deadline.Equal(t0.Add(DefaultHealthTimeout)) {
		t.Errorf("trial: attempts %d, deadline %v", r.Pending.Attempts, r.Pending.Deadline)
	}
	onDisk, err := ReadPending(f.stateDir)
	if err != nil || onDisk.Attempts != 1 || !onDisk.Deadline.Equal(r.Pending.Deadline) {
		t.Fatalf("the start was not recorded: %+v, %v", onDisk, err)
	}
	if err := r.Confirm(); err != nil {
		t.Fatal(err)
	}
	if p, err := ReadPending(f.stateDir); p != nil || err != nil {
		t.Fatalf("marker after confirm: %+v, %v", p, err)
	}
	assertTarget(t, f, f.new, "new")
	if !bytes.Equal(readFile(t, f.backup), f.old) {
		t.Error("backup not kept after confirm")
	}
	if err := r.Confirm(); !errors.Is(err, ErrNoPending) {
		t.Errorf("second Confirm: %v, want ErrNoPending", err)
	}
	mustBoot(t, f.stateDir, "1.1.0", t0.Add(time.Hour), BootClean)
}

func TestBootCrashLoopRollsBack(t *testing.T) {
	f, _ := swapped(t, func(p *Pending) { p.MaxAttempts = 3; p.HealthTimeout = time.Hour })
	now := t0
	for i := 1; i <= 3; i++ { // three starts that crash before confirming
		r := mustBoot(t, f.stateDir, "1.1.0", now, BootTrial)
		if r.Pending.Attempts != i {
			t.Fatalf("start %d: attempts %d", i, r.Pending.Attempts)
		}
		now = now.Add(time.Second)
	}
	r := mustBoot(t, f.stateDir, "1.1.0", now, BootRolledBack)
	if !errors.Is(r.Reason, ErrTooManyAttempts) || !r.Restart {
		t.Errorf("rollback: reason %v, restart %v", r.Reason, r.Restart)
	}
	assertTarget(t, f, f.old, "old")
	if p, err := ReadPending(f.stateDir); p != nil || err != nil {
		t.Fatalf("marker after rollback: %+v, %v", p, err)
	}
	failed, err := Failed(f.stateDir)
	if err != nil || len(failed) != 1 || failed[0].Version != "1.1.0" || failed[0].ManifestID != "ab12" ||
		!failed[0].At.Equal(now) || !strings.Contains(failed[0].Reason, "too often") {
		t.Fatalf("failed list %+v, %v", failed, err)
	}
	if bad, err := IsFailed(f.stateDir, "ab12"); !bad || err != nil {
		t.Errorf("IsFailed = %v, %v", bad, err)
	}
	if bad, err := IsFailed(f.stateDir, "cd34"); bad || err != nil {
		t.Errorf("IsFailed(other) = %v, %v", bad, err)
	}
	// The restored old version then boots clean.
	mustBoot(t, f.stateDir, "1.0.0", now, BootClean)
}

func TestBootDeadline(t *testing.T) {
	f, _ := swapped(t, func(p *Pending) { p.Deadline = t0.Add(time.Minute) })
	r := mustBoot(t, f.stateDir, "1.1.0", t0.Add(time.Minute), BootTrial) // at the deadline: still in time
	if !r.Pending.Deadline.Equal(t0.Add(time.Minute)) {
		t.Errorf("an armed deadline moved: %v", r.Pending.Deadline)
	}
	r = mustBoot(t, f.stateDir, "1.1.0", t0.Add(time.Minute+1), BootRolledBack)
	if !errors.Is(r.Reason, ErrHealthDeadline) || !r.Restart {
		t.Errorf("reason %v, restart %v", r.Reason, r.Restart)
	}
	assertTarget(t, f, f.old, "old")
}

// TestSupervisorRollsBackEarlyCrash covers a new version that crashes before
// it reaches Boot: only the supervisor's BeforeLaunch calls see the marker,
// and the deadline they arm ends the trial.
func TestSupervisorRollsBackEarlyCrash(t *testing.T) {
	f, _ := swapped(t, func(p *Pending) { p.HealthTimeout = 30 * time.Second }) // OnRestart style: unarmed
	r, err := BeforeLaunch(f.stateDir, t0)
	if err != nil || r.State != BootWaiting || !r.Pending.Deadline.Equal(t0.Add(30*time.Second)) || r.Pending.Attempts != 0 {
		t.Fatalf("first launch: %+v, %v", r, err)
	}
	for now := t0; !now.After(t0.Add(30 * time.Second)); now = now.Add(5 * time.Second) {
		if r, err := BeforeLaunch(f.stateDir, now); err != nil || r.State != BootWaiting {
			t.Fatalf("relaunch at %v: %+v, %v", now, r, err)
		}
	}
	assertTarget(t, f, f.new, "new")
	r, err = BeforeLaunch(f.stateDir, t0.Add(31*time.Second))
	if err != nil || r.State != BootRolledBack || r.Restart || !errors.Is(r.Reason, ErrHealthDeadline) {
		t.Fatalf("after the deadline: %+v, %v", r, err)
	}
	assertTarget(t, f, f.old, "old")
}

// TestBootOtherVersionWaits covers the old version booting while an armed
// trial (as ExecNew leaves it) is under way; see trial_test.go for an
// unarmed one.
func TestBootOtherVersionWaits(t *testing.T) {
	f, _ := swapped(t, func(p *Pending) { p.Deadline = t0.Add(DefaultHealthTimeout) })
	r := mustBoot(t, f.stateDir, "1.0.0", t0, BootWaiting)
	if r.Restart || r.Pending.Attempts != 0 {
		t.Errorf("waiting: %+v", r)
	}
	if err := r.Confirm(); !errors.Is(err, ErrNoPending) {
		t.Errorf("Confirm by another version: %v", err)
	}
	assertTarget(t, f, f.new, "new")
	// Overdue: whoever boots rolls back, and the old version need not restart.
	r = mustBoot(t, f.stateDir, "1.0.0", t0.Add(DefaultHealthTimeout+time.Second), BootRolledBack)
	if r.Restart {
		t.Error("the old version was told to restart")
	}
	assertTarget(t, f, f.old, "old")
}

func TestTrialRollBack(t *testing.T) {
	f, _ := swapped(t, nil)
	r := mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	if err := r.RollBack(errors.New("health check: port closed"), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	assertTarget(t, f, f.old, "old")
	failed, err := Failed(f.stateDir)
	if err != nil || len(failed) != 1 || failed[0].Reason != "health check: port closed" {
		t.Errorf("failed list %+v, %v", failed, err)
	}
	if err := r.Confirm(); !errors.Is(err, ErrNoPending) {
		t.Errorf("Confirm after RollBack: %v", err)
	}
}

func TestConfirmOtherInstall(t *testing.T) {
	f, p := swapped(t, nil)
	r := mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	p.Version, p.ManifestID = "1.2.0", "ef56" // a later install replaced the marker
	if err := WritePending(f.stateDir, p); err != nil {
		t.Fatal(err)
	}
	if err := r.Confirm(); !errors.Is(err, ErrNoPending) {
		t.Errorf("Confirm of a replaced marker: %v", err)
	}
	if err := r.RollBack(errors.New("x"), t0); !errors.Is(err, ErrNoPending) {
		t.Errorf("RollBack of a replaced marker: %v", err)
	}
	if got, _ := ReadPending(f.stateDir); got == nil || got.Version != "1.2.0" {
		t.Errorf("the other marker was touched: %+v", got)
	}
}

func TestBootRollbackFailureIsRetried(t *testing.T) {
	f, _ := swapped(t, func(p *Pending) { p.Deadline = t0 })
	hidden := f.backup + ".hidden"
	if err := os.Rename(f.backup, hidden); err != nil {
		t.Fatal(err)
	}
	if _, err := Boot(f.stateDir, "1.1.0", t0.Add(time.Second)); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("Boot without backup: %v, want ErrNoBackup", err)
	}
	if p, _ := ReadPending(f.stateDir); p == nil {
		t.Fatal("marker dropped after a failed rollback")
	}
	assertTarget(t, f, f.new, "new")
	if err := os.Rename(hidden, f.backup); err != nil {
		t.Fatal(err)
	}
	mustBoot(t, f.stateDir, "1.1.0", t0.Add(2*time.Second), BootRolledBack)
	assertTarget(t, f, f.old, "old")
}

func TestExecNew(t *testing.T) {
	f, _ := swapped(t, func(p *Pending) { p.HealthTimeout = 10 * time.Second })
	var gotPath string
	var gotArgv, gotEnv []string
	fake := func(path string, argv, env []string) error {
		gotPath, gotArgv, gotEnv = path, argv, env
		return nil
	}
	argv, env := []string{"app", "-x"}, []string{"A=1"}
	if err := ExecNew(f.stateDir, fake, argv, env, t0); err != nil {
		t.Fatal(err)
	}
	if gotPath != f.target || !slices.Equal(gotArgv, argv) || !slices.Equal(gotEnv, env) {
		t.Errorf("exec(%q, %q, %q)", gotPath, gotArgv, gotEnv)
	}
	p, err := ReadPending(f.stateDir)
	if err != nil || p == nil || !p.Deadline.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("marker after exec: %+v, %v", p, err)
	}
	if err := ClearPending(f.stateDir); err != nil {
		t.Fatal(err)
	}
	if err := ExecNew(f.stateDir, fake, argv, env, t0); !errors.Is(err, ErrNoPending) {
		t.Errorf("ExecNew without marker: %v", err)
	}
}

// TestExecNewRealFailure execs, for real, a "new version" that the kernel
// refuses to run; ExecNew returns and puts the old version back.
func TestExecNewRealFailure(t *testing.T) {
	for _, c := range []struct {
		name string
		mode os.FileMode
	}{{"not executable", 0o644}, {"not a program", 0o755}} {
		t.Run(c.name, func(t *testing.T) {
			f := newSwapFixture(t)
			writeFile(t, f.target, f.old, c.mode)
			writeFile(t, f.staged, []byte("\x00\x01\x02 not an executable format"), 0o644)
			if err := Swap(f.target, f.staged, f.backup); err != nil {
				t.Fatal(err)
			}
			if err := WritePending(f.stateDir, samplePending(f)); err != nil {
				t.Fatal(err)
			}
			err := ExecNew(f.stateDir, ExecSelf, []string{f.target}, nil, t0)
			if !errors.Is(err, ErrExecFailed) {
				t.Fatalf("ExecNew = %v, want ErrExecFailed", err)
			}
			assertTarget(t, f, f.old, "old")
			if p, _ := ReadPending(f.stateDir); p != nil {
				t.Error("marker left after the failed exec was rolled back")
			}
			if bad, _ := IsFailed(f.stateDir, "ab12"); !bad {
				t.Error("release not listed as failed")
			}
		})
	}
}

func TestFailedList(t *testing.T) {
	dir := t.TempDir()
	for i := range maxFailed + 10 {
		f := FailedInstall{Version: fmt.Sprint(i), ManifestID: fmt.Sprint("m", i), At: t0, Reason: strings.Repeat("r", 600)}
		if err := addFailed(dir, f); err != nil {
			t.Fatal(err)
		}
	}
	// Recording the same release again replaces its entry.
	if err := addFailed(dir, FailedInstall{Version: "70", ManifestID: "m70", At: t0, Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	list, err := Failed(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != maxFailed || list[0].Version != "10" || list[len(list)-1].Reason != "again" {
		t.Fatalf("list: %d entries, first %s, last %+v", len(list), list[0].Version, list[len(list)-1])
	}
	if len(list[0].Reason) != 512 {
		t.Errorf("reason not truncated: %d bytes", len(list[0].Reason))
	}
	if bad, _ := IsFailed(dir, "m5"); bad {
		t.Error("an entry beyond the cap is still listed")
	}

	// A corrupt list is reported, and replaced by the next rollback.
	if err := os.WriteFile(filepath.Join(dir, FailedFile), []byte(`{"format":1,"failed":[{]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Failed(dir); !errors.Is(err, ErrBadFailedList) {
		t.Errorf("corrupt list: %v", err)
	}
	if _, err := IsFailed(dir, "m1"); !errors.Is(err, ErrBadFailedList) {
		t.Errorf("IsFailed on a corrupt list: %v", err)
	}
	if err := addFailed(dir, FailedInstall{Version: "9", ManifestID: "m9", At: t0}); err != nil {
		t.Fatal(err)
	}
	if list, err := Failed(dir); err != nil || len(list) != 1 {
		t.Errorf("after replacing a corrupt list: %+v, %v", list, err)
	}
}
