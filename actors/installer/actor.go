package installer

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/release"
)

// Config configures the installer stage.
type Config struct {
	// Target is the executable to replace.
	Target string
	// StateDir holds the backup and the pending-install marker.
	StateDir string
	Policy   Policy
	// Exec replaces the process after a swap under Now and At; nil means
	// ExecSelf. The simulation passes a func that returns nil (no exec).
	Exec Execer
	// Argv and Env are passed to Exec; nil means os.Args and os.Environ().
	Argv, Env []string
	// PreviousVersion is the running version, recorded in the marker.
	PreviousVersion string
	// HealthDeadline is how long the new version has to confirm it is
	// healthy before the next boot rolls back; default 2m.
	HealthDeadline time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the stage's logs; nil is silent.
	Logger *slog.Logger
	// FaultHook, when set, is called with every message; tests inject panics.
	FaultHook func(msg any)
}

func (c *Config) populate() {
	if c.Exec == nil {
		c.Exec = ExecSelf
	}
	if c.Argv == nil {
		c.Argv = os.Args
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.HealthDeadline == 0 {
		c.HealthDeadline = 2 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type installerActor struct {
	cfg   Config
	timer *time.Timer
	gen   int
}

// Props returns the props that spawn an installer.
func Props(cfg Config) *actor.Props {
	cfg.populate()
	return actor.PropsFromProducer(func() actor.Actor { return &installerActor{cfg: cfg} })
}

// applyDue fires when a scheduled install's time has come.
type applyDue struct {
	gen int
	req *Install
}

func (a *installerActor) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if a.cfg.FaultHook != nil {
		a.cfg.FaultHook(msg)
	}
	switch m := msg.(type) {
	case *actor.Stopping, *actor.Restarting:
		if a.timer != nil {
			a.timer.Stop()
		}
	case *Install:
		a.install(ctx, m)
	case *applyDue:
		if m.gen == a.gen {
			a.apply(ctx, m.req, true)
		}
	}
}

func (a *installerActor) install(ctx actor.Context, m *Install) {
	switch a.cfg.Policy.Kind {
	case OnRestart:
		a.apply(ctx, m, false)
	case At:
		at := a.cfg.Policy.NextApply(a.cfg.Now())
		a.gen++
		if a.timer != nil {
			a.timer.Stop()
		}
		sys, self, gen := ctx.ActorSystem(), ctx.Self(), a.gen
		d := at.Sub(a.cfg.Now())
		a.timer = time.AfterFunc(d, func() { sys.Root.Send(self, &applyDue{gen: gen, req: m}) })
		a.cfg.Logger.Info("installer: scheduled", "version", m.Manifest.Manifest.Version, "at", at)
		a.tell(ctx, &Scheduled{Manifest: m.Manifest, At: at})
	default:
		a.apply(ctx, m, true)
	}
}

func (a *installerActor) apply(ctx actor.Context, m *Install, restart bool) {
	backup := filepath.Join(a.cfg.StateDir, "backup", filepath.Base(a.cfg.Target))
	if err := os.MkdirAll(filepath.Dir(backup), 0o755); err != nil {
		a.tell(ctx, &InstallFailed{Manifest: m.Manifest, Err: fmt.Errorf("install: %w", err)})
		return
	}
	// The last check before the target changes: the staged bytes, read
	// from disk now, must be exactly the signed release, whatever happened
	// to the file since its chunks were verified.
	if err := verifyStaged(m); err != nil {
		a.tell(ctx, &InstallFailed{Manifest: m.Manifest, Err: err})
		return
	}
	man := m.Manifest.Manifest
	// The marker goes with every swap, whatever the policy: an install on
	// restart is on trial from the next start, as one applied now is.
	p := Pending{
		Version: man.Version.String(), PreviousVersion: a.cfg.PreviousVersion, ManifestID: m.Manifest.ID.String(),
		Backup: backup, Target: a.cfg.Target, HealthTimeout: a.cfg.HealthDeadline,
		Size: man.Size, SHA256: hex.EncodeToString(man.FileHash[:]),
	}
	p, err := SwapOnTrial(a.cfg.StateDir, m.Path, p)
	if errors.Is(err, ErrNotDurable) {
		// The new file and its marker are in place; a power loss may still
		// undo the rename, and then Boot finds the marker stale.
		a.cfg.Logger.Warn("installer: swapped, not yet durable", "target", a.cfg.Target, "err", err)
	} else if err != nil {
		a.tell(ctx, &InstallFailed{Manifest: m.Manifest, Err: err})
		return
	}
	a.cfg.Logger.Info("installer: swapped", "target", a.cfg.Target, "version", man.Version,
		"previous", p.PreviousVersion, "kept_backup", p.ReplacedUnconfirmed)
	if !restart {
		a.tell(ctx, &Installed{Manifest: m.Manifest, Target: a.cfg.Target, Backup: backup})
		return
	}
	a.tell(ctx, &Installed{Manifest: m.Manifest, Target: a.cfg.Target, Backup: backup, Restarting: true})
	if err := ExecNew(a.cfg.StateDir, a.cfg.Exec, a.cfg.Argv, a.cfg.Env, a.cfg.Now()); err != nil {
		// ExecNew put the old version back: this process goes on as it was.
		a.tell(ctx, &InstallFailed{Manifest: m.Manifest, Err: fmt.Errorf("restart into %s: %w", man.Version, err)})
	}
}

func (a *installerActor) tell(ctx actor.Context, m any) {
	if ctx.Parent() != nil {
		ctx.Send(ctx.Parent(), m)
	}
}

// verifyStaged hashes the staged file against its manifest.
func verifyStaged(m *Install) error {
	f, err := os.Open(m.Path)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer f.Close()
	if err := release.VerifyFile(f, m.Manifest.Manifest); err != nil {
		return fmt.Errorf("install %s: staged file does not match the signed manifest: %w", m.Manifest.ID.Short(), err)
	}
	return nil
}
