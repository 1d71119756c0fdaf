package verifier

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
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
	ErrFileHash       = errors.New("whole-file SHA-256 mismatch")
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

// prefix is the running whole-file hash over the verified prefix of one file.
type prefix struct {
	h        hash.Hash
	next     int          // index of the first chunk not yet folded in
	verified map[int]bool // verified chunks at or after next
}

type verifierActor struct {
	cfg      Config
	prefixes map[release.ManifestID]*prefix
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
		return &verifierActor{cfg: cfg, prefixes: map[release.ManifestID]*prefix{}}
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
		v.fold(m)
		ctx.Respond(&ChunkVerified{ID: id, Index: m.Index, Peer: m.Peer, Size: len(m.Data), Token: m.Token})
	case *Finish:
		err := v.finish(m)
		delete(v.prefixes, m.Manifest.ID)
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

// fold adds a verified chunk to the running hash, and any chunks after it
// that were verified earlier (read back from the staging file).
func (v *verifierActor) fold(m *CheckChunk) {
	id := m.Manifest.ID
	p := v.prefixes[id]
	if p == nil {
		p = &prefix{h: sha256.New(), verified: map[int]bool{}}
		v.prefixes[id] = p
	}
	if m.Index < p.next {
		return
	}
	if m.Index != p.next {
		p.verified[m.Index] = true
		return
	}
	p.h.Write(m.Data)
	p.next++
	if len(p.verified) == 0 {
		return
	}
	f, err := os.Open(m.StagingPath)
	if err != nil {
		// The final check reads back whatever is missing; nothing is lost.
		v.cfg.Logger.Debug("verifier: read back staging", "err", err)
		return
	}
	defer f.Close()
	man := m.Manifest.Manifest
	for p.verified[p.next] {
		delete(p.verified, p.next)
		sec := io.NewSectionReader(f, man.ChunkOffset(p.next), int64(man.ChunkLen(p.next)))
		if _, err := io.Copy(p.h, sec); err != nil {
			// Leave the hash consistent: start over at Finish.
			v.cfg.Logger.Debug("verifier: read back chunk", "chunk", p.next, "err", err)
			delete(v.prefixes, id)
			return
		}
		p.next++
	}
}

// finish completes the whole-file hash, reading back from the staging file
// whatever the running hash has not covered, and compares it.
func (v *verifierActor) finish(m *Finish) error {
	man := m.Manifest.Manifest
	p := v.prefixes[m.Manifest.ID]
	if p == nil {
		p = &prefix{h: sha256.New()}
	}
	if p.next < man.NumChunks() {
		f, err := os.Open(m.StagingPath)
		if err != nil {
			return fmt.Errorf("whole-file check of %s: %w", m.Manifest.ID.Short(), err)
		}
		defer f.Close()
		off := man.ChunkOffset(p.next)
		n, err := io.Copy(p.h, io.NewSectionReader(f, off, man.Size-off))
		if err != nil {
			return fmt.Errorf("whole-file check of %s: %w", m.Manifest.ID.Short(), err)
		}
		if n != man.Size-off {
			return fmt.Errorf("whole-file check of %s: %w: staging file is short", m.Manifest.ID.Short(), ErrNotAllVerified)
		}
	}
	var sum [32]byte
	p.h.Sum(sum[:0])
	if sum != man.FileHash {
		return fmt.Errorf("release %s: %w", m.Manifest.ID.Short(), ErrFileHash)
	}
	return nil
}
