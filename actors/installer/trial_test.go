package installer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// onRestart is the marker an install on restart asks for: 1.0.0 runs and
// installs 1.1.0 (manifest ab12).
func onRestart(f *swapFixture) Pending {
	p := samplePending(f)
	p.HealthTimeout = 30 * time.Second
	return p
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// installOnRestart runs SwapOnTrial for p and checks the state it leaves.
func installOnRestart(t *testing.T, f *swapFixture, staged string, p Pending) Pending {
	t.Helper()
	got, err := SwapOnTrial(f.stateDir, staged, p)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := ReadPending(f.stateDir)
	if err != nil || onDisk == nil {
		t.Fatalf("marker: %+v, %v", onDisk, err)
	}
	if *onDisk != got {
		t.Fatalf("marker on disk %+v, returned %+v", *onDisk, got)
	}
	if !got.Deadline.IsZero() || got.Attempts != 0 {
		t.Fatalf("an install on restart must wait unarmed: %+v", got)
	}
	if data := readFile(t, staged); !bytes.Equal(readFile(t, f.target), data) ||
		got.SHA256 != sha256Hex(data) || got.Size != int64(len(data)) {
		t.Fatalf("target or marker does not describe the staged file: %+v", got)
	}
	noTemp(t, f.dir, f.stateDir, filepath.Dir(f.backup))
	return got
}

func markerBytes(t *testing.T, f *swapFixture) []byte {
	t.Helper()
	return readFile(t, filepath.Join(f.stateDir, PendingFile))
}

func assertFailed(t *testing.T, f *swapFixture, ids ...string) {
	t.Helper()
	list, err := Failed(f.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range list {
		got = append(got, g.ManifestID)
	}
	if len(got) != len(ids) {
		t.Fatalf("failed list %q, want %q", got, ids)
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("failed list %q, want %q", got, ids)
		}
	}
}

// Case 1: an install on restart is on trial from the next start of the new
// version, which arms the deadline; a confirm ends it.
func TestOnRestartTrialConfirm(t *testing.T) {
	f := newSwapFixture(t)
	installOnRestart(t, f, f.staged, onRestart(f))
	if !bytes.Equal(readFile(t, f.backup), f.old) || modeOf(t, f.target) != 0o751 {
		t.Fatal("backup is not the old version, or the target lost its mode")
	}
	// Days later, the new version starts: its deadline counts from now.
	start := t0.Add(72 * time.Hour)
	r := mustBoot(t, f.stateDir, "1.1.0", start, BootTrial)
	if r.Pending.Attempts != 1 || !r.Pending.Deadline.Equal(start.Add(30*time.Second)) {
		t.Fatalf("trial: attempts %d, deadline %v", r.Pending.Attempts, r.Pending.Deadline)
	}
	if err := r.Confirm(); err != nil {
		t.Fatal(err)
	}
	if p, err := ReadPending(f.stateDir); p != nil || err != nil {
		t.Fatalf("marker after confirm: %+v, %v", p, err)
	}
	assertTarget(t, f, f.new, "new")
	mustBoot(t, f.stateDir, "1.1.0", start.Add(time.Hour), BootClean)
	assertFailed(t, f)
}

// Case 1: the trial of an install on restart fails as any other does.
func TestOnRestartTrialFails(t *testing.T) {
	t.Run("health check", func(t *testing.T) {
		f := newSwapFixture(t)
		installOnRestart(t, f, f.staged, onRestart(f))
		r := mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
		if err := r.RollBack(errors.New("health check: no answer"), t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		assertTarget(t, f, f.old, "old")
		assertFailed(t, f, "ab12")
		mustBoot(t, f.stateDir, "1.0.0", t0.Add(time.Minute), BootClean)
	})
	t.Run("max attempts", func(t *testing.T) {
		f := newSwapFixture(t)
		p := onRestart(f)
		p.MaxAttempts = 2
		installOnRestart(t, f, f.staged, p)
		for i := 1; i <= 2; i++ { // two starts that die before confirming
			if r := mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial); r.Pending.Attempts != i {
				t.Fatalf("start %d: attempts %d", i, r.Pending.Attempts)
			}
		}
		r := mustBoot(t, f.stateDir, "1.1.0", t0, BootRolledBack)
		if !r.Restart || !errors.Is(r.Reason, ErrTooManyAttempts) {
			t.Fatalf("rollback: %+v", r)
		}
		assertTarget(t, f, f.old, "old")
		assertFailed(t, f, "ab12")
	})
	t.Run("deadline", func(t *testing.T) {
		f := newSwapFixture(t)
		installOnRestart(t, f, f.staged, onRestart(f))
		mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
		r := mustBoot(t, f.stateDir, "1.1.0", t0.Add(31*time.Second), BootRolledBack)
		if !r.Restart || !errors.Is(r.Reason, ErrHealthDeadline) {
			t.Fatalf("rollback: %+v", r)
		}
		assertTarget(t, f, f.old, "old")
	})
}

// Case 2: the old process, which installed on restart and runs on, boots
// again (its engine restarted in the same process) at any time: it neither
// arms the trial nor rolls the new version back, and cannot end the trial.
func TestOldProcessLeavesUnarmedMarker(t *testing.T) {
	f := newSwapFixture(t)
	installOnRestart(t, f, f.staged, onRestart(f))
	before := markerBytes(t, f)
	for _, now := range []time.Time{t0, t0.Add(time.Hour), t0.Add(400 * 24 * time.Hour)} {
		r := mustBoot(t, f.stateDir, "1.0.0", now, BootWaiting)
		if r.Restart || !r.Pending.Deadline.IsZero() || r.Pending.Attempts != 0 {
			t.Fatalf("old version at %v: %+v", now, r)
		}
		if err := r.Confirm(); !errors.Is(err, ErrNoPending) {
			t.Fatalf("Confirm by the old version: %v", err)
		}
		if err := r.RollBack(errors.New("x"), now); !errors.Is(err, ErrNoPending) {
			t.Fatalf("RollBack by the old version: %v", err)
		}
	}
	if !bytes.Equal(markerBytes(t, f), before) {
		t.Fatal("the old version changed the marker")
	}
	assertTarget(t, f, f.new, "new")
	assertFailed(t, f)

	// The new version's first start, a year on, still gets its full trial.
	start := t0.Add(401 * 24 * time.Hour)
	r := mustBoot(t, f.stateDir, "1.1.0", start, BootTrial)
	if !r.Pending.Deadline.Equal(start.Add(30 * time.Second)) {
		t.Fatalf("deadline %v", r.Pending.Deadline)
	}
	// Once the trial is armed the old version is just another process: an
	// overdue trial is rolled back by whoever boots, without a restart.
	r = mustBoot(t, f.stateDir, "1.0.0", start.Add(time.Minute), BootRolledBack)
	if r.Restart {
		t.Fatal("the old version was told to restart")
	}
	assertTarget(t, f, f.old, "old")
}

// Case 2, the other side of the rule: a start that is not the old version
// arms the deadline, so a new build that reports an unexpected version (and
// so can never confirm) is still rolled back.
func TestMisversionedStartArmsTrial(t *testing.T) {
	f := newSwapFixture(t)
	installOnRestart(t, f, f.staged, onRestart(f))
	r := mustBoot(t, f.stateDir, "1.1.0-dev", t0, BootWaiting)
	if !r.Pending.Deadline.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("deadline %v", r.Pending.Deadline)
	}
	r = mustBoot(t, f.stateDir, "1.1.0-dev", t0.Add(31*time.Second), BootRolledBack)
	if !errors.Is(r.Reason, ErrHealthDeadline) {
		t.Fatalf("reason %v", r.Reason)
	}
	// The caller is the rejected build: it must not run on.
	if !r.Restart {
		t.Fatal("the misversioned build was not told to restart into the old version")
	}
	assertTarget(t, f, f.old, "old")
}

// An unconfirmed version that installed the next one (1.1 on trial installs
// 1.2 on restart) and runs on when 1.2's trial fails is told to restart:
// the target is the confirmed 1.0 again, and 1.1, never confirmed, must not
// run on unsupervised.
func TestRollbackRestartsUnconfirmedInstaller(t *testing.T) {
	f := newThreeVersions(t)
	installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
	mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	installOnRestart(t, f.swapFixture, f.staged12Path, f.pending12("1.1.0"))
	mustBoot(t, f.stateDir, "", t0, BootWaiting) // a supervisor arms 1.2's trial
	r := mustBoot(t, f.stateDir, "1.1.0", t0.Add(31*time.Second), BootRolledBack)
	if !errors.Is(r.Reason, ErrHealthDeadline) || !r.Restart {
		t.Fatalf("1.1 after 1.2's trial failed: %+v", r)
	}
	assertTarget(t, f.swapFixture, f.old, "confirmed 1.0")
	assertFailed(t, f.swapFixture, "cd34")
}

// threeVersions is a fixture with 1.0 installed and 1.1 and 1.2 staged.
type threeVersions struct {
	*swapFixture
	v12          []byte
	staged12Path string
}

func newThreeVersions(t *testing.T) *threeVersions {
	f := &threeVersions{swapFixture: newSwapFixture(t)}
	f.v12 = append([]byte("#!1.2 "), f.new[:1000]...)
	f.staged12Path = filepath.Join(f.stateDir, "staged-1.2")
	writeFile(t, f.staged12Path, f.v12, 0o600)
	return f
}

func (f *threeVersions) pending12(running string) Pending {
	return Pending{Version: "1.2.0", PreviousVersion: running, ManifestID: "cd34",
		Target: f.target, Backup: f.backup, HealthTimeout: 30 * time.Second}
}

// Case 3: two installs before any restart keep the last confirmed version as
// the backup; a rollback of the second restores it.
func TestSecondInstallKeepsConfirmedBackup(t *testing.T) {
	cases := []struct {
		name string
		// between runs after 1.1 is swapped in, before 1.2 is installed by
		// a process of version running.
		between func(t *testing.T, f *threeVersions)
		running string
	}{
		{"on restart twice", func(*testing.T, *threeVersions) {}, "1.0.0"},
		{"old process rebooted between", func(t *testing.T, f *threeVersions) {
			mustBoot(t, f.stateDir, "1.0.0", t0, BootWaiting)
		}, "1.0.0"},
		{"1.1 on trial installs 1.2", func(t *testing.T, f *threeVersions) {
			mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
		}, "1.1.0"},
		{"1.1 exec failed silently (fake exec)", func(t *testing.T, f *threeVersions) {
			if err := ExecNew(f.stateDir, func(string, []string, []string) error { return nil }, nil, nil, t0); err != nil {
				t.Fatal(err)
			}
		}, "1.0.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newThreeVersions(t)
			installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
			c.between(t, f)
			p := installOnRestart(t, f.swapFixture, f.staged12Path, f.pending12(c.running))
			wantBy := ""
			if c.running != "1.0.0" {
				wantBy = c.running
			}
			if p.Version != "1.2.0" || p.PreviousVersion != "1.0.0" || p.ManifestID != "cd34" || !p.ReplacedUnconfirmed ||
				p.InstalledBy != wantBy {
				t.Fatalf("marker %+v, want 1.2.0 replacing 1.0.0 with the backup kept, installed by %q", p, wantBy)
			}
			if !bytes.Equal(readFile(t, f.backup), f.old) {
				t.Fatal("the backup is no longer the confirmed 1.0")
			}
			// The process that installed, running on, leaves the marker alone.
			if r := mustBoot(t, f.stateDir, c.running, t0, BootWaiting); !r.Pending.Deadline.IsZero() {
				t.Fatalf("%s armed the trial of 1.2", c.running)
			}
			r := mustBoot(t, f.stateDir, "1.2.0", t0, BootTrial)
			if r.Pending.Attempts != 1 {
				t.Fatalf("1.2 trial attempts %d", r.Pending.Attempts)
			}
			if err := r.RollBack(errors.New("unhealthy"), t0); err != nil {
				t.Fatal(err)
			}
			assertTarget(t, f.swapFixture, f.old, "confirmed 1.0")
			assertFailed(t, f.swapFixture, "cd34") // 1.1 never ran: not listed
		})
	}
}

// Case 3, after a confirm: the confirmed version becomes the next backup.
func TestInstallAfterConfirmBacksUpConfirmed(t *testing.T) {
	f := newThreeVersions(t)
	installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
	r := mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	if err := r.Confirm(); err != nil {
		t.Fatal(err)
	}
	p := installOnRestart(t, f.swapFixture, f.staged12Path, f.pending12("1.1.0"))
	if p.PreviousVersion != "1.1.0" || p.ReplacedUnconfirmed {
		t.Fatalf("marker %+v", p)
	}
	if !bytes.Equal(readFile(t, f.backup), f.new) {
		t.Fatal("the backup is not the confirmed 1.1")
	}
}

// crashAt runs an install that dies (a panic out of the swap stands for the
// process dying) at the hook point h fires from, and checks that the install
// did not get past it.
func crashAt(t *testing.T, f *swapFixture, staged string, p Pending, h *hooks) {
	t.Helper()
	died := func() (died bool) {
		defer func() { died = recover() != nil }()
		swapOnTrial(f.stateDir, staged, p, h)
		return false
	}()
	if !died {
		t.Fatal("the install did not reach the crash point")
	}
}

var (
	crashBeforeBackup = &hooks{afterTemp: func(string) error { panic("crash") }}
	crashBeforeRename = &hooks{beforeRename: func(string) error { panic("crash") }}
)

// Case 4: a crash between writing the marker and the swap's rename leaves the
// confirmed version in place; the next start discards the marker, never
// restoring a backup the install did not make.
func TestCrashBeforeRenameReplacingConfirmed(t *testing.T) {
	for _, c := range []struct {
		name string
		h    *hooks
	}{{"before the backup", crashBeforeBackup}, {"before the rename", crashBeforeRename}} {
		for _, who := range []string{"1.0.0", ""} { // the old version restarted, or a supervisor
			t.Run(c.name+"/"+who, func(t *testing.T) {
				f := newSwapFixture(t)
				stale := []byte("#!0.9, the backup of an earlier update")
				if err := os.MkdirAll(filepath.Dir(f.backup), 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, f.backup, stale, 0o755)
				crashAt(t, f, f.staged, onRestart(f), c.h)
				if p, _ := ReadPending(f.stateDir); p == nil {
					t.Fatal("no marker: the crash came too late")
				}
				if c.h == crashBeforeBackup && !bytes.Equal(readFile(t, f.backup), stale) {
					t.Fatal("the crash came after the backup")
				}
				assertTarget(t, f, f.old, "old")
				r, err := Boot(f.stateDir, who, t0.Add(time.Hour))
				if err != nil || r.State != BootClean || !errors.Is(r.Reason, ErrStalePending) {
					t.Fatalf("boot after the crash: %+v, %v", r, err)
				}
				assertTarget(t, f, f.old, "old")
				if p, err := ReadPending(f.stateDir); p != nil || err != nil {
					t.Fatalf("stale marker kept: %+v, %v", p, err)
				}
				assertFailed(t, f)
				// The install can simply be done again.
				installOnRestart(t, f, f.staged, onRestart(f))
				if !bytes.Equal(readFile(t, f.backup), f.old) {
					t.Fatal("backup is not the old version")
				}
			})
		}
	}
}

// Case 4 when the install replaced an unconfirmed version: the target still
// holds that never-confirmed version, so the next start restores the
// confirmed backup (listing nothing as failed).
func TestCrashBeforeRenameReplacingUnconfirmed(t *testing.T) {
	for _, who := range []string{"1.1.0", "1.0.0", ""} {
		t.Run(who, func(t *testing.T) {
			f := newThreeVersions(t)
			installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
			crashAt(t, f.swapFixture, f.staged12Path, f.pending12("1.0.0"), crashBeforeRename)
			if p, _ := ReadPending(f.stateDir); p == nil || p.Version != "1.2.0" {
				t.Fatalf("marker after the crash: %+v", p)
			}
			assertTarget(t, f.swapFixture, f.new, "unconfirmed 1.1")
			r, err := Boot(f.stateDir, who, t0)
			if err != nil || r.State != BootRolledBack || !errors.Is(r.Reason, ErrStalePending) {
				t.Fatalf("boot after the crash: %+v, %v", r, err)
			}
			if want := who == "1.1.0"; r.Restart != want {
				t.Errorf("Restart %v for %q, want %v", r.Restart, who, want)
			}
			assertTarget(t, f.swapFixture, f.old, "confirmed 1.0")
			assertFailed(t, f.swapFixture)
			mustBoot(t, f.stateDir, "1.0.0", t0, BootClean)
		})
	}
}

// Case 4, the rest of the install: past the rename the trial is complete,
// and a rollback interrupted after it restored the target is finished by
// discarding the marker.
func TestCrashAfterRenameAndInterruptedRollback(t *testing.T) {
	f := newSwapFixture(t)
	installOnRestart(t, f, f.staged, onRestart(f)) // all a crash after the rename can leave
	mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	if err := Rollback(f.target, f.backup); err != nil { // a rollback that then died
		t.Fatal(err)
	}
	r, err := Boot(f.stateDir, "1.0.0", t0.Add(time.Second))
	if err != nil || r.State != BootRolledBack || r.Restart || !errors.Is(r.Reason, ErrStalePending) {
		t.Fatalf("boot after the interrupted rollback: %+v, %v", r, err)
	}
	assertTarget(t, f, f.old, "old")
	assertFailed(t, f, "ab12") // the rollback's record is finished too
	mustBoot(t, f.stateDir, "1.0.0", t0.Add(time.Minute), BootClean)
}

// A swap that fails (rather than crashes) puts the previous marker back.
func TestSwapOnTrialFailureRestoresMarker(t *testing.T) {
	fail := &hooks{beforeRename: func(string) error { return errInjected }}
	t.Run("no marker before", func(t *testing.T) {
		f := newSwapFixture(t)
		if _, err := swapOnTrial(f.stateDir, f.staged, onRestart(f), fail); !errors.Is(err, errInjected) {
			t.Fatalf("error %v", err)
		}
		if p, err := ReadPending(f.stateDir); p != nil || err != nil {
			t.Fatalf("marker after a failed install: %+v, %v", p, err)
		}
		assertTarget(t, f, f.old, "old")
	})
	t.Run("a trial before", func(t *testing.T) {
		f := newThreeVersions(t)
		installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
		before := markerBytes(t, f.swapFixture)
		if _, err := swapOnTrial(f.stateDir, f.staged12Path, f.pending12("1.0.0"), fail); !errors.Is(err, errInjected) {
			t.Fatalf("error %v", err)
		}
		if !bytes.Equal(markerBytes(t, f.swapFixture), before) {
			t.Fatal("the 1.1 marker was not put back")
		}
		assertTarget(t, f.swapFixture, f.new, "1.1")
		if !bytes.Equal(readFile(t, f.backup), f.old) {
			t.Fatal("backup changed")
		}
		mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	})
	t.Run("backup gone while unconfirmed", func(t *testing.T) {
		f := newThreeVersions(t)
		installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
		if err := os.Remove(f.backup); err != nil {
			t.Fatal(err)
		}
		if _, err := SwapOnTrial(f.stateDir, f.staged12Path, f.pending12("1.0.0")); !errors.Is(err, ErrNoBackup) {
			t.Fatalf("error %v, want ErrNoBackup", err)
		}
		assertTarget(t, f.swapFixture, f.new, "1.1")
	})
}

// An unreadable marker stops an install: the installer cannot tell whether
// the target is a confirmed version to keep as the backup.
func TestSwapOnTrialRefusesBadMarker(t *testing.T) {
	f := newSwapFixture(t)
	writeFile(t, filepath.Join(f.stateDir, PendingFile), []byte("{not json"), 0o600)
	if _, err := SwapOnTrial(f.stateDir, f.staged, onRestart(f)); !errors.Is(err, ErrBadPending) {
		t.Fatalf("error %v, want ErrBadPending", err)
	}
	assertTarget(t, f, f.old, "old")
	if _, err := os.Stat(f.backup); err == nil {
		t.Fatal("backup written by a refused install")
	}
}

// 1.1, on trial, installs 1.2 on restart and then finds itself unhealthy:
// its rollback still works (the confirmed 1.0 comes back, 1.1 is listed as
// failed, 1.2, which never ran, is dropped), so an unhealthy 1.1 does not
// run on unsupervised until the next restart.
func TestRollBackAfterInstallingOnRestart(t *testing.T) {
	f := newThreeVersions(t)
	installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
	r := mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	installOnRestart(t, f.swapFixture, f.staged12Path, f.pending12("1.1.0"))
	if err := r.Confirm(); !errors.Is(err, ErrNoPending) {
		t.Fatalf("1.1 confirmed after installing 1.2: %v", err)
	}
	if err := r.RollBack(errors.New("unhealthy"), t0.Add(time.Second)); err != nil {
		t.Fatalf("1.1 cannot roll back after installing 1.2: %v", err)
	}
	assertTarget(t, f.swapFixture, f.old, "confirmed 1.0")
	assertFailed(t, f.swapFixture, "ab12")
	if p, err := ReadPending(f.stateDir); p != nil || err != nil {
		t.Fatalf("marker after the rollback: %+v, %v", p, err)
	}
	mustBoot(t, f.stateDir, "1.0.0", t0.Add(time.Minute), BootClean)

	// Once 1.2 has started, its trial is its own: 1.1 cannot end it.
	f = newThreeVersions(t)
	installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
	r = mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	installOnRestart(t, f.swapFixture, f.staged12Path, f.pending12("1.1.0"))
	mustBoot(t, f.stateDir, "1.2.0", t0, BootTrial)
	if err := r.RollBack(errors.New("unhealthy"), t0.Add(time.Second)); !errors.Is(err, ErrNoPending) {
		t.Fatalf("1.1 ended 1.2's trial: %v", err)
	}
	assertTarget(t, f.swapFixture, f.v12, "1.2")
}

// A new build that reports an older version than its manifest's (1.1
// built still saying 1.0.0) finds its own release again at every start and
// installs it. That must not restart its trial each time (under Now it
// would exec itself forever and the deadline would never come): the
// install is refused with ErrAlreadyOnTrial, nothing changes, and the trial
// ends at its deadline.
func TestReinstallDoesNotRestartTrial(t *testing.T) {
	f := newSwapFixture(t)
	installOnRestart(t, f, f.staged, onRestart(f))
	noExec := func(string, []string, []string) error { return nil }
	if err := ExecNew(f.stateDir, noExec, nil, nil, t0); err != nil {
		t.Fatal(err)
	}
	before := markerBytes(t, f)
	for i, now := range []time.Time{t0.Add(10 * time.Second), t0.Add(20 * time.Second)} {
		mustBoot(t, f.stateDir, "1.0.0", now, BootWaiting) // the misversioned 1.1 starts
		p, err := SwapOnTrial(f.stateDir, f.staged, onRestart(f))
		if !errors.Is(err, ErrAlreadyOnTrial) {
			t.Fatalf("reinstall %d: %v", i, err)
		}
		if !p.Deadline.Equal(t0.Add(30 * time.Second)) {
			t.Fatalf("reinstall %d returned %+v", i, p)
		}
		if err := ExecNew(f.stateDir, noExec, nil, nil, now); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(markerBytes(t, f), before) {
			t.Fatalf("reinstall %d changed the trial", i)
		}
	}
	r := mustBoot(t, f.stateDir, "1.0.0", t0.Add(31*time.Second), BootRolledBack)
	if !errors.Is(r.Reason, ErrHealthDeadline) {
		t.Fatalf("reason %v", r.Reason)
	}
	assertTarget(t, f, f.old, "old")
	assertFailed(t, f, "ab12")
}
