package installer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
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
	// HealthCheck, when set, must return nil before the trial's deadline
	// for the version on trial to be confirmed; nil confirms at once. It
	// runs on its own goroutine; its context ends at the deadline or when
	// the stage stops.
	HealthCheck func(ctx context.Context) error
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
	// shared outlives a restart of the actor (a restarted actor is rebuilt
	// by the producer and loses its fields).
	shared *shared
	// stop ends the running health check's context when the stage stops.
	stop context.CancelFunc
	// ready is the install waiting for Apply (policy Manual).
	ready *Install
}

// ErrNothingReady answers an Apply when no release waits for it.
var ErrNothingReady = errors.New("installer: no release is ready to apply")

// shared is the installer's state that must survive a restart of the actor.
type shared struct {
	booted atomic.Bool
	// current is the last confirmed version the target holds, what a
	// rollback of the next install restores: PreviousVersion at first, then
	// each version confirmed or restored in this process (a supervisor's
	// child, or the simulation's pretend exec).
	current atomic.Pointer[string]
}

func (a *installerActor) current() string {
	if v := a.shared.current.Load(); v != nil {
		return *v
	}
	return a.cfg.PreviousVersion
}

// Props returns the props that spawn an installer. The installer calls
// Boot when it first starts (not after a restart of the stage, which is no
// start of the program), and is from then on the only writer of the trial.
func Props(cfg Config) *actor.Props {
	cfg.populate()
	sh := &shared{}
	return actor.PropsFromProducer(func() actor.Actor { return &installerActor{cfg: cfg, shared: sh} })
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
	case *actor.Started:
		if a.shared.booted.CompareAndSwap(false, true) {
			a.boot(ctx)
		} else if ctx.Parent() != nil {
			// Restarted: the Install being handled was lost with the
			// failed incarnation; ask for it again.
			ctx.Send(ctx.Parent(), &ResendInstall{})
		}
	case *actor.Stopping, *actor.Restarting:
		if a.timer != nil {
			a.timer.Stop()
		}
		if a.stop != nil {
			a.stop()
		}
	case *healthChecked:
		a.checked(ctx, m)
	case *Apply:
		if a.ready == nil {
			ctx.Respond(&Applying{Err: ErrNothingReady})
			return
		}
		req := a.ready
		a.ready = nil
		ctx.Respond(&Applying{})
		a.apply(ctx, req, true)
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
	case Manual:
		a.ready = m
		a.cfg.Logger.Info("installer: ready, waiting for Apply", "version", m.Manifest.Manifest.Version)
		a.tell(ctx, &Ready{Manifest: m.Manifest})
	case At, Window:
		now := a.cfg.Now()
		at := a.cfg.Policy.NextApply(now)
		if !at.After(now) {
			a.apply(ctx, m, true)
			return
		}
		a.gen++
		if a.timer != nil {
			a.timer.Stop()
		}
		sys, self, gen := ctx.ActorSystem(), ctx.Self(), a.gen
		a.timer = time.AfterFunc(at.Sub(now), func() { sys.Root.Send(self, &applyDue{gen: gen, req: m}) })
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
		Version: man.Version.String(), PreviousVersion: a.current(), ManifestID: m.Manifest.ID.String(),
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
		return
	}
	// Exec returned: this process was not replaced, so the new version runs
	// elsewhere (a supervisor restarted its child into it; the simulation
	// pretends). That is its start: count it and run its trial here.
	res, err := Boot(a.cfg.StateDir, man.Version.String(), a.cfg.Now())
	if err != nil {
		a.cfg.Logger.Error("installer: trial of restarted version", "version", man.Version, "err", err)
		return
	}
	a.booted(ctx, res)
}

// boot runs Boot for the starting program and acts on what it found.
func (a *installerActor) boot(ctx actor.Context) {
	res, err := Boot(a.cfg.StateDir, a.cfg.PreviousVersion, a.cfg.Now())
	if err != nil {
		a.cfg.Logger.Warn("installer: pending install check", "err", err)
		return
	}
	a.booted(ctx, res)
}

// booted acts on a Boot result: reports a rollback (and restarts into the
// restored version when the caller runs another), or starts the trial's
// health check.
func (a *installerActor) booted(ctx actor.Context, res BootResult) {
	switch res.State {
	case BootRolledBack:
		a.rolledBack(ctx, res.Pending, res.Reason, res.Restart)
	case BootTrial:
		a.startCheck(ctx, res)
	case BootClean:
		if res.Reason != nil {
			a.cfg.Logger.Info("installer: discarded a stale pending-install marker", "reason", res.Reason)
		}
	}
}

// startCheck runs the health check on its own goroutine, bounded by the
// trial's deadline; only its result comes back to the actor.
func (a *installerActor) startCheck(ctx actor.Context, res BootResult) {
	check := a.cfg.HealthCheck
	if check == nil {
		a.checked(ctx, &healthChecked{res: res})
		return
	}
	if a.stop != nil {
		a.stop()
	}
	stopCtx, stop := context.WithCancel(context.Background())
	a.stop = stop
	sys, self := ctx.ActorSystem(), ctx.Self()
	go func() {
		hctx, cancel := context.WithDeadline(stopCtx, res.Pending.Deadline)
		defer cancel()
		err := check(hctx)
		if stopCtx.Err() != nil {
			return // the stage stopped: the trial stays for the next Boot
		}
		sys.Root.Send(self, &healthChecked{res: res, err: err})
	}()
}

// checked confirms the version on trial, or rolls it back and restarts into
// the restored version.
func (a *installerActor) checked(ctx actor.Context, m *healthChecked) {
	p := m.res.Pending
	if m.err == nil {
		if err := m.res.Confirm(); err != nil {
			a.cfg.Logger.Error("installer: confirm", "version", p.Version, "err", err)
			return
		}
		a.cfg.Logger.Info("installer: confirmed", "version", p.Version)
		a.shared.current.Store(&p.Version)
		a.tell(ctx, &Confirmed{Version: p.Version})
		return
	}
	a.cfg.Logger.Error("installer: health check failed; rolling back", "version", p.Version, "err", m.err)
	if err := m.res.RollBack(m.err, a.cfg.Now()); err != nil {
		a.cfg.Logger.Error("installer: roll back", "version", p.Version, "err", err)
		return
	}
	a.rolledBack(ctx, p, m.err, true)
}

// rolledBack reports a rollback and, if restart, restarts into the
// restored version (an exec that returns leaves this process running it,
// or a supervisor's child).
func (a *installerActor) rolledBack(ctx actor.Context, p *Pending, reason error, restart bool) {
	if p.PreviousVersion != "" {
		prev := p.PreviousVersion
		a.shared.current.Store(&prev)
	}
	a.tell(ctx, &RolledBack{Version: p.Version, PreviousVersion: p.PreviousVersion, ManifestID: p.ManifestID, Reason: reason, Restarting: restart})
	if !restart {
		return
	}
	if err := a.cfg.Exec(p.Target, a.cfg.Argv, a.cfg.Env); err != nil {
		a.cfg.Logger.Error("installer: restart into the restored version", "version", p.PreviousVersion, "err", err)
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
