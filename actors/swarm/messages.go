package swarm

import (
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// Join asks the swarm to find and connect to the holders of a release. The
// sender becomes the subscriber that receives PeerUp, PeerDown and PeerHas.
type Join struct{ ID release.ManifestID }

// Leave stops looking for peers for a release (the node keeps serving it).
type Leave struct{ ID release.ManifestID }

// Verified says chunk Index of release ID is now servable.
type Verified struct {
	ID    release.ManifestID
	Index int
}

// Misbehaved reports a peer that sent bad data; it is disconnected and not
// dialled again.
type Misbehaved struct {
	Peer   wire.NodeID
	Reason error
}

// Gossip asks the swarm to pass a signed record to every connected peer.
type Gossip struct{ Packet *release.SignedPacket }

// PeerUp tells the subscriber about a usable connection.
type PeerUp struct {
	Peer wire.NodeID
	Conn *wire.Conn
}

// PeerDown tells the subscriber a connection is gone.
type PeerDown struct{ Peer wire.NodeID }

// PeerHas tells the subscriber which chunks of a release a peer holds:
// Bitfield when not nil (Complete when it holds all), else the one chunk Index.
type PeerHas struct {
	Peer     wire.NodeID
	ID       release.ManifestID
	Bitfield []byte
	Complete bool
	Index    int
}

// RecordGossiped goes to the parent when a peer passes on a signed record.
type RecordGossiped struct {
	Packet *release.SignedPacket
	From   wire.NodeID
}

// Served goes to the parent each time a chunk answer was written in full to
// a peer (not when it was handed to the connection, so an answer cut off
// when the node stops is not counted).
type Served struct {
	Peer  wire.NodeID
	ID    release.ManifestID
	Index int
	Bytes int
}

// Stats asks for the swarm's counters; the reply is *StatsReply.
type Stats struct{}

// StatsReply answers Stats.
type StatsReply struct {
	Peers         int
	UploadedBytes int64
	ChunksServed  int64
}
