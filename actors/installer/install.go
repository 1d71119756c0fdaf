package installer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// SwapOnTrial replaces p.Target with the verified file staged and puts the
// new version on trial: it is Swap and WritePending in the one order that
// is safe across a crash. It returns the marker as written.
//
// p names the new version (Version, ManifestID), the running one
// (PreviousVersion), the absolute Target and Backup, and the trial's limits
// (HealthTimeout, MaxAttempts). Size and SHA256 describe staged; if SHA256
// is empty they are computed from it. Deadline and Attempts are reset: the
// trial starts unarmed (ExecNew or the first start arms it).
//
// The marker is written first, naming the new file by size and SHA-256,
// then the file is swapped in. A crash before the swap renamed the new file
// into place leaves a marker whose target does not hold that file, which
// Boot recognises as stale; a crash after it leaves a complete trial. On a
// swap error the previous marker (or none) is put back and the target is
// untouched; a failed directory sync after the rename (ErrNotDurable) is
// returned with the marker, since the new file is in place.
//
// If the current target is itself unconfirmed (a marker for the same target
// and backup is present and still describes it, or had kept its backup
// too), the backup is kept: it is the last confirmed version, the one a
// rollback must restore, and the new marker's PreviousVersion is the old
// marker's (the running version, if another, goes to InstalledBy). The
// target being replaced, never confirmed, is dropped. So two
// installs on restart before any restart (1.0 running, 1.1 then 1.2 swapped
// in) leave 1.2 on trial with 1.0 as its backup.
//
// If the target already holds this very release, on trial (the marker
// names the same version, manifest and file), nothing changes: it returns
// the marker as it is and an error wrapping ErrAlreadyOnTrial. A build
// that reports an older version than its manifest's would otherwise
// install itself again at every start, each time restarting its own trial
// (and, under Now, exec itself again), so its trial would never end.
//
// A marker that cannot be read stops the install (an error wrapping
// ErrBadPending): without it the installer cannot tell whether the target
// is a confirmed version worth keeping as the backup.
func SwapOnTrial(stateDir, staged string, p Pending) (Pending, error) {
	return swapOnTrial(stateDir, staged, p, nil)
}

func swapOnTrial(stateDir, staged string, p Pending, h *hooks) (Pending, error) {
	p.Deadline, p.Attempts, p.ReplacedUnconfirmed, p.InstalledBy = time.Time{}, 0, false, ""
	if p.SHA256 == "" {
		size, sum, err := hashFile(staged)
		if err != nil {
			return Pending{}, fmt.Errorf("install %s: staged file: %w", p.Version, err)
		}
		p.Size, p.SHA256 = size, sum
	}
	if err := p.check(); err != nil {
		return Pending{}, fmt.Errorf("install %s: %w: %w", p.Version, ErrBadPending, err)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return Pending{}, fmt.Errorf("install %s: %w", p.Version, err)
	}
	unlock, err := lockState(stateDir)
	if err != nil {
		return Pending{}, fmt.Errorf("install %s: %w", p.Version, err)
	}
	defer unlock()
	prev, err := ReadPending(stateDir)
	if err != nil {
		return Pending{}, fmt.Errorf("install %s: %w", p.Version, err)
	}
	h.fireAfterReadPending()
	if prev != nil && filepath.Clean(prev.Target) == filepath.Clean(p.Target) &&
		filepath.Clean(prev.Backup) == filepath.Clean(p.Backup) {
		if prev.SHA256 != "" && prev.SHA256 == p.SHA256 && prev.Size == p.Size &&
			prev.Version == p.Version && prev.ManifestID == p.ManifestID {
			// The same release again: a build that reports an older
			// version than its manifest's installs it at each start.
			// A new marker would restart its trial every time, and
			// under Now it would exec itself forever.
			holds, err := prev.targetHolds()
			if err != nil {
				return Pending{}, fmt.Errorf("install %s: %w", p.Version, err)
			}
			if holds {
				return *prev, fmt.Errorf("install %s: %w", p.Version, ErrAlreadyOnTrial)
			}
		}
		unconfirmed := prev.ReplacedUnconfirmed
		if !unconfirmed {
			// Stale (the target never received prev's file): the target
			// is still the confirmed version, and becomes the backup.
			if unconfirmed, err = prev.targetHolds(); err != nil {
				return Pending{}, fmt.Errorf("install %s: %w", p.Version, err)
			}
		}
		if unconfirmed && p.PreviousVersion != prev.PreviousVersion {
			p.InstalledBy, p.PreviousVersion = p.PreviousVersion, prev.PreviousVersion
		}
		p.ReplacedUnconfirmed = unconfirmed
	}
	if err := WritePending(stateDir, p); err != nil {
		return Pending{}, fmt.Errorf("install %s: %w", p.Version, err)
	}
	h.fireStep("marker-written")
	if p.ReplacedUnconfirmed {
		err = swapKeepingBackup(p.Target, staged, p.Backup, h)
	} else {
		err = swap(p.Target, staged, p.Backup, h)
	}
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, ErrNotDurable):
		return p, fmt.Errorf("install %s: %w", p.Version, err)
	}
	// The target is untouched: put the marker back as it was.
	var undo error
	if prev != nil {
		undo = WritePending(stateDir, *prev)
	} else {
		undo = ClearPending(stateDir)
	}
	return Pending{}, errors.Join(fmt.Errorf("install %s: %w", p.Version, err), undo)
}

// hashFile returns the size and hex SHA-256 of the regular file at path.
func hashFile(path string) (int64, string, error) {
	if _, err := regular(path, false); err != nil {
		return 0, "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
