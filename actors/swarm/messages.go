package swarm

import (
	"errors"
	"time"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// ErrNoPeer means a request named a peer the swarm has no connection to
// (it went away, or was never connected).
var ErrNoPeer = errors.New("swarm: no connection to that peer")

// ErrServePanic means serving a peer panicked; the peer's connection is
// closed and the node goes on.
var ErrServePanic = errors.New("swarm: panic while serving a peer")

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

// PeerUp tells the subscriber about a usable connection. The connection
// stays the swarm's: the subscriber asks through GetManifest and GetChunk.
type PeerUp struct {
	Peer wire.NodeID
}

// GetManifest asks the swarm for manifest ID from Peer. The sender gets one
// ManifestArrived, whatever happens.
type GetManifest struct {
	Peer    wire.NodeID
	ID      release.ManifestID
	Timeout time.Duration // 0: no bound but the connection's life
}

// ManifestArrived answers GetManifest: Raw, or why not in Err.
type ManifestArrived struct {
	Peer wire.NodeID
	ID   release.ManifestID
	Raw  []byte
	Err  error
}

// GetChunk asks the swarm for chunk Index (Size bytes) of release ID from
// Peer. The sender gets exactly one ChunkArrived or ChunkFailed, whatever
// happens, unless it cancels the request first (CancelChunk).
type GetChunk struct {
	Peer    wire.NodeID
	ID      release.ManifestID
	Index   int
	Size    int
	Timeout time.Duration // 0: no bound but the connection's life
}

// CancelChunk withdraws a GetChunk (the chunk came from another peer). The
// request ends with ChunkFailed unless its answer is already on its way.
type CancelChunk struct {
	Peer  wire.NodeID
	ID    release.ManifestID
	Index int
}

// ChunkArrived answers GetChunk with the chunk's bytes, not yet verified.
type ChunkArrived struct {
	Peer  wire.NodeID
	ID    release.ManifestID
	Index int
	Data  []byte
}

// ChunkFailed answers GetChunk that brought no chunk, and why: errors match
// wire's sentinels (ErrNotFound, ErrBusy, ...) or ErrNoPeer.
type ChunkFailed struct {
	Peer  wire.NodeID
	ID    release.ManifestID
	Index int
	Err   error
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
	// Path is how the connection to the peer was made ("direct", "punch"
	// or "relay", network.Method's names) and Addr the peer's address as
	// this node sees it (through a relay: as the relay sees it); the swarm
	// fills both in.
	Path string
	Addr string
}

// Stats asks for the swarm's counters; the reply is *StatsReply.
type Stats struct{}

// StatsReply answers Stats.
type StatsReply struct {
	Peers         int
	UploadedBytes int64
	ChunksServed  int64
}
