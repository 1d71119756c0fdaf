package engine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// ErrNotNewer is returned by Publish when the record already names the same
// or a newer version for the same app, channel and platform (use Force).
var ErrNotNewer = errors.New("version is not newer than the published one")

// PublishConfig configures Publish. Key and Artifact are required, and
// either Manifest or Version.
type PublishConfig struct {
	// Key is the publisher's secret key.
	Key ed25519.PrivateKey
	// Artifact is the file to publish.
	Artifact string
	// Manifest, when set, is an already signed manifest of Artifact (from
	// `rpe sign`); Version, App, Channel, Platform, ChunkSize and Expires are
	// then taken from it.
	Manifest []byte
	// Version is the release's semver version.
	Version string
	// App defaults to the artifact's base name; Channel to "stable";
	// Platform to GOOS-GOARCH; ChunkSize to the release package's default.
	App, Channel, Platform string
	ChunkSize              int
	// Expires is how long the manifest stays valid; default the release
	// package's default.
	Expires time.Duration
	// Force publishes even when the record names the same or a newer version.
	Force bool
	// Rollout, 1..99, publishes a staged rollout: only that percentage of
	// nodes take the release (release.Entry.Includes); 0 or 100 means all.
	// To raise it, publish the same manifest again (a new manifest is a
	// new release, and picks other nodes).
	Rollout int
	// SharedSecret, in z-base-32, publishes into the private swarm of that
	// secret (see Config.SharedSecret): the record's entry is encrypted and
	// the release is seeded only to peers that prove they know the secret.
	// The record's public entries, and private ones of other targets, stay.
	SharedSecret string

	// StateDir keeps the seeded copy and the node key; default a new
	// temporary directory removed by Stop.
	StateDir string
	// Bootstrap, listen addresses, Logger and UploadRate are as in Config.
	Bootstrap             []string
	ListenDHT, ListenQUIC string
	Logger                *slog.Logger
	UploadRate            int64
	// LookupTimeout bounds the read of the current record; default 10s.
	LookupTimeout time.Duration
}

// Publisher seeds a published release until stopped.
type Publisher struct {
	*Engine
	Manifest *release.SignedManifest
	Packet   *release.SignedPacket
	tmpDir   string
}

// Publish signs the artifact (or takes the signed manifest), merges its entry
// into the publisher's current record, puts the record in the DHT and seeds
// the artifact until Stop. The returned Publisher's Engine serves peers and
// keeps the record alive; its events include Served.
func Publish(ctx context.Context, pc PublishConfig) (*Publisher, error) {
	if pc.Key == nil {
		return nil, errors.New("publish: no secret key")
	}
	if pc.Artifact == "" {
		return nil, errors.New("publish: no artifact")
	}
	h := hooks.From(ctx)
	now := h.Now
	if now == nil {
		now = time.Now
	}
	if pc.LookupTimeout == 0 {
		pc.LookupTimeout = 10 * time.Second
	}
	pub := release.PublicKeyOf(pc.Key)
	priv, err := privateSwarm(pc.SharedSecret, pub)
	if err != nil {
		return nil, fmt.Errorf("publish: SharedSecret: %w", err)
	}
	sm, err := publishManifest(pc, pub, now())
	if err != nil {
		return nil, err
	}
	man := sm.Manifest
	p := &Publisher{Manifest: sm}
	stateDir := pc.StateDir
	if stateDir == "" {
		if stateDir, err = os.MkdirTemp("", "rpe-publish-*"); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		p.tmpDir = stateDir
	}
	cleanup := func() {
		if p.tmpDir != "" {
			os.RemoveAll(p.tmpDir)
		}
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		cleanup()
		return nil, fmt.Errorf("publish: state dir: %w", err)
	}
	s := &settings{
		Config: Config{
			PublisherKey: pub.String(), App: man.App, Channel: man.Channel, Platform: man.Platform,
			CurrentVersion: man.Version.String(), Target: pc.Artifact, StateDir: stateDir,
			Bootstrap: pc.Bootstrap, ListenDHT: pc.ListenDHT, ListenQUIC: pc.ListenQUIC,
			Logger: pc.Logger, UploadRate: pc.UploadRate, PollInterval: 5 * time.Minute,
			// Never used (seedOnly), but never the running process either.
			Exec: func(string, []string, []string) error { return nil },
		},
		hooks: h, now: now, pub: pub, version: man.Version, seedOnly: true, private: priv,
		target: release.Target{App: man.App, Channel: man.Channel, Platform: man.Platform},
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.ListenDHT == "" {
		s.ListenDHT = ":0"
	}
	if s.ListenQUIC == "" {
		s.ListenQUIC = ":0"
	}
	// The seeded copy goes into the store first, checked chunk by chunk, so
	// the node never serves bytes that do not match what it signs.
	st, err := openStoreWith(s, sm, pc.Artifact)
	if err != nil {
		cleanup()
		return nil, err
	}
	st.Close()
	// The record: merge into the current one, so other apps' entries stay.
	netNode, err := network.New(ctx, network.Config{
		DHTConn: h.DHTConn, QUICConn: h.QUICConn, ListenDHT: s.ListenDHT, ListenQUIC: s.ListenQUIC,
		Bootstrap: s.Bootstrap, Logger: s.Logger, QueryResendDelay: h.QueryResendDelay,
	})
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("publish: %w", err)
	}
	pkt, err := publishRecord(ctx, pc, netNode, sm, now(), priv)
	if err != nil {
		netNode.Close()
		cleanup()
		return nil, err
	}
	p.Packet = pkt
	if err := state.SaveRecord(stateDir, pkt); err != nil {
		netNode.Close()
		cleanup()
		return nil, fmt.Errorf("publish: %w", err)
	}
	e, err := startNodeOn(ctx, s, netNode)
	if err != nil {
		netNode.Close()
		cleanup()
		return nil, err
	}
	p.Engine = e
	return p, nil
}

// Stop stops seeding and removes a temporary state directory.
func (p *Publisher) Stop(ctx context.Context) error {
	err := p.Engine.Stop(ctx)
	if p.tmpDir != "" {
		os.RemoveAll(p.tmpDir)
	}
	return err
}

func publishManifest(pc PublishConfig, pub release.PublicKey, now time.Time) (*release.SignedManifest, error) {
	if pc.Manifest != nil {
		sm, err := release.ParseManifest(pc.Manifest, pub, release.Limits{})
		if err != nil {
			return nil, fmt.Errorf("publish: manifest: %w", err)
		}
		f, err := os.Open(pc.Artifact)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		defer f.Close()
		if err := release.VerifyFile(f, sm.Manifest); err != nil {
			return nil, fmt.Errorf("publish: %s does not match its manifest: %w", pc.Artifact, err)
		}
		return sm, nil
	}
	if pc.Version == "" {
		return nil, errors.New("publish: no version (give Version or a signed Manifest)")
	}
	f, err := os.Open(pc.Artifact)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	defer f.Close()
	opts := release.BuildOptions{
		App: pc.App, Channel: pc.Channel, Platform: pc.Platform, Version: pc.Version,
		ChunkSize: pc.ChunkSize, Created: now,
	}
	if opts.App == "" {
		opts.App = appFromPath(pc.Artifact)
	}
	if pc.Expires > 0 {
		opts.Expires = now.Add(pc.Expires)
	}
	m, err := release.BuildManifest(f, opts)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	sm, err := release.SignManifest(m, pc.Key)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	return sm, nil
}

func publishRecord(ctx context.Context, pc PublishConfig, node *network.Node, sm *release.SignedManifest, now time.Time, priv *release.Private) (*release.SignedPacket, error) {
	bctx, cancel := context.WithTimeout(ctx, pc.LookupTimeout)
	defer cancel()
	// Join in the background: the record operations do not wait for it.
	node.Join()
	pub := release.PublicKeyOf(pc.Key)
	prev, _, err := node.GetRecord(bctx, pub)
	if err != nil && !errors.Is(err, network.ErrNotFound) {
		return nil, fmt.Errorf("publish: read current record: %w", err)
	}
	man := sm.Manifest
	target := release.Target{App: man.App, Channel: man.Channel, Platform: man.Platform}
	if prev != nil && !pc.Force {
		lookup := prev.Lookup
		if priv != nil {
			lookup = func(t release.Target) (release.Entry, error) { return prev.LookupSealed(t, priv) }
		}
		if e, err := lookup(target); err == nil && !man.Version.GreaterThan(e.Version) {
			return nil, fmt.Errorf("publish: %w: the record names %s for %s/%s/%s, this is %s (use --force)",
				ErrNotNewer, e.Version, man.App, man.Channel, man.Platform, man.Version)
		}
	}
	if pc.Rollout < 0 || pc.Rollout > 100 {
		return nil, fmt.Errorf("publish: PublishConfig.Rollout %d: want a percentage, 0..100", pc.Rollout)
	}
	seq := release.SeqNow(now)
	if prev != nil && seq <= prev.Seq {
		seq = prev.Seq + 1
	}
	entry := release.Entry{App: man.App, Channel: man.Channel, Platform: man.Platform, Version: man.Version, ManifestID: sm.ID, Size: man.Size,
		// The record vouches for the release as long as its manifest does.
		Expires: man.Expires, Rollout: pc.Rollout}
	var pkt *release.SignedPacket
	if priv != nil {
		pkt, err = release.MergeSealedEntry(pc.Key, prev, entry, seq, priv, nil)
	} else {
		pkt, err = release.MergeEntry(pc.Key, prev, entry, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	pctx, cancel2 := context.WithTimeout(ctx, 30*time.Second)
	defer cancel2()
	if err := node.PutRecord(pctx, pkt); err != nil {
		return nil, fmt.Errorf("publish: put record: %w", err)
	}
	return pkt, nil
}
