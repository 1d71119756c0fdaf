//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package installer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// lockHeld reports whether someone holds the installer's lock on stateDir.
func lockHeld(t *testing.T, stateDir string) bool {
	t.Helper()
	f, err := os.Open(filepath.Join(stateDir, LockFile))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return false
}

// The engine confirms the running version (1.1, on trial) on its own
// goroutine while the installer actor installs 1.2 on another. Whatever the
// interleaving, the result must be one of the two orders: confirm first
// (1.1 is the backup of 1.2's trial) or install first (1.1 never
// confirmed, the backup stays the confirmed 1.0). A confirm that lands
// between the install's read of the marker and its write would leave 1.2 on
// trial with 1.0 as its backup although 1.1 was confirmed (a failed 1.2
// then restores a version older than the last confirmed one), or clear
// 1.2's marker (1.2 then runs without a trial).
func TestConfirmDuringInstall(t *testing.T) {
	f := newThreeVersions(t)
	installOnRestart(t, f.swapFixture, f.staged, onRestart(f.swapFixture))
	r := mustBoot(t, f.stateDir, "1.1.0", t0, BootTrial)
	confirmed := make(chan error, 1)
	h := &hooks{afterReadPending: func() {
		if lockHeld(t, f.stateDir) {
			// Serialised: the confirm waits for the install.
			go func() { confirmed <- r.Confirm() }()
			return
		}
		// Nothing keeps the confirm out of the install's window.
		confirmed <- r.Confirm()
	}}
	p, err := swapOnTrial(f.stateDir, f.staged12Path, f.pending12("1.1.0"), h)
	if err != nil {
		t.Fatal(err)
	}
	cerr := <-confirmed
	onDisk, err := ReadPending(f.stateDir)
	if err != nil || onDisk == nil || onDisk.Version != "1.2.0" {
		t.Fatalf("1.2 is not on trial: marker %+v, %v (confirm: %v)", onDisk, err, cerr)
	}
	assertTarget(t, f.swapFixture, f.v12, "1.2")
	backup := readFile(t, f.backup)
	switch {
	case cerr == nil: // confirm first
		if p.ReplacedUnconfirmed || !bytes.Equal(backup, f.new) {
			t.Fatalf("1.1 was confirmed, but the backup is not 1.1 (replaced_unconfirmed %v)", p.ReplacedUnconfirmed)
		}
	case errors.Is(cerr, ErrNoPending): // install first
		if !p.ReplacedUnconfirmed || !bytes.Equal(backup, f.old) {
			t.Fatalf("1.1 was not confirmed, but the backup is not 1.0 (replaced_unconfirmed %v)", p.ReplacedUnconfirmed)
		}
	default:
		t.Fatalf("confirm: %v", cerr)
	}
}
