package installer

import (
	"time"

	"github.com/rpe-project/engine/release"
)

// Install asks for a verified release to be applied by the policy.
type Install struct {
	Manifest *release.SignedManifest
	// Path is the verified file; it is copied, never moved, so the node can
	// keep seeding it.
	Path string
}

// Scheduled reports that an install waits for its time (policy At).
type Scheduled struct {
	Manifest *release.SignedManifest
	At       time.Time
}

// Installed reports a swapped target. Restarting is true when the process is
// about to be replaced by the new version.
type Installed struct {
	Manifest   *release.SignedManifest
	Target     string
	Backup     string
	Restarting bool
}

// InstallFailed reports an install that did not happen; the target is
// unchanged.
type InstallFailed struct {
	Manifest *release.SignedManifest
	Err      error
}

// RolledBack reports a trial that failed: the backup, the last confirmed
// version, is back at the target and the release is listed as failed, so
// it is never installed again. Found at boot (an earlier start of the new
// version crashed or ran out of time) or after a failed health check.
// Restarting is true when the installer then restarts (Exec) into the
// restored version.
type RolledBack struct {
	Version         string // the version that failed
	PreviousVersion string // the version restored
	ManifestID      string // hex, of the release that failed
	Reason          error  // wraps ErrHealthDeadline, ErrTooManyAttempts, ErrStalePending or the health check's error
	Restarting      bool
}

// Confirmed reports that the version on trial proved healthy: the trial is
// over and the backup kept for a manual rollback.
type Confirmed struct {
	Version string
}

// healthChecked carries the result of a trial's health check, run off the
// actor's goroutine, back to the actor, which alone confirms or rolls back.
type healthChecked struct {
	res BootResult
	err error
}

// Ready reports a verified release waiting for Apply (policy Manual).
type Ready struct {
	Manifest *release.SignedManifest
}

// Apply asks for the release waiting under policy Manual to be installed
// now. The installer answers the sender with *Applying.
type Apply struct{}

// Applying answers Apply: Err is ErrNothingReady when no release waits;
// otherwise the install goes ahead and reports Installed or InstallFailed
// as usual.
type Applying struct {
	Err error
}

// ResendInstall is what a restarted installer asks of its parent: the
// Install it was given and has not answered, if any, again (the message a
// stage fails on is lost with it). The parent answers with Install or not
// at all.
type ResendInstall struct{}
