// Package release defines what a publisher signs and how a node checks it:
// publisher keys, versions, manifests, and the pkarr signed packet (a BEP44
// mutable item) that points at the current release of each app, channel and
// platform.
//
// The package is pure: it does no network I/O, starts no goroutines and keeps
// no global state, so every other part of rpe (and hundreds of simulated nodes
// in one process) can share it freely. Byte layouts are in docs/FORMATS.md.
package release
