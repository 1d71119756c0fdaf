package engine

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/rpe-project/engine/internal/hooks"
	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/internal/store"
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
	// App defaults to the artifact's file name up to the first dot,
	// lower-cased (as release.AppNameOf); Channel to "stable";
	// Platform to GOOS-GOARCH; ChunkSize to the release package's default.
	App, Channel, Platform string
	ChunkSize              int
	// Chunking is how the artifact is cut: release.ChunkFixed (the
	// default) or release.ChunkContent, whose chunks a later release
	// shares even where bytes were inserted before them (ChunkSize is then
	// the largest chunk; see docs/FORMATS.md).
	Chunking release.Chunker
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
	priv, err := privateSwarm(pc.SharedSecret)
	if err != nil {
		return nil, fmt.Errorf("publish: SharedSecret: %w", err)
	}
	sm, err := publishManifest(pc, pub, now())
	if err != nil {
		return nil, err
	}
	p := &Publisher{}
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
	logger := pc.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	listenDHT, listenQUIC := cmp.Or(pc.ListenDHT, ":0"), cmp.Or(pc.ListenQUIC, ":0")
	netNode, err := network.New(ctx, network.Config{
		DHTConn: h.DHTConn, QUICConn: h.QUICConn, ListenDHT: listenDHT, ListenQUIC: listenQUIC,
		Bootstrap: pc.Bootstrap, Logger: logger, QueryResendDelay: h.QueryResendDelay, DHTReadOnly: h.DHTReadOnly,
	})
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("publish: %w", err)
	}
	fail := func(err error) (*Publisher, error) {
		netNode.Close()
		cleanup()
		return nil, err
	}
	// The current record first: the version guard, and a restarted
	// publisher of the same release seeds the manifest it signed before.
	prev, err := currentRecord(ctx, pc, netNode)
	if err != nil {
		return fail(err)
	}
	if sm, err = guardVersion(pc, prev, priv, sm, stateDir, logger); err != nil {
		return fail(err)
	}
	man := sm.Manifest
	p.Manifest = sm
	s := &settings{
		Config: Config{
			PublisherKey: pub.String(), App: man.App, Channel: man.Channel, Platform: man.Platform,
			CurrentVersion: man.Version.String(), Target: pc.Artifact, StateDir: stateDir,
			Bootstrap: pc.Bootstrap, ListenDHT: listenDHT, ListenQUIC: listenQUIC,
			Logger: logger, UploadRate: pc.UploadRate, PollInterval: 5 * time.Minute,
			// Never used (seedOnly), but never the running process either.
			Exec: func(string, []string, []string) error { return nil },
		},
		hooks: h, now: now, pub: pub, version: man.Version, seedOnly: true, private: priv,
		target: release.Target{App: man.App, Channel: man.Channel, Platform: man.Platform},
	}
	// The seeded copy goes into the store before the record names it,
	// checked chunk by chunk, so the node never serves bytes that do not
	// match what it signs.
	st, err := openStoreWith(s, sm, pc.Artifact)
	if err != nil {
		return fail(err)
	}
	st.Close()
	// The record: merge into the current one, so other apps' entries stay.
	pkt, err := putRecord(ctx, pc, netNode, prev, sm, now(), priv)
	if err != nil {
		return fail(err)
	}
	p.Packet = pkt
	if err := state.SaveRecord(stateDir, pkt); err != nil {
		return fail(fmt.Errorf("publish: %w", err))
	}
	e, err := startNodeOn(ctx, s, netNode)
	if err != nil {
		return fail(err)
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
		ChunkSize: pc.ChunkSize, Chunker: pc.Chunking, Created: now,
	}
	if opts.App == "" {
		opts.App = release.AppNameOf(pc.Artifact)
		if err := release.ValidateName("app", opts.App); err != nil {
			return nil, fmt.Errorf("publish: %w (the default app name is the artifact's file name up to the first dot; set App)", err)
		}
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

// currentRecord joins the DHT and reads the publisher's current record; nil
// when there is none.
func currentRecord(ctx context.Context, pc PublishConfig, node *network.Node) (*release.SignedPacket, error) {
	bctx, cancel := context.WithTimeout(ctx, pc.LookupTimeout)
	defer cancel()
	// Join in the background: the record operations do not wait for it.
	node.Join()
	prev, _, err := node.GetRecord(bctx, release.PublicKeyOf(pc.Key))
	if err != nil && !errors.Is(err, network.ErrNotFound) {
		return nil, fmt.Errorf("publish: read current record: %w", err)
	}
	return prev, nil
}

// guardVersion refuses a release that is not newer than the one the record
// names for its target, unless Force. The release the record names already
// is not refused: its manifest, given again or kept in the state directory
// since it was published, is seeded again (a publisher restart needs no
// Force, which would also lift the guard).
func guardVersion(pc PublishConfig, prev *release.SignedPacket, priv *release.Private, sm *release.SignedManifest, stateDir string, log *slog.Logger) (*release.SignedManifest, error) {
	if prev == nil || pc.Force {
		return sm, nil
	}
	man := sm.Manifest
	lookup := prev.Lookup
	if priv != nil {
		lookup = func(t release.Target) (release.Entry, error) { return prev.LookupSealed(t, priv) }
	}
	e, err := lookup(man.Target())
	if err != nil || man.Version.GreaterThan(e.Version) {
		return sm, nil
	}
	if e.ManifestID == sm.ID {
		return sm, nil
	}
	if man.Version.Equal(e.Version) {
		if old := storedManifest(stateDir, release.PublicKeyOf(pc.Key), e.ManifestID, pc.Artifact, log); old != nil {
			return old, nil
		}
	}
	hint := ""
	if man.Version.Equal(e.Version) {
		hint = "; to seed that release again, give the state dir it was published with or its signed manifest"
	}
	return nil, fmt.Errorf("publish: %w: the record names %s for %s/%s/%s, this is %s%s (use --force)",
		ErrNotNewer, e.Version, man.App, man.Channel, man.Platform, man.Version, hint)
}

// storedManifest returns the manifest id kept in stateDir's store when the
// artifact still matches it, else nil.
func storedManifest(stateDir string, pub release.PublicKey, id release.ManifestID, artifact string, log *slog.Logger) *release.SignedManifest {
	st, err := store.Open(stateDir, pub, release.Limits{}, log)
	if err != nil {
		return nil
	}
	defer st.Close()
	rel := st.Get(id)
	if rel == nil {
		return nil
	}
	old := rel.Manifest()
	f, err := os.Open(artifact)
	if err != nil {
		return nil
	}
	defer f.Close()
	if release.VerifyFile(f, old.Manifest) != nil {
		return nil
	}
	return old
}

// putRecord merges the release's entry into the current record under a
// higher sequence number and puts it in the DHT.
func putRecord(ctx context.Context, pc PublishConfig, node *network.Node, prev *release.SignedPacket, sm *release.SignedManifest, now time.Time, priv *release.Private) (*release.SignedPacket, error) {
	man := sm.Manifest
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
	var err error
	if priv != nil {
		pkt, err = release.MergeSealedEntry(pc.Key, prev, entry, seq, priv, nil)
	} else {
		pkt, err = release.MergeEntry(pc.Key, prev, entry, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := node.PutRecord(pctx, pkt); err != nil {
		return nil, fmt.Errorf("publish: put record: %w", err)
	}
	return pkt, nil
}
