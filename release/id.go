package release

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
)

// ManifestID names a signed manifest: the SHA-256 of its signed encoding.
type ManifestID [32]byte

// String returns the ID in lower-case hex.
func (id ManifestID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for logs.
func (id ManifestID) Short() string { return hex.EncodeToString(id[:4]) }

// ParseManifestID parses 64 hex digits.
func ParseManifestID(s string) (ManifestID, error) {
	var id ManifestID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("manifest ID %q: want 64 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// SwarmIDPrefix separates swarm IDs from any other SHA-1 use of a manifest ID.
const SwarmIDPrefix = "rpe/swarm/v1:"

// SwarmID is the 20-byte BEP5 info-hash under which nodes holding a release
// announce themselves: SHA-1(SwarmIDPrefix ‖ manifest ID).
type SwarmID [20]byte

// String returns the swarm ID in lower-case hex.
func (s SwarmID) String() string { return hex.EncodeToString(s[:]) }

// SwarmIDOf derives the swarm ID of a release from its manifest ID.
func SwarmIDOf(id ManifestID) SwarmID {
	h := sha1.New()
	h.Write([]byte(SwarmIDPrefix))
	h.Write(id[:])
	var s SwarmID
	copy(s[:], h.Sum(nil))
	return s
}
