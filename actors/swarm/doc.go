// Package swarm is the stage that talks to other nodes.
//
// It owns the node's QUIC listener and one child actor per peer connection,
// so a misbehaving peer crashes only its own actor. It announces in the DHT
// (BEP5, under each release's swarm ID) every release the node holds, finds
// and dials holders of the releases it is asked to Join, serves verified
// chunks and manifests from the store to anyone who asks, and passes signed
// records between peers so news of a release spreads faster than polling.
//
// It receives Join (find peers for a release; the sender gets PeerUp,
// PeerDown and PeerHas), Leave, Verified (a chunk became servable: tell the
// peers), Misbehaved (drop and ban a peer), Gossip (send a record to every
// peer), and the requests of a subscriber: GetManifest (answered with
// ManifestArrived), GetChunk (answered with exactly one ChunkArrived or
// ChunkFailed) and CancelChunk. It sends RecordGossiped and Served (a chunk
// answer went out in full) to its parent.
//
// # One owner per connection
//
// A peer's connection belongs to its peer actor and to nothing else: the
// actor starts the connection's Serve (whose goroutines answer the peer's
// requests through the actor's handler), holds its outbox (one writer, the
// Hello first), and makes the requests the subscriber asks of this peer,
// each on a goroutine under the actor's context that sends its answer to
// the asker. Stopping the actor ends those requests (ChunkFailed) and
// closes the connection. The swarm actor keeps what each peer holds (for
// the upload queue and for late subscribers) and routes GetChunk and
// GetManifest to the peer's actor; for a peer it has no connection to it
// answers at once with ErrNoPeer. PeerUp carries no connection: the
// downloader never touches one.
//
// Every method of the handler recovers: a panic while serving one peer
// (reading the store, the upload queue, a bug) closes that peer's
// connection with an internal error, frees the upload slot the request
// held, and is counted; the process and the other peers go on.
// Config.ServeFault is the seam through which tests inject such a panic.
//
// A peer's one-way messages reach the swarm actor one at a time: the
// connection reads the next only once the actor has taken the last, so a
// peer that floods waits on QUIC flow control instead of filling a
// mailbox. News of a peer's chunks goes to the subscriber only for releases
// it joined or the store holds, and only once (a repeated Have is dropped);
// a peer that keeps sending Hellos is dropped and banned.
//
// A gossiped record costs a signature check only when it could be news: a
// copy of one verified or refused before (by key and seq, or by its bytes,
// in caches of 256 entries each) is dropped unchecked, as is an echo of
// this node's own, and a peer's records past 8 at once (then one per 5 s)
// are dropped unread.
//
// Peer exchange (Peers messages) cannot aim this node's dials at a third
// party at more than a trickle: at most 20 addresses are taken from one
// message, 20 from one peer at once (then one per 3 s) and 64 from all
// peers at once (then 4 per second); an address that cannot be a node's
// (port 0, unspecified, multicast, broadcast, link-local) is never dialled,
// whether a peer or the DHT named it.
//
// Connections are deduplicated per node ID: when two nodes dial each other at
// once, both keep the connection dialled by the node with the smaller ID.
//
// # Uploads and seeding
//
// A node sends at most Config.MaxUploads chunk answers at once; further
// requests wait up to Config.UploadWait for a slot. No peer can hold the
// slots hostage: one peer takes more than half of them (at least one)
// only while nobody else waits, and has at most 16 requests holding or
// waiting for one (more are answered busy at once); a freed slot goes
// first to the waiting peer holding fewest; an answer the receiver takes below wire's MinAnswerRate is
// abandoned within seconds, and that peer gets no slot for 30 s.
//
// Inbound connections are admitted under a handshake rate limit; when they
// are full a newcomer replaces the least useful inbound peer (never one
// mid-transfer; one that gave and took nothing first, the newest first),
// and only while its address and /24 have not made room too often lately
// (admit.go). A freed slot goes to the
// waiting request whose chunk has the fewest copies outside this node, as
// far as the node knows: the larger of the connected peers that announced
// the chunk (Hello bitfields and Have messages) and the answers this node
// is sending or sent in the last few seconds (before the receiver's Have
// can arrive). An answer counts as sent only once the wire layer reports it
// written in full (ChunkSent with no error), and Served goes to the parent
// only then: an answer cut off by a stop or a lost peer reached
// nobody, and one that no Have confirms soon after (the receiver stopped
// before checking it) stops counting as a copy.
//
// Design goal: a seed that has uploaded about one full copy has put every
// chunk into the swarm at least once, so a publisher that goes away after a
// small number of copies does not strand the swarm. A seed (a node holding
// the whole release) therefore refuses, with Busy, a request for a chunk
// that is out already while a chunk asked for in the last few seconds has
// no copy at all, whether the request arrives or a slot frees; after that
// it hands chunks out round robin (each once more before any again, with a
// little slack), BitTorrent's super-seeding decided by the server. Only
// chunks asked for recently count, so a seed never idles for a chunk that
// nobody asks it for (the peers got it elsewhere).
//
// # NAT
//
// The swarm asks each connected peer, every 20 s at most, which address it
// sees this node at (network.Reach.ObservePeer), which also registers the
// node with the peer as rendezvous; before a dial it asks its connected
// peers to introduce it to the address and dials where the hole punch came
// from, or the address itself if no peer knows it (reach.go).
package swarm
