package installer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/release"
)

// actorStage is an installer actor under a parent that hands its replies to
// a channel.
type actorStage struct {
	sys     *actor.ActorSystem
	parent  *actor.PID
	replies chan any
}

func newActorStage(t *testing.T, cfg Config) *actorStage {
	t.Helper()
	s := &actorStage{replies: make(chan any, 16)}
	s.sys = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	var child *actor.PID
	ready := make(chan struct{})
	s.parent = s.sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			child = ctx.Spawn(Props(cfg))
			close(ready)
		case *Install:
			ctx.Send(child, m)
		case *Installed, *InstallFailed, *Scheduled:
			s.replies <- m
		}
	}))
	<-ready
	t.Cleanup(func() {
		if err := s.sys.Root.StopFuture(s.parent).Wait(); err != nil {
			t.Errorf("stop: %v", err)
		}
		s.sys.Shutdown()
	})
	return s
}

func (s *actorStage) install(t *testing.T, m *Install) any {
	t.Helper()
	s.sys.Root.Send(s.parent, m)
	select {
	case r := <-s.replies:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no reply from the installer")
		return nil
	}
}

// signedFor builds and signs a manifest for data at version.
func signedFor(t *testing.T, data []byte, version string) *release.SignedManifest {
	t.Helper()
	sk, err := release.GenerateSecretKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m, err := release.BuildManifest(bytes.NewReader(data), release.BuildOptions{App: "app", Version: version, Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := release.SignManifest(m, sk)
	if err != nil {
		t.Fatal(err)
	}
	return sm
}

// TestActorOnRestart drives the installer stage under OnRestart, as the
// engine does: each install swaps and puts the new version on trial without
// restarting, and a second install before a restart keeps the confirmed
// backup.
func TestActorOnRestart(t *testing.T) {
	f := newThreeVersions(t)
	stateDir := filepath.Join(f.stateDir, "state")
	backup := BackupPath(stateDir, f.target)
	s := newActorStage(t, Config{
		Target: f.target, StateDir: stateDir, Policy: Policy{Kind: OnRestart}, PreviousVersion: "1.0.0",
		HealthDeadline: 45 * time.Second, Now: func() time.Time { return t0 },
		Exec: func(string, []string, []string) error {
			t.Error("an install on restart executed the new version")
			return nil
		},
	})

	sm11 := signedFor(t, f.new, "1.1.0")
	in, ok := s.install(t, &Install{Manifest: sm11, Path: f.staged}).(*Installed)
	if !ok || in.Restarting || in.Backup != backup {
		t.Fatalf("first install: %#v", in)
	}
	p, err := ReadPending(stateDir)
	if err != nil || p == nil {
		t.Fatalf("no marker after an install on restart: %v", err)
	}
	want := Pending{Version: "1.1.0", PreviousVersion: "1.0.0", ManifestID: sm11.ID.String(),
		Target: f.target, Backup: backup, HealthTimeout: 45 * time.Second,
		Size: int64(len(f.new)), SHA256: hex.EncodeToString(sm11.Manifest.FileHash[:])}
	if *p != want {
		t.Fatalf("marker\n got %+v\nwant %+v", *p, want)
	}
	assertTarget(t, f.swapFixture, f.new, "1.1")

	sm12 := signedFor(t, f.v12, "1.2.0")
	if in, ok := s.install(t, &Install{Manifest: sm12, Path: f.staged12Path}).(*Installed); !ok || in.Restarting {
		t.Fatalf("second install: %#v", in)
	}
	p, err = ReadPending(stateDir)
	if err != nil || p == nil || p.Version != "1.2.0" || p.PreviousVersion != "1.0.0" ||
		p.ManifestID != sm12.ID.String() || !p.ReplacedUnconfirmed {
		t.Fatalf("marker after the second install: %+v, %v", p, err)
	}
	if !bytes.Equal(readFile(t, backup), f.old) {
		t.Fatal("the backup is not the confirmed 1.0")
	}
	assertTarget(t, f.swapFixture, f.v12, "1.2")

	// The restart: 1.2 is on trial, and its failure brings 1.0 back.
	r := mustBoot(t, stateDir, "1.2.0", t0.Add(time.Hour), BootTrial)
	if !r.Pending.Deadline.Equal(t0.Add(time.Hour + 45*time.Second)) {
		t.Fatalf("deadline %v", r.Pending.Deadline)
	}
	if err := r.RollBack(errInjected, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	assertTarget(t, f.swapFixture, f.old, "1.0")
	if bad, _ := IsFailed(stateDir, sm12.ID.String()); !bad {
		t.Error("1.2 not listed as failed")
	}
	if bad, _ := IsFailed(stateDir, sm11.ID.String()); bad {
		t.Error("1.1, which never ran, listed as failed")
	}
}
