package resolver

import (
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rpe-project/engine/internal/state"
	"github.com/rpe-project/engine/release"
)

// Key rotation. The resolver trusts Config.PublisherKey moved along the
// rotation statements kept in the state file "rotations". A record signed
// by the key trusted now that carries a statement handing that key's trust
// to a new key (release.FollowRotation allows it) makes the resolver save
// the statement durably, trust the new key alone from then on, report
// KeyRotated and look the new key's record up at once. Records and gossip
// under a retired key are refused as signed by another key, before and
// after a restart.

// ErrRotationsUnreadable means the rotations file could not be read: no
// record is trusted until it can (trusting the configured key again could
// let a retired, perhaps stolen, key back in).
var ErrRotationsUnreadable = errors.New("key rotations unreadable")

// KeyRotated reports that the node followed a rotation statement: it
// trusts New, and no longer Old.
type KeyRotated struct {
	Old, New  release.PublicKey
	Statement *release.Rotation
}

// loadKey sets the key trusted now from the configured key and the
// rotations followed before.
func (r *resolverActor) loadKey() {
	key, chain, err := state.TrustedKey(r.cfg.StateDir, r.cfg.PublisherKey)
	if err != nil {
		r.keyErr = fmt.Errorf("%w: %w", ErrRotationsUnreadable, err)
		r.cfg.Logger.Error("resolver: trusting no key", "err", r.keyErr)
	}
	r.key, r.rotations = key, chain
}

// rotate follows the rotation statement p carries, if any, and reports
// whether it did (p's entries are then not acted on: the old key is
// retired). A statement it may not follow is refused once, and p's entries
// still count.
func (r *resolverActor) rotate(ctx actor.Context, p *release.SignedPacket, from string) bool {
	rot, err := p.Rotation()
	if err == nil && rot != nil {
		err = release.FollowRotation(r.key, r.rotations, rot)
	}
	if err != nil {
		r.refuseEntry(ctx, p, from, err)
		return false
	}
	if rot == nil {
		return false
	}
	chain := append(r.rotations[:len(r.rotations):len(r.rotations)], rot)
	if err := state.SaveRotations(r.cfg.StateDir, chain); err != nil {
		// Not followed until it is on disk: a restart must not forget it.
		r.refuseEntry(ctx, p, from, fmt.Errorf("rotation to %s: %w", rot.New, err))
		return false
	}
	r.cfg.Logger.Info("resolver: publisher key rotated", "old", rot.Old, "new", rot.New, "from", from)
	r.rotations, r.key = chain, rot.New
	r.held, r.reported = nil, release.ManifestID{}
	if ctx.Parent() != nil {
		ctx.Send(ctx.Parent(), &KeyRotated{Old: rot.Old, New: rot.New, Statement: rot})
	}
	r.poll(ctx)
	return true
}
