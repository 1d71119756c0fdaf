// Package verifier is the stage that decides whether bytes may be trusted.
//
// It owns no network and no staging file of its own. It receives:
//
//   - CheckManifest: a raw manifest from a peer. It is parsed under the
//     publisher key, checked against this node's app, channel and platform,
//     its expiry, the version named by the signed record and the version rules
//     (newer than the running version, not below the highest ever accepted).
//     Reply: ManifestAccepted or ManifestRejected.
//   - CheckChunk: one chunk already written to the staging file. Its SHA-256
//     is compared with the manifest. Reply: ChunkVerified or ChunkRejected
//     (naming the peer, so the swarm can punish it).
//   - Finish: every chunk is verified; compare the whole-file SHA-256.
//     Reply: FileVerified or FileRejected.
//
// The whole-file hash runs over the contiguous prefix of verified chunks as
// they arrive (a chunk that arrived early is read back from the staging file,
// usually still in the page cache, when the prefix reaches it), so Finish
// costs almost nothing. That running hash is an optimisation only: after a
// restart the state is gone and Finish reads back whatever part of the file
// the hash has not covered, so a restart never weakens a check.
//
// The running hash covers the bytes as they were checked. Bytes changed on
// disk afterwards are caught by the installer, which hashes the staged file
// once more, against the signed manifest, before it swaps anything.
package verifier
