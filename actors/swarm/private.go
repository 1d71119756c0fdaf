package swarm

import (
	"context"
	"fmt"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// A private swarm (Config.Private set) differs from a public one in two
// places only: the swarm IDs it announces and looks up are derived from the
// shared secret (release.Private.SwarmID), so outsiders cannot find its
// peers in the DHT; and every connection, dialled or accepted, must pass
// wire.Conn.Prove before the swarm sends, serves or asks anything on it, so
// an outsider that finds a peer anyway gets nothing and is dropped.

// swarmID is the DHT swarm ID of a release for this swarm.
func (s *swarmActor) swarmID(id release.ManifestID) release.SwarmID {
	if s.cfg.Private != nil {
		return s.cfg.Private.SwarmID(id)
	}
	return release.SwarmIDOf(id)
}

// prove runs the proof of the secret on a new connection of a private
// swarm; a public swarm has nothing to prove. On failure conn is closed.
func prove(ctx context.Context, priv *release.Private, conn *wire.Conn) error {
	if priv == nil {
		return nil
	}
	if err := conn.Prove(ctx, priv.ProofKey()); err != nil {
		return fmt.Errorf("swarm: peer %s at %s: %w", conn.RemoteID(), conn.RemoteAddr(), err)
	}
	return nil
}
