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
