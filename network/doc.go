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
// Nothing here contacts the public routers unless Config.Bootstrap is nil and
// Config.NoBootstrap is false, the production default.
package network
