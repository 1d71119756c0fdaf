package resolver

import (
	"github.com/Masterminds/semver/v3"

	"github.com/rpe-project/engine/release"
)

// Poll asks for a DHT lookup now.
type Poll struct{}

// Offer hands the resolver a record from somewhere else (a peer's gossip).
type Offer struct {
	Packet *release.SignedPacket
	From   string
}

// Accepted raises the version floor: the engine installed (or verified) V.
type Accepted struct{ Version *semver.Version }

// ReleaseFound reports a release this node should fetch.
type ReleaseFound struct {
	Entry  release.Entry
	Packet *release.SignedPacket
}

// RecordUpdated reports a newer signed record (to be gossiped).
type RecordUpdated struct{ Packet *release.SignedPacket }

// RecordRefused reports a record or entry the resolver will not act on.
type RecordRefused struct {
	From string
	Err  error
}

// Rebootstrapped reports that the resolver bootstrapped its DHT node again
// because Misses lookups in a row found no record (it does so after every
// third). Err is the bootstrap's error, nil when the routing table is
// filled again.
type Rebootstrapped struct {
	Misses int
	Err    error
}
