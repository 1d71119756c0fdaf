// Package network owns a node's two UDP sockets: one carries the BitTorrent
// Mainline DHT (github.com/anacrolix/dht/v2), the other belongs to a quic-go
// Transport on which the wire package dials and listens.
//
// The DHT is used for two things only: BEP44 mutable items holding the
// publisher's pkarr signed packet (PutRecord, GetRecord) and BEP5 peer
// discovery under a release's swarm ID (Announce, FindPeers). The port
// announced is the QUIC port, so the two sockets never need to be shared
// (quic-go drops every datagram whose first two bits are not 0, and a bencoded
// DHT message starts with 'd').
//
// The package works around what anacrolix/dht v2.24.0 was measured to do with
// hundreds of nodes in one process (docs/ARCHITECTURE.md places the package
// among the others). Each item below has a regression test in this package:
//
//   - Without a peer store no announce token is handed out, and the bundled
//     in-memory store keys peers by IP only: Node runs its own bounded,
//     expiring peer store keyed by ip:port (peerStore).
//   - find_node and get answers list nodes close to the zero ID, because the
//     server reads A.InfoHash: an OnQuery hook copies A.Target into A.InfoHash
//     for those queries (fixQuery). The same hook drops queries without
//     arguments, which would otherwise crash the server (announce_peer and put
//     dereference them).
//   - A single bootstrap traversal leaves sparse routing tables: Bootstrap
//     also pings the table and walks towards random targets, then starts the
//     library's table maintainer.
//   - The server panics when ReadFrom fails before Close, and some malformed
//     packets make its decoder panic: the DHT conn is wrapped (guardedConn) so
//     that ReadFrom fails only after Close and such packets are dropped.
//   - Queries are not resent by default: Config.QueryResendDelay and
//     Config.QuerySends set the resend policy of every query this package
//     makes.
//   - getput.Get returns only when the whole traversal stalls: GetRecord runs
//     its own traversal and returns GetGrace after the first valid record, or
//     at the stall, or with the best record found when ctx ends.
//   - The library's default send limiter is one process-wide limiter: every
//     Node has its own.
//   - Node IDs are random and not tied to the address (BEP42), so NoSecurity
//     is set; loopback and private ranges are exempt anyway.
//
// On a churning DHT (the real one is full of departed nodes) operations hold
// because:
//
//   - A put or get never waits behind a bootstrap: Join bootstraps in the
//     background, and a traversal whose routing table holds fewer than 8
//     live nodes starts from the bootstrap nodes as well.
//   - Queries go out in parallel (8 at a time for records, 6 for peers) and
//     a query to a departed node costs at most QuerySends × QueryResendDelay
//     (2 × 1s by default).
//   - The library keeps a node in its table, "good" and handed out, for 15
//     minutes after its last answer, and cannot drop it. So a node whose
//     query went unanswered is masked here (liveness): never queried again by
//     this node and cut from the node lists it answers with, until it is
//     heard from again or 10 minutes pass.
//   - A traversal ends once its 8 closest nodes have answered and nothing
//     new came for one resend delay, instead of waiting out the timeouts of
//     the nodes still outstanding; a put or announce also stops looking one
//     query timeout before the deadline, to keep time for the puts.
//   - An operation in which no node answered, or no node stored the item, is
//     tried again after 250ms, then 500ms (3 attempts), within the deadline.
//   - Errors say what happened: ErrNoAnswer (no DHT node answered at all),
//     ErrNotFound (nodes answered, none holds a record for the key),
//     ErrTimedOut (the time ran out while nodes were still answering).
//
// # NAT traversal
//
// Reach (reach.go, relay.go) runs rpe's NAT-traversal packets on the QUIC
// socket, beside QUIC: a node learns its public address and NAT mapping
// from what peers report seeing (no STUN server), peers introduce each
// other as rendezvous for hole punching, and nodes that opt in relay
// end-to-end encrypted QUIC for pairs that cannot punch, within a
// per-sender bandwidth cap. Every Node runs one. docs/NETWORK.md has the
// model and the measurements, docs/FORMATS.md the packets.
//
// Nothing here contacts the public routers unless Config.Bootstrap is nil and
// Config.NoBootstrap is false, the production default.
package network
