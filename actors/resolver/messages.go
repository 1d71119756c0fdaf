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
