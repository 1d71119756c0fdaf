package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rpe-project/engine/actors/installer"
	"github.com/rpe-project/engine/release"
)

// RolledBack: a new version failed its trial and the previous one is back
// at the target. The failed release is never installed again on this node.
// Found at start (an earlier start of the new version crashed, exited or
// ran out of time) or after a failed HealthCheck.
type RolledBack struct {
	Version         string // the version that failed
	PreviousVersion string // the version restored
	ManifestID      release.ManifestID
	// Reason says why: the HealthCheck's error (under rpe node --run, the
	// child exited before it was healthy), the health deadline passed, or
	// too many starts without a confirm.
	Reason error
	// Restarting means the program is about to be restarted into the
	// restored version (Config.Exec).
	Restarting bool
}

// Confirmed: the version on trial proved healthy (HealthCheck passed); the
// previous executable stays in the state directory for a manual rollback.
type Confirmed struct {
	Version string
}

func (RolledBack) event() {}
func (Confirmed) event()  {}

func rolledBackEvent(m *installer.RolledBack) RolledBack {
	ev := RolledBack{Version: m.Version, PreviousVersion: m.PreviousVersion, Reason: m.Reason, Restarting: m.Restarting}
	if id, err := release.ParseManifestID(m.ManifestID); err == nil {
		ev.ManifestID = id
	}
	return ev
}

// UpdateReady: a verified release waits for Engine.Apply (policy
// ApplyManual).
type UpdateReady struct {
	Version    string
	ManifestID release.ManifestID
}

func (UpdateReady) event() {}

// ErrNothingToApply is Apply's error when no release waits for it.
var ErrNothingToApply = errors.New("engine: no release is ready to apply")

// applyRequest is Engine.Apply's message to the root, which hands it to the
// installer with the caller as sender.
type applyRequest struct{}

// Apply installs the release that waits under ApplyManual (announced by
// UpdateReady) now: the target is swapped and the program restarted into
// it, as under ApplyNow, with the same trial. It returns once the installer
// has taken the request; the outcome follows as Installed (or Failed)
// events. With nothing waiting it returns ErrNothingToApply.
func (e *Engine) Apply(ctx context.Context) error {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return ctx.Err()
	}
	res, err := e.sys.Root.RequestFuture(e.root, &applyRequest{}, timeout).Result()
	if err != nil {
		return fmt.Errorf("engine: apply: %w", err)
	}
	if a, ok := res.(*installer.Applying); ok && a.Err != nil {
		if errors.Is(a.Err, installer.ErrNothingReady) {
			return ErrNothingToApply
		}
		return fmt.Errorf("engine: apply: %w", a.Err)
	}
	return nil
}
