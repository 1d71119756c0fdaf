package release

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
)

// RolloutBucket places a node in 0..99 for one release:
// SHA-256(node key ‖ manifest ID), its first 8 bytes big-endian, mod 100.
// The bucket depends on the release, so the same nodes are not always the
// first to take a new version.
func RolloutBucket(nodeKey ed25519.PublicKey, id ManifestID) int {
	h := sha256.New()
	h.Write(nodeKey)
	h.Write(id[:])
	var sum [sha256.Size]byte
	return int(binary.BigEndian.Uint64(h.Sum(sum[:0])[:8]) % 100)
}

// Includes reports whether the node with nodeKey takes the entry's release
// under its staged rollout: always when the entry has none (Rollout 0) or
// Rollout is 100, else when RolloutBucket < Rollout. Raising Rollout for
// the same release only ever adds nodes: a node once in stays in.
func (e Entry) Includes(nodeKey ed25519.PublicKey) bool {
	if e.Rollout <= 0 || e.Rollout >= 100 {
		return true
	}
	return RolloutBucket(nodeKey, e.ManifestID) < e.Rollout
}
