// Package netsim is an in-memory packet network for running many complete
// rpe nodes in one process.
//
// It owns the simulated hosts, their addresses and links, and the
// net.PacketConn endpoints that the real DHT (anacrolix/dht) and the real
// QUIC stack (quic-go) run over unchanged. It stands on
// github.com/marcopolo/simnet, which provides per-direction bandwidth with
// queueing (an FQ-CoDel queue in front of a token bucket, so links shape
// rather than police: excess packets wait, they are not dropped for exceeding
// a burst), a latency router, and a clock
// that is only time.Timer and time.Now, so the whole network runs in a
// testing/synctest bubble in virtual time. netsim adds what simnet lacks:
//
//   - Addresses: every host gets the next free address of a subnet of
//     127.0.0.0/8 (127.20.0.0/16 by default), and a conn refuses to send to
//     anything outside 127.0.0.0/8, so no packet can leave the machine even if
//     a node is misconfigured.
//   - Several conns per host sharing the host's link: each host is a single
//     simnet endpoint and netsim demultiplexes by port itself (a 4-byte port
//     header travels inside every simulated packet).
//   - Packet loss per host (deterministic per seed and address), cutting a
//     host off and healing it, partitions between groups of hosts.
//   - Per-host byte and packet counters.
//   - NAT boxes (AddHostNAT): a host may sit behind a NAT of its own, of one
//     of the RFC 4787 kinds (see NATType), with a mapping timeout.
//
// # Model
//
// A packet from host A to host B is queued behind A's uplink (A's Up rate),
// travels for A's Latency plus B's Latency (each host's Latency is the one-way
// delay of its access link), and is queued behind B's downlink (B's Down
// rate) before it reaches the conn bound to the destination port; a packet
// between two conns of the same host crosses that host's link twice. Each packet
// is charged its UDP payload plus the 4-byte port header against the rates.
// After an idle spell a link may send Config.LinkBurst worth of traffic at
// once (10 ms by default, so a timer that fires up to 10 ms late in real
// time costs no bandwidth; set it negative for a one-packet bucket that is
// exact in virtual time). In real time on a machine short of CPU, timers fire
// later still and links fall below their rate; figures that must be exact
// come from synctest runs. Loss, cuts and partitions are decided in the core, after the sender's
// uplink: a lost packet has used the sender's upload but not the receiver's
// download. A packet larger than the path MTU (MTU minus 28 bytes of IPv4 and
// UDP header) is dropped, as a router drops an oversize datagram with the
// don't-fragment bit set; quic-go's MTU discovery relies on exactly that.
// A packet to an address or port nobody holds is dropped silently, as UDP
// does. Only the receive queue of a conn is bounded (Config.RecvQueue
// packets, excess dropped like a full socket buffer); the link queues are
// bounded by CoDel, not by size.
//
// # NAT
//
// A host behind a NAT has two addresses. Its conns are bound to its inside
// address (Addr), the k-th /24 of Config.NATSubnet (127.64.0.0/10 by
// default), which no other host can send to. Its NAT box holds a public
// address of the subnet (PublicAddr), and every packet the host sends to
// another host leaves from there, from a public port the box maps the inside
// port to (ports from 20000 up): one port per inside port (endpoint-
// independent mapping: full cone, address-restricted, port-restricted) or
// one per inside port and destination (endpoint-dependent: symmetric). An
// inbound packet reaches the inside only through a live mapping, and only
// from whom the filtering lets in: anyone (full cone), an address the
// mapping has sent to (address-restricted), an address and port it has sent
// to (port-restricted, symmetric). A mapping and each of its permissions
// lives for NAT.Timeout after the last outbound packet through it; inbound
// packets do not refresh it (RFC 4787 allows either; this is the stricter).
// Each NAT has one host behind it: there is no hairpinning between hosts of
// one NAT to model. Translation happens at the ends of the path, so loss,
// latency, cuts and partitions apply unchanged, keyed by public address.
//
// # Conns
//
// A conn's ReadFrom blocks until a packet arrives, the conn or the network is
// closed (it then returns an error matching net.ErrClosed), or a read deadline
// passes (an error matching os.ErrDeadlineExceeded). quic-go sets a read
// deadline on Transport.Close to stop its reader; anacrolix/dht treats every
// ReadFrom error as fatal, so never set a deadline on a conn given to the DHT.
// Writes never block on the link: a packet is queued and WriteTo returns.
//
// # Virtual time
//
// New and AddHost start goroutines (simnet's link drivers and router, one
// demultiplexer per host). To run in a testing/synctest bubble, create the
// Network inside the bubble and Close it before the bubble function returns.
package netsim
