package verifier

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/release"
)

// Errors reported in rejections, matched with errors.Is.
var (
	ErrNotNewer       = errors.New("version is not newer than the running one")
	ErrBelowFloor     = errors.New("version is below the highest ever accepted")
	ErrEntryMismatch  = errors.New("manifest does not match the signed record entry")
	ErrFileHash       = errors.New("staging file does not match the release")
	ErrNotAllVerified = errors.New("not every chunk is verified")
)

// Config configures the verifier stage.
type Config struct {
	Policy Policy
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the stage's logs; nil is silent.
	Logger *slog.Logger
	// FaultHook, when set, is called with every message before it is handled;
	// tests use it to inject panics. Nil in production.
	FaultHook func(msg any)
}

// seen is the set of chunks of one release that this verifier checked from
// memory, as they arrived. It lives only as long as the actor: after a
// restart it is empty and Finish reads every chunk back.
type seen struct {
	chunk []bool
	n     int // chunks set in chunk
}

type verifierActor struct {
	cfg  Config
	seen map[release.ManifestID]*seen
}

// Props returns the props that spawn a verifier.
func Props(cfg Config) *actor.Props {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &verifierActor{cfg: cfg, seen: map[release.ManifestID]*seen{}}
	})
}

func (v *verifierActor) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if v.cfg.FaultHook != nil {
		v.cfg.FaultHook(msg)
	}
	switch m := msg.(type) {
	case *CheckManifest:
		sm, err := v.checkManifest(m)
		if err != nil {
			ctx.Respond(&ManifestRejected{Entry: m.Entry, Peer: m.Peer, Err: err})
			return
		}
		ctx.Respond(&ManifestAccepted{Manifest: sm, Peer: m.Peer})
	case *CheckChunk:
		id := m.Manifest.ID
		if err := m.Manifest.Manifest.VerifyChunk(m.Index, m.Data); err != nil {
			ctx.Respond(&ChunkRejected{ID: id, Index: m.Index, Peer: m.Peer, Size: len(m.Data), Token: m.Token, Err: err})
			return
		}
		v.mark(m)
		ctx.Respond(&ChunkVerified{ID: id, Index: m.Index, Peer: m.Peer, Size: len(m.Data), Token: m.Token})
	case *Finish:
		err := v.finish(m)
		delete(v.seen, m.Manifest.ID)
		if err != nil {
			ctx.Respond(&FileRejected{Manifest: m.Manifest, Err: err})
			return
		}
		ctx.Respond(&FileVerified{Manifest: m.Manifest, StagingPath: m.StagingPath})
	}
}

func (v *verifierActor) checkManifest(m *CheckManifest) (*release.SignedManifest, error) {
	p := v.cfg.Policy
	key := p.PublisherKey
	if p.Key != nil {
		key = p.Key()
	}
	sm, err := release.ParseManifest(m.Raw, key, p.Limits)
	if err != nil {
		return nil, err
	}
	if sm.ID != m.Entry.ManifestID {
		return nil, fmt.Errorf("%w: manifest %s, record names %s", ErrEntryMismatch, sm.ID.Short(), m.Entry.ManifestID.Short())
	}
	man := sm.Manifest
	if err := man.Check(p.Target, v.cfg.Now()); err != nil {
		return nil, err
	}
	if m.Entry.Version != nil && !man.Version.Equal(m.Entry.Version) {
		return nil, fmt.Errorf("%w: manifest version %s, record names %s", ErrEntryMismatch, man.Version, m.Entry.Version)
	}
	if m.Entry.Size != 0 && man.Size != m.Entry.Size {
		return nil, fmt.Errorf("%w: manifest size %d, record names %d", ErrEntryMismatch, man.Size, m.Entry.Size)
	}
	if p.Current != nil && !man.Version.GreaterThan(p.Current) {
		return nil, fmt.Errorf("%w: %s, running %s", ErrNotNewer, man.Version, p.Current)
	}
	if p.Floor != nil {
		f, err := p.Floor()
		if err != nil {
			return nil, fmt.Errorf("version floor unreadable, refusing every release: %w", err)
		}
		if f != nil && man.Version.LessThan(f) {
			return nil, fmt.Errorf("%w: %s < %s", ErrBelowFloor, man.Version, f)
		}
	}
	return sm, nil
}

// mark records that chunk m.Index was checked from the bytes written.
func (v *verifierActor) mark(m *CheckChunk) {
	id := m.Manifest.ID
	st := v.seen[id]
	if st == nil {
		st = &seen{chunk: make([]bool, m.Manifest.Manifest.NumChunks())}
		v.seen[id] = st
	}
	if !st.chunk[m.Index] {
		st.chunk[m.Index] = true
		st.n++
	}
}

// finish checks that the staging file is exactly the release. Chunks this
// verifier checked as they arrived are not hashed again; any other chunk
// (checked before a restart, or by an earlier process whose download this
// one resumed) is read back from the staging file and checked now. So a
// restart never weakens the check, and a download seen whole costs one stat.
func (v *verifierActor) finish(m *Finish) error {
	man := m.Manifest.Manifest
	fail := func(err error) error {
		return fmt.Errorf("whole-file check of %s: %w", m.Manifest.ID.Short(), err)
	}
	f, err := os.Open(m.StagingPath)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if fi.Size() < man.Size {
		return fail(fmt.Errorf("%w: staging file has %d of %d bytes", ErrNotAllVerified, fi.Size(), man.Size))
	}
	if fi.Size() > man.Size {
		return fail(fmt.Errorf("%w: staging file has %d bytes, the release %d", ErrFileHash, fi.Size(), man.Size))
	}
	st := v.seen[m.Manifest.ID]
	if st != nil && st.n == man.NumChunks() {
		return nil
	}
	buf := make([]byte, min(int64(man.ChunkSize), man.Size))
	for i := range man.NumChunks() {
		if st != nil && st.chunk[i] {
			continue
		}
		b := buf[:man.ChunkLen(i)]
		if _, err := f.ReadAt(b, man.ChunkOffset(i)); err != nil {
			return fail(fmt.Errorf("chunk %d: %w", i, err))
		}
		if err := man.VerifyChunk(i, b); err != nil {
			return fail(fmt.Errorf("%w: %w", ErrFileHash, err))
		}
	}
	return nil
}
