// Package release defines what a publisher signs and how a node checks it:
// publisher keys, versions, manifests, and the pkarr signed packet (a BEP44
// mutable item) that points at the current release of each app, channel and
// platform.
//
// The package is pure: it does no network I/O and keeps no global state, so
// every other part of rpe (and hundreds of simulated nodes in one process) can
// share it freely. Its only file I/O is the secret key file. BuildManifest
// hashes on two goroutines side by side, so that hashing every chunk and the
// whole file costs about one SHA-256 pass of wall time; both goroutines end
// before the call returns. Given a regular file they read it twice, each at
// its own offsets (ErrChanged if it changes meanwhile); given any other
// reader they read it once and share its blocks. VerifyFile hashes every
// byte once, chunk by chunk: the signed chunk hashes commit to the whole
// file, so it does not compare the whole-file hash.
//
// It also holds the publisher key's life beyond one key pair: shared
// secrets of private swarms, from which come the keys that seal record
// entries, derive swarm IDs and prove the secret (secret.go), and rotation
// statements that hand a key's trust to another (rotation.go). Secret key
// and secret files that group or others may access are refused, as ssh
// refuses such keys.
//
// Byte layouts, limits and signed messages are in docs/FORMATS.md; golden
// encodings from a fixed key are in testdata/.
package release
