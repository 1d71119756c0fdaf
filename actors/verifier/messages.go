package verifier

import (
	"github.com/Masterminds/semver/v3"

	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// CheckManifest asks for a raw manifest to be checked.
type CheckManifest struct {
	Raw   []byte
	Entry release.Entry // the record entry that named this manifest
	Peer  wire.NodeID   // who sent it, for the reply
}

// ManifestAccepted replies to CheckManifest.
type ManifestAccepted struct {
	Manifest *release.SignedManifest
	Peer     wire.NodeID
}

// ManifestRejected replies to CheckManifest.
type ManifestRejected struct {
	Entry release.Entry
	Peer  wire.NodeID
	Err   error
}

// CheckChunk asks for one chunk to be checked. Data holds exactly the bytes
// that were written at the chunk's offset in StagingPath.
type CheckChunk struct {
	Manifest    *release.SignedManifest
	StagingPath string
	Index       int
	Data        []byte
	Peer        wire.NodeID
	// Token is echoed in the reply, so the sender can tell which of several
	// checks of the same chunk (before and after a restart) it answers.
	Token uint64
}

// ChunkVerified replies to CheckChunk.
type ChunkVerified struct {
	ID    release.ManifestID
	Index int
	Peer  wire.NodeID
	Size  int
	Token uint64
}

// ChunkRejected replies to CheckChunk.
type ChunkRejected struct {
	ID    release.ManifestID
	Index int
	Peer  wire.NodeID
	Size  int
	Token uint64
	Err   error
}

// Finish asks for the whole-file check once every chunk is verified.
type Finish struct {
	Manifest    *release.SignedManifest
	StagingPath string
}

// FileVerified replies to Finish: the staging file is exactly the release.
type FileVerified struct {
	Manifest    *release.SignedManifest
	StagingPath string
}

// FileRejected replies to Finish.
type FileRejected struct {
	Manifest *release.SignedManifest
	Err      error
}

// Policy is what a manifest must satisfy besides its signature.
type Policy struct {
	PublisherKey release.PublicKey
	Target       release.Target
	// Current is the running version; only greater versions are accepted.
	Current *semver.Version
	// Floor returns the highest version ever accepted (kept on disk by the
	// resolver); nothing below it is accepted, and nothing at all while it
	// cannot be read.
	Floor func() (*semver.Version, error)
	// Limits caps what a manifest may declare.
	Limits release.Limits
	// Key, when set, returns the publisher key trusted now, which replaces
	// PublisherKey (it changes when the publisher rotates its key).
	Key func() release.PublicKey
}
