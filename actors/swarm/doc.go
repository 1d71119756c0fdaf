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
// peers), Misbehaved (drop and ban a peer) and Gossip (send a record to every
// peer). It sends RecordGossiped and Served to its parent.
//
// Connections are deduplicated per node ID: when two nodes dial each other at
// once, both keep the connection dialled by the node with the smaller ID.
package swarm
