package downloader

import (
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// Fetch asks for the release an entry of the signed record names.
type Fetch struct{ Entry release.Entry }

// ResendFetch is what a restarted downloader asks of its parent: the Fetch
// of the release wanted now, unless it is Fetching (resumed from
// download.json; zero when none). The message a stage fails on is lost
// with it.
type ResendFetch struct{ Fetching release.ManifestID }

// Progress reports verified chunks of the release being fetched.
type Progress struct {
	ID       release.ManifestID
	Verified int
	Total    int
	Bytes    int64 // verified bytes
	Size     int64
	Peers    int
	// Fetched and Wasted count chunk bytes received and bytes thrown away
	// (duplicates and rejected chunks) since the node started.
	Fetched, Wasted int64
}

// Reused reports chunks of the release copied from a local file instead of
// downloaded (Config.Reuse): Chunks of them, Bytes long; Verified of Total
// chunks are now held.
type Reused struct {
	ID              release.ManifestID
	Chunks          int
	Bytes           int64
	Verified, Total int
}

// ManifestAccepted reports that the manifest passed every check.
type ManifestAccepted struct{ Manifest *release.SignedManifest }

// ManifestRefused reports a manifest the verifier refused; the fetch ends.
type ManifestRefused struct {
	Entry release.Entry
	Err   error
}

// ChunkRefused reports a chunk that failed its hash; its peer is dropped.
type ChunkRefused struct {
	ID    release.ManifestID
	Index int
	Peer  wire.NodeID
	Err   error
}

// Completed reports a release whose every byte is verified, at Path.
type Completed struct {
	Manifest *release.SignedManifest
	Path     string
}

// Failed reports a fetch that cannot go on.
type Failed struct {
	Entry release.Entry
	Err   error
}

// Stats asks for the downloader's counters; the reply is *StatsReply.
type Stats struct{}

// StatsReply answers Stats.
type StatsReply struct {
	FetchedBytes   int64 // chunk bytes received
	WastedBytes    int64 // duplicate or rejected chunk bytes
	ChunksFetched  int64
	ChunksRejected int64
}
