// Package wire is the rpe peer protocol spoken on QUIC connections (ALPN
// "rpe/1"): node identities and their TLS certificates, length-prefixed
// frames with a size limit per type, the messages nodes exchange, and a Conn
// that requests manifests and chunks from a peer and serves them to it.
//
// It exists so that everything a peer can send passes through one small,
// strict, fuzzed decoder: a peer that sends a malformed or oversize frame, an
// unknown message or an out-of-range chunk index gets an error code and is
// disconnected, and no read ever allocates more than the declared limit.
// Every wait on a peer has a bound: its Hello (HelloTimeout), each request
// (RequestTimeout), each answer it is sent (AnswerTimeout) and the
// connection itself (IdleTimeout), so a peer that stalls or vanishes holds
// no goroutine or buffer for long.
//
// Each request (GetManifest, GetChunk) travels on its own bidirectional QUIC
// stream, so many are in flight at once and one slow answer blocks nothing; a
// chunk answer is streamed straight into the caller's buffer. A Handler
// that also implements ChunkSentHandler is told, for every chunk it handed
// over, whether the answer was written in full or why not, so it can free
// an upload slot and count only the copies that reached the peer. One-way
// messages (Hello, Have, Record, Peers) travel in order on one
// unidirectional control stream per direction. docs/FORMATS.md describes the
// bytes.
//
// In a private swarm, Conn.Prove makes both ends prove they know the
// swarm's secret, bound to the TLS session, before anything else is sent
// (proof.go); a peer without the proof is dropped with CodeNoProof.
//
// The package knows nothing of manifests or actors: what to answer is up to a
// Handler, and which peers to talk to is up to the caller. It owns no
// goroutines except those a Conn runs while Serve is active, and it works over
// any quic.Transport, whatever net.PacketConn that transport reads from.
package wire
