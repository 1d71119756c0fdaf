package network

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"

	"github.com/rpe-project/engine/release"
)

// peerStore holds the peers announced to this node, keyed by swarm ID and
// ip:port (the library's bundled store keys by IP only, so every node behind
// one address but the last vanishes). It is bounded in swarms and in peers
// per swarm, evicting the least recently announced, and entries expire after
// ttl. The DHT server hands out announce tokens only when a peer store is set.
//
// A token proves an IP address, not a port: one host can announce any
// number of ports, dead or fake, and bury the real peers of a swarm. So a
// swarm keeps at most maxPortsPerIP ports of one IP (a new one evicts that
// IP's least recently announced), and answers list the most recently
// announced peers first: a peer that re-announces is alive, and a restarted
// node's new port displaces its old one. 127.0.0.1 is exempt: tests and the
// demo run every node there (tests of the cap use other loopback addresses).
//
// An entry also remembers the DHT address that announced it (the source of
// the announce_peer query, noted by the server's query hook), and is not
// handed out once that DHT node failed to answer this node (the node's
// liveness masks it; see liveness.go): a peer whose DHT node went away has
// most likely gone with it, so its announcement expires when it stops
// answering rather than after ttl. A node heard from again is unmasked, and
// its entries come back with it.
type peerStore struct {
	maxSwarms, maxPeers int
	ttl                 time.Duration
	// dead reports whether a DHT address failed to answer lately; nil
	// means never.
	dead func(netip.AddrPort) bool

	mu     sync.Mutex
	swarms map[peer_store.InfoHash]*swarmPeers
	// src maps an announced address to the DHT address that announced it,
	// between the query hook and AddPeer; bounded by maxSources.
	src map[netip.AddrPort]netip.AddrPort

	capped atomic.Int64 // entries dropped for maxPortsPerIP
}

type swarmPeers struct {
	last  time.Time
	peers map[netip.AddrPort]peerEntry
}

// peerEntry is one announced peer.
type peerEntry struct {
	at  time.Time      // when last announced
	dht netip.AddrPort // the DHT node that announced it, if known
}

// maxSources bounds peerStore.src; a full map is emptied.
const maxSources = 4096

var _ peer_store.Interface = (*peerStore)(nil)

// maxPortsPerIP is how many ports of one IP a swarm keeps.
const maxPortsPerIP = 4

// capPorts reports whether maxPortsPerIP applies to a: everywhere but
// 127.0.0.1.
func capPorts(a netip.Addr) bool { return a != netip.AddrFrom4([4]byte{127, 0, 0, 1}) }

func newPeerStore(maxSwarms, maxPeers int, ttl time.Duration) *peerStore {
	return &peerStore{maxSwarms: maxSwarms, maxPeers: maxPeers, ttl: ttl,
		swarms: make(map[peer_store.InfoHash]*swarmPeers), src: make(map[netip.AddrPort]netip.AddrPort)}
}

// noteAnnounce remembers which DHT address announced which peer address;
// the server's OnQuery hook calls it for each announce_peer query before it
// checks the token (an entry for a bad token is never used, and the map is
// bounded).
func (ps *peerStore) noteAnnounce(m *krpc.Msg, source net.Addr) {
	if m.Q != "announce_peer" || m.A == nil {
		return
	}
	ua, ok := source.(*net.UDPAddr)
	if !ok {
		return
	}
	from := unmapped(ua.AddrPort())
	port := int(from.Port())
	if !m.A.ImpliedPort && m.A.Port != nil {
		port = *m.A.Port
	}
	if port <= 0 || port > 65535 {
		return
	}
	ap := netip.AddrPortFrom(from.Addr(), uint16(port))
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.src) >= maxSources {
		clear(ps.src)
	}
	ps.src[ap] = from
}

// addrPortOf converts a KRPC address; ok is false for an unusable one.
func addrPortOf(na krpc.NodeAddr) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(na.IP)
	if !ok || na.Port <= 0 || na.Port > 65535 {
		return netip.AddrPort{}, false
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(na.Port)), true
}

// AddPeer records an announce. The server calls it only after checking the
// announcer's token.
func (ps *peerStore) AddPeer(ih peer_store.InfoHash, na krpc.NodeAddr) {
	ap, ok := addrPortOf(na)
	if !ok {
		return
	}
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	sw := ps.swarms[ih]
	if sw == nil {
		if len(ps.swarms) >= ps.maxSwarms {
			ps.expireLocked(now)
		}
		if len(ps.swarms) >= ps.maxSwarms {
			var oldest peer_store.InfoHash
			var t time.Time
			for k, s := range ps.swarms {
				if t.IsZero() || s.last.Before(t) {
					oldest, t = k, s.last
				}
			}
			delete(ps.swarms, oldest)
		}
		sw = &swarmPeers{peers: make(map[netip.AddrPort]peerEntry)}
		ps.swarms[ih] = sw
	}
	sw.last = now
	if _, ok := sw.peers[ap]; !ok && capPorts(ap.Addr()) {
		var same int
		var oldest netip.AddrPort
		var t time.Time
		for k, e := range sw.peers {
			if k.Addr() != ap.Addr() {
				continue
			}
			same++
			if t.IsZero() || e.at.Before(t) {
				oldest, t = k, e.at
			}
		}
		if same >= maxPortsPerIP {
			delete(sw.peers, oldest)
			ps.capped.Add(1)
		}
	}
	if _, ok := sw.peers[ap]; !ok && len(sw.peers) >= ps.maxPeers {
		var oldest netip.AddrPort
		var t time.Time
		for k, e := range sw.peers {
			if t.IsZero() || e.at.Before(t) {
				oldest, t = k, e.at
			}
		}
		delete(sw.peers, oldest)
	}
	e := peerEntry{at: now, dht: sw.peers[ap].dht}
	if from, ok := ps.src[ap]; ok {
		e.dht = from
		delete(ps.src, ap)
	}
	sw.peers[ap] = e
}

// GetPeers returns up to maxPeersPerReply live peers of the swarm: when
// there are more, the most recently announced half of a reply, and a random
// sample of the others, so repeated lookups still see different peers.
func (ps *peerStore) GetPeers(ih peer_store.InfoHash) []krpc.NodeAddr {
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	sw := ps.swarms[ih]
	if sw == nil {
		return nil
	}
	type entry struct {
		ap netip.AddrPort
		at time.Time
	}
	all := make([]entry, 0, len(sw.peers))
	for ap, e := range sw.peers {
		if now.Sub(e.at) > ps.ttl {
			delete(sw.peers, ap)
			continue
		}
		if e.dht.IsValid() && ps.dead != nil && ps.dead(e.dht) {
			continue // kept: it comes back if its node is heard again
		}
		all = append(all, entry{ap, e.at})
	}
	if len(sw.peers) == 0 {
		delete(ps.swarms, ih)
	}
	if len(all) > maxPeersPerReply {
		slices.SortFunc(all, func(a, b entry) int { return b.at.Compare(a.at) })
		newest := maxPeersPerReply / 2
		rest := all[newest:]
		rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
		all = all[:maxPeersPerReply]
	}
	out := make([]krpc.NodeAddr, len(all))
	for i, e := range all {
		out[i] = krpc.NodeAddr{IP: net.IP(e.ap.Addr().AsSlice()), Port: int(e.ap.Port())}
	}
	return out
}

func (ps *peerStore) expireLocked(now time.Time) {
	for ih, sw := range ps.swarms {
		for ap, e := range sw.peers {
			if now.Sub(e.at) > ps.ttl {
				delete(sw.peers, ap)
			}
		}
		if len(sw.peers) == 0 {
			delete(ps.swarms, ih)
		}
	}
}

// SwarmPeers returns the peers of swarm s this node holds for others (as
// announced to it), newest first; for tests and the simulation.
func (n *Node) SwarmPeers(s release.SwarmID) []netip.AddrPort {
	ps := n.peers
	ps.mu.Lock()
	defer ps.mu.Unlock()
	sw := ps.swarms[peer_store.InfoHash(s)]
	if sw == nil {
		return nil
	}
	out := make([]netip.AddrPort, 0, len(sw.peers))
	for ap := range sw.peers {
		out = append(out, ap)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return sw.peers[b].at.Compare(sw.peers[a].at) })
	return out
}

// len returns the number of stored peers of a swarm, for tests.
func (ps *peerStore) len(ih peer_store.InfoHash) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if sw := ps.swarms[ih]; sw != nil {
		return len(sw.peers)
	}
	return 0
}
