package engine

import (
	"fmt"

	"github.com/rpe-project/engine/release"
)

// listEntries returns the entries of pkt a node of priv's swarm reads: the
// sealed ones with a secret (nil priv: the public ones). A public listing of
// a record that holds only sealed entries fails with release.ErrNeedSecret,
// so that an empty list never hides a private swarm.
func listEntries(pkt *release.SignedPacket, priv *release.Private) ([]release.Entry, error) {
	if priv != nil {
		return pkt.SealedEntries(priv)
	}
	entries, err := pkt.Entries()
	if err != nil || len(entries) > 0 {
		return entries, err
	}
	if sealed, err := pkt.SealedCount(); err == nil && sealed > 0 {
		return nil, fmt.Errorf("%d private entries: %w", sealed, release.ErrNeedSecret)
	}
	return entries, nil
}

// swarmIDOf is a release's swarm ID in priv's swarm (nil: the public one).
func swarmIDOf(priv *release.Private, id release.ManifestID) release.SwarmID {
	if priv != nil {
		return priv.SwarmID(id)
	}
	return release.SwarmIDOf(id)
}

// lookupEntry is the record's entry for the node's target: a sealed one in a
// private swarm, a public one otherwise (which, when the record holds only
// sealed entries for it, fails with release.ErrNeedSecret).
func lookupEntry(pkt *release.SignedPacket, s *settings) (release.Entry, error) {
	if s.private != nil {
		return pkt.LookupSealed(s.target, s.private)
	}
	return pkt.Lookup(s.target)
}
