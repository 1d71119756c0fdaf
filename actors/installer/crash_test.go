package installer

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashSteps are the points of SwapOnTrial at which TestKillAtEachStep
// kills the installing process: the marker read, the marker written, the
// new file synced beside the target, the backup directory created (first
// install only), the backup written, just before the rename over the
// target, and just after it.
var crashSteps = []string{"read-pending", "marker-written", "temp-written", "backup-dir", "backup-written", "before-rename", "renamed"}

// TestCrashHelper is not a test: TestKillAtEachStep runs the test binary
// again with RPE_CRASH_STATE set, and then it installs the release and
// kills itself (SIGKILL) at step RPE_CRASH_STEP.
func TestCrashHelper(t *testing.T) {
	stateDir := os.Getenv("RPE_CRASH_STATE")
	if stateDir == "" {
		t.Skip("helper process for TestKillAtEachStep")
	}
	step := os.Getenv("RPE_CRASH_STEP")
	h := &hooks{step: func(name string) {
		if name == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}}
	_, err := swapOnTrial(stateDir, os.Getenv("RPE_CRASH_STAGED"), crashPending(stateDir, os.Getenv("RPE_CRASH_TARGET")), h)
	if err != nil {
		os.Exit(3)
	}
	os.Exit(0)
}

func crashPending(stateDir, target string) Pending {
	return Pending{Version: "2.0.0", PreviousVersion: "1.0.0", ManifestID: strings.Repeat("2a", 32),
		Target: target, Backup: BackupPath(stateDir, target)}
}

// TestKillAtEachStep: a real process installing 2.0.0 over 1.0.0 is killed
// (SIGKILL) at each step of the install and swap in turn. After every kill
// the target holds the whole old or the whole new file, never a torn or
// missing one; and a restarted node (Boot as 1.0.0, install again, start
// 2.0.0, confirm) always converges: target 2.0.0, backup 1.0.0, no marker,
// no temporary file. RPE_CRASH_TRIALS sets the number of trials (default
// 100, cycling through the steps).
func TestKillAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 100 processes")
	}
	trials := 100
	if n, err := strconv.Atoi(os.Getenv("RPE_CRASH_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	old, neu := make([]byte, 3000), make([]byte, 5000)
	rand.Read(old)
	rand.Read(neu)
	killed := map[string]int{}
	sawOld, sawNew := 0, 0
	for i := range trials {
		step := crashSteps[i%len(crashSteps)]
		dir := t.TempDir()
		target := filepath.Join(dir, "bin", "app")
		staged := filepath.Join(dir, "staged")
		stateDir := filepath.Join(dir, "state")
		os.MkdirAll(filepath.Dir(target), 0o755)
		if err := os.WriteFile(target, old, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(staged, neu, 0o644)
		if i%2 == 1 {
			// Every other trial the backup directory exists already (a node
			// that installed before), so the later steps are reached with
			// and without a first install.
			os.MkdirAll(filepath.Dir(BackupPath(stateDir, target)), 0o700)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
		cmd.Env = append(os.Environ(), "RPE_CRASH_STATE="+stateDir, "RPE_CRASH_STEP="+step,
			"RPE_CRASH_STAGED="+staged, "RPE_CRASH_TARGET="+target)
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			killed[step]++
		case err == nil && step == "backup-dir" && i%2 == 1:
			// The directory existed: the step never came, the install ran
			// to the end.
		default:
			t.Fatalf("trial %d (%s): helper %v", i, step, err)
		}

		got, err := os.ReadFile(target)
		switch {
		case err != nil:
			t.Fatalf("trial %d, killed at %s: target missing: %v", i, step, err)
		case bytes.Equal(got, old):
			sawOld++
		case bytes.Equal(got, neu):
			sawNew++
		default:
			t.Fatalf("trial %d, killed at %s: target torn (%d bytes)", i, step, len(got))
		}

		// The node starts again as 1.0.0, finds the release again and
		// installs it, and starts 2.0.0, which confirms.
		now := time.Now()
		if _, err := Boot(stateDir, "1.0.0", now); err != nil {
			t.Fatalf("trial %d (%s): boot as 1.0.0: %v", i, step, err)
		}
		if _, err := SwapOnTrial(stateDir, staged, crashPending(stateDir, target)); err != nil && !errors.Is(err, ErrAlreadyOnTrial) {
			t.Fatalf("trial %d (%s): install again: %v", i, step, err)
		}
		res, err := Boot(stateDir, "2.0.0", now)
		if err != nil || res.State != BootTrial {
			t.Fatalf("trial %d (%s): boot as 2.0.0: %v %v", i, step, res.State, err)
		}
		if err := res.Confirm(); err != nil {
			t.Fatalf("trial %d (%s): confirm: %v", i, step, err)
		}
		if got, _ := os.ReadFile(target); !bytes.Equal(got, neu) {
			t.Fatalf("trial %d (%s): did not converge to 2.0.0", i, step)
		}
		if got, _ := os.ReadFile(BackupPath(stateDir, target)); !bytes.Equal(got, old) {
			t.Fatalf("trial %d (%s): backup is not 1.0.0", i, step)
		}
		if p, err := ReadPending(stateDir); p != nil || err != nil {
			t.Fatalf("trial %d (%s): marker left: %+v %v", i, step, p, err)
		}
		for _, d := range []string{filepath.Dir(target), filepath.Dir(BackupPath(stateDir, target)), stateDir} {
			ents, _ := os.ReadDir(d)
			for _, e := range ents {
				if strings.Contains(e.Name(), tempMarker) {
					t.Fatalf("trial %d (%s): temporary file %s left in %s", i, step, e.Name(), d)
				}
			}
		}
	}
	for _, s := range crashSteps {
		if trials >= 2*len(crashSteps) && killed[s] == 0 {
			t.Errorf("never killed at %s", s)
		}
	}
	t.Logf("%d trials: killed at %v; target after the kill old %d, new %d; torn or missing 0; all converged", trials, killed, sawOld, sawNew)
}
