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
//   - Finish: every chunk is verified; check that the staging file is
//     exactly the release. Reply: FileVerified or FileRejected.
//
// Each byte is hashed once, from memory, when its chunk arrives. Finish does
// not hash the whole file again: the signed chunk hashes commit to every
// byte (a file that differs from the release differs in some chunk), so the
// manifest's whole-file hash would add a second SHA-256 pass and no
// assurance. Finish checks the staging file's size and reads back only the
// chunks this verifier did not check itself (after a restart its memory of
// them is gone; after a resumed download they were checked by an earlier
// process), so a restart never weakens the check and a download seen whole
// costs one stat.
//
// The verifier vouches for the bytes as they were written. Bytes changed on
// disk afterwards are caught by the installer, which reads the staged file
// once more and checks every chunk against the signed manifest right before
// it swaps anything: that check is the trust anchor for what gets
// installed, because the staged file may wait on disk for hours (an apply
// window) and a crash may leave a chunk marked verified whose bytes never
// reached the disk.
package verifier
