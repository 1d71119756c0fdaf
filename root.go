package engine

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/actors/downloader"
	"github.com/rpe-project/engine/actors/installer"
	"github.com/rpe-project/engine/actors/resolver"
	"github.com/rpe-project/engine/actors/swarm"
	"github.com/rpe-project/engine/actors/verifier"
	"github.com/rpe-project/engine/internal/delta"
	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// rootActor owns the five stages of one node and routes between them.
type rootActor struct {
	e       *Engine
	nodeKey ed25519.PrivateKey

	resolver, swarm, downloader, verifier, installer *actor.PID
	found                                            release.Entry
	// pending is the install handed to the installer and not yet answered;
	// a restarted installer asks for it again (ResendInstall), since a
	// restarted actor loses the message it failed on.
	pending     *installer.Install
	downloading bool
	done        release.ManifestID // the release last verified
	// skipped is the staged release last found not rolled out to this
	// node, and at what percentage, so NotRolledOut is said once.
	skipped        release.ManifestID
	skippedRollout int
}

func newRoot(e *Engine, nodeKey ed25519.PrivateKey) *rootActor {
	return &rootActor{e: e, nodeKey: nodeKey}
}

func (r *rootActor) hook(stage string) func(any) {
	h := r.e.cfg.hooks.Fault
	if h == nil {
		return nil
	}
	return func(m any) { h(stage, m) }
}

func (r *rootActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.e.rootPID.Store(ctx.Self())
		r.spawn(ctx)
	case *resolver.ReleaseFound:
		e := m.Entry
		if r.e.cfg.seedOnly {
			// A publisher seeds; it does not follow newer releases.
			return
		}
		if e.ManifestID == r.done || (r.downloading && e.ManifestID == r.found.ManifestID) {
			// Already fetched or being fetched: a restarted resolver
			// offers its held release again.
			return
		}
		if !e.Includes(r.nodeKey.Public().(ed25519.PublicKey)) {
			// A staged rollout that has not reached this node yet: a later
			// record with a higher percentage may bring it in.
			if r.skipped != e.ManifestID || r.skippedRollout != e.Rollout {
				r.skipped, r.skippedRollout = e.ManifestID, e.Rollout
				r.e.cfg.Logger.Info("engine: release not rolled out to this node yet", "version", e.Version, "rollout", e.Rollout)
				r.e.events.emit(NotRolledOut{Version: e.Version.String(), ManifestID: e.ManifestID, Rollout: e.Rollout})
			}
			return
		}
		if failed, _ := installer.IsFailed(r.e.cfg.StateDir, e.ManifestID.String()); failed {
			r.e.events.emit(Refused{What: RefusedRelease, Reason: fmt.Errorf("%s (%s) was rolled back here before", e.Version, e.ManifestID.Short())})
			return
		}
		r.found = e
		r.downloading = true
		r.e.update(func(s *Status) {
			s.Latest = e.Version.String()
			s.ManifestID = e.ManifestID.String()
			s.Phase = PhaseDownloading
		})
		r.e.events.emit(ReleaseFound{Version: e.Version.String(), ManifestID: e.ManifestID, Size: e.Size})
		ctx.Send(r.downloader, &downloader.Fetch{Entry: e})
	case *resolver.RecordUpdated:
		r.e.update(func(s *Status) { s.RecordSigned, s.Stale = m.Packet.Time(), false })
		if r.swarm != nil {
			ctx.Send(r.swarm, &swarm.Gossip{Packet: m.Packet})
		}
	case *resolver.KeyRotated:
		k := m.New
		r.e.trusted.Store(&k)
		r.e.update(func(s *Status) { s.PublicKey = m.New.String() })
		r.e.events.emit(KeyRotated{Old: m.Old.String(), New: m.New.String()})
	case *resolver.Stale:
		r.e.update(func(s *Status) { s.Stale = true })
		r.e.events.emit(Stale{Signed: m.Signed, Age: m.Age})
	case *resolver.RecordRefused:
		r.e.events.emit(Refused{What: RefusedRecord, Peer: m.From, Reason: m.Err})
	case *swarm.RecordGossiped:
		if r.resolver != nil {
			ctx.Send(r.resolver, &resolver.Offer{Packet: m.Packet, From: m.From.String()})
		}
	case *swarm.Served:
		r.e.update(func(s *Status) { s.Uploaded += int64(m.Bytes); s.Served++ })
		r.e.events.emit(Served{Peer: m.Peer.String(), ManifestID: m.ID, Index: m.Index, Bytes: m.Bytes, Path: m.Path, Addr: m.Addr})
	case *downloader.Progress:
		r.e.update(func(s *Status) {
			s.Verified, s.Total, s.Peers, s.Fetched, s.Wasted = m.Verified, m.Total, m.Peers, m.Fetched, m.Wasted
		})
		r.e.events.emit(Progress{ManifestID: m.ID, Verified: m.Verified, Total: m.Total, Bytes: m.Bytes, Size: m.Size,
			Peers: m.Peers, Fetched: m.Fetched, Wasted: m.Wasted})
	case *downloader.Reused:
		r.e.update(func(s *Status) { s.Reused += m.Bytes; s.Verified, s.Total = m.Verified, m.Total })
		r.e.events.emit(Reused{ManifestID: m.ID, Chunks: m.Chunks, Bytes: m.Bytes, Verified: m.Verified, Total: m.Total})
	case *downloader.ManifestAccepted:
		r.e.update(func(s *Status) { s.Total = m.Manifest.Manifest.NumChunks() })
	case *downloader.ManifestRefused:
		r.downloading = false
		r.e.update(func(s *Status) { s.Phase = PhaseIdle })
		r.e.events.emit(Refused{What: RefusedManifest, Reason: m.Err})
	case *downloader.ChunkRefused:
		r.e.events.emit(Refused{What: RefusedChunk, Peer: m.Peer.String(), Reason: m.Err})
	case *downloader.Failed:
		r.e.events.emit(Failed{Stage: StageDownloader, Err: m.Err})
	case *downloader.Completed:
		r.downloading = false
		if m.Manifest.ID == r.done {
			return // a restarted downloader finished it again
		}
		r.done = m.Manifest.ID
		r.pending = &installer.Install{Manifest: m.Manifest, Path: m.Path}
		man := m.Manifest.Manifest
		r.e.update(func(s *Status) { s.Phase = PhaseVerified })
		r.e.events.emit(Verified{Version: man.Version.String(), ManifestID: m.Manifest.ID, Path: m.Path})
		ctx.Send(r.resolver, &resolver.Accepted{Version: man.Version})
		ctx.Send(r.installer, &installer.Install{Manifest: m.Manifest, Path: m.Path})
	case *downloader.ResendFetch:
		// A restarted downloader asks for what it may have lost.
		if r.downloading && m.Fetching != r.found.ManifestID {
			ctx.Send(r.downloader, &downloader.Fetch{Entry: r.found})
		}
	case *installer.ResendInstall:
		if r.pending != nil {
			ctx.Send(r.installer, r.pending)
		}
	case *installer.Scheduled:
		r.e.update(func(s *Status) { s.Phase = PhaseScheduled })
		r.e.events.emit(Scheduled{Version: m.Manifest.Manifest.Version.String(), At: m.At})
	case *installer.Installed:
		r.pending = nil
		r.e.update(func(s *Status) { s.Phase = PhaseInstalled })
		r.e.events.emit(Installed{Version: m.Manifest.Manifest.Version.String(), ManifestID: m.Manifest.ID, Target: m.Target, Restarting: m.Restarting})
	case *installer.InstallFailed:
		r.pending = nil
		r.e.events.emit(Failed{Stage: StageInstaller, Err: m.Err})
	case *installer.RolledBack:
		r.e.events.emit(rolledBackEvent(m))
	case *installer.Confirmed:
		r.e.events.emit(Confirmed{Version: m.Version})
	case *installer.Ready:
		r.e.events.emit(UpdateReady{Version: m.Manifest.Manifest.Version.String(), ManifestID: m.Manifest.ID})
	case *applyRequest:
		ctx.RequestWithCustomSender(r.installer, &installer.Apply{}, ctx.Sender())
	}
}

func (r *rootActor) spawn(ctx actor.Context) {
	s := r.e.cfg
	log := s.Logger.With("node", nodeID(r.nodeKey).String())
	name := func(props *actor.Props, stage string) *actor.PID {
		// Named children let the supervisor say which stage failed.
		pid, err := ctx.SpawnNamed(props, stage)
		if err != nil {
			panic(fmt.Sprintf("spawn %s: %v", stage, err))
		}
		return pid
	}
	r.verifier = name((verifier.Props(verifier.Config{
		Policy: verifier.Policy{
			PublisherKey: s.pub, Target: s.target, Current: s.version,
			Floor: func() (*semver.Version, error) { return state.Highest(s.StateDir) },
			Key:   func() release.PublicKey { return *r.e.trusted.Load() },
		},
		Now: s.now, Logger: log, FaultHook: r.hook("verifier"),
	})), "verifier")
	r.installer = name((installer.Props(installer.Config{
		Target: s.Target, StateDir: s.StateDir, Policy: s.Apply.installer(), Exec: installer.Execer(s.Exec), PreviousVersion: s.version.String(),
		HealthCheck: s.HealthCheck, Now: s.now, Logger: log, FaultHook: r.hook("installer"),
	})), "installer")
	r.swarm = name((swarm.Props(swarm.Config{
		Node: r.e.node, Store: r.e.store, NodeKey: r.nodeKey, UploadRate: s.UploadRate,
		// Chunks and manifests as large as a manifest may declare.
		Limits:       wire.Limits{MaxChunk: release.MaxChunkSize, MaxManifest: release.MaxManifestSize},
		FindInterval: s.hooks.FindInterval, Logger: log, FaultHook: r.hook("swarm"),
		Private: s.private,
		Topic:   swarm.MeshTopic(s.pub, s.App),
	})), "swarm")
	r.downloader = name((downloader.Props(downloader.Config{
		Store: r.e.store, Swarm: r.swarm, Verifier: r.verifier, StateDir: s.StateDir,
		ChunkTimeout: s.hooks.ChunkTimeout, DownloadRate: s.DownloadRate, Logger: log, FaultHook: r.hook("downloader"),
		Reuse: reuser(s.reuseFrom, log),
	})), "downloader")
	r.resolver = name((resolver.Props(resolver.Config{
		Node: r.e.node, PublisherKey: s.pub, Target: s.target, Current: s.version,
		StateDir: s.StateDir, PollInterval: s.PollInterval, NoPoll: s.NoPoll, Logger: log, FaultHook: r.hook("resolver"),
		StaleAfter: s.StaleAfter, Now: s.now, Private: s.private,
	})), "resolver")
}

// reuser copies the chunks of a new release that the files from hold (see
// internal/delta); nil when there is nothing to reuse from.
func reuser(from []string, log *slog.Logger) func(*store.Release) ([]int, int64) {
	if len(from) == 0 {
		return nil
	}
	return func(rel *store.Release) ([]int, int64) {
		res, err := delta.Reuse(rel, from...)
		if err != nil {
			log.Warn("engine: reuse local chunks", "err", err)
		}
		log.Debug("engine: reused local chunks", "release", rel.ID().Short(), "chunks", len(res.Chunks), "bytes", res.Bytes, "scanned", res.Scanned)
		return res.Chunks, res.Bytes
	}
}

// supervisor restarts a failed stage alone, after a backoff that grows with
// its recent failures, and stops it for good after maxRestarts in window.
type supervisor struct {
	e *Engine

	mu       sync.Mutex
	failures map[string][]time.Time
}

const (
	maxRestarts    = 10
	restartWindow  = time.Minute
	initialBackoff = 10 * time.Millisecond
)

func newSupervisor(e *Engine) *supervisor {
	return &supervisor{e: e, failures: map[string][]time.Time{}}
}

func (s *supervisor) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, msg any) {
	now := time.Now()
	s.mu.Lock()
	recent := s.failures[child.Id][:0]
	for _, t := range s.failures[child.Id] {
		if now.Sub(t) < restartWindow {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	s.failures[child.Id] = recent
	n := len(recent)
	s.mu.Unlock()

	name := stageName(child.Id)
	stage, _ := stageOf(name)
	if n > maxRestarts {
		s.e.cfg.Logger.Error("engine: stage failed too often; stopped", "stage", name, "reason", reason)
		s.e.update(func(st *Status) { st.Stopped = append(st.Stopped, stage) })
		s.e.events.emit(Failed{Stage: stage, Err: fmt.Errorf("%w: %s after %d failures in %s: %v", ErrStageStopped, name, n-1, restartWindow, reason)})
		sup.StopChildren(child)
		return
	}
	s.e.cfg.Logger.Warn("engine: stage restarted", "stage", name, "reason", reason)
	s.e.update(func(st *Status) { st.Restarts++ })
	s.e.events.emit(StageRestarted{Stage: stage, Reason: reason})
	backoff := initialBackoff << (n - 1)
	// The restarted stage re-establishes what it needs by itself (its
	// files, its requests' timeouts, its peers); nobody is told.
	time.AfterFunc(backoff, func() { sup.RestartChildren(child) })
}

// stageName recovers the stage from a child PID's id, "<root>/<stage>".
func stageName(id string) string { return path.Base(id) }
