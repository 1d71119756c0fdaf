package network

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

// peerStore holds the peers announced to this node, keyed by swarm ID and
// ip:port (the library's bundled store keys by IP only, so every node behind
// one address but the last vanishes). It is bounded in swarms and in peers
// per swarm, evicting the least recently announced, and entries expire after
// ttl. The DHT server hands out announce tokens only when a peer store is set.
type peerStore struct {
	maxSwarms, maxPeers int
	ttl                 time.Duration

	mu     sync.Mutex
	swarms map[peer_store.InfoHash]*swarmPeers
}

type swarmPeers struct {
	last  time.Time
	peers map[netip.AddrPort]time.Time // when last announced
}

var _ peer_store.Interface = (*peerStore)(nil)

func newPeerStore(maxSwarms, maxPeers int, ttl time.Duration) *peerStore {
	return &peerStore{maxSwarms: maxSwarms, maxPeers: maxPeers, ttl: ttl,
		swarms: make(map[peer_store.InfoHash]*swarmPeers)}
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
		sw = &swarmPeers{peers: make(map[netip.AddrPort]time.Time)}
		ps.swarms[ih] = sw
	}
	sw.last = now
	if _, ok := sw.peers[ap]; !ok && len(sw.peers) >= ps.maxPeers {
		var oldest netip.AddrPort
		var t time.Time
		for k, at := range sw.peers {
			if t.IsZero() || at.Before(t) {
				oldest, t = k, at
			}
		}
		delete(sw.peers, oldest)
	}
	sw.peers[ap] = now
}

// GetPeers returns up to maxPeersPerReply live peers of the swarm, a random
// sample when there are more, so repeated lookups see different peers.
func (ps *peerStore) GetPeers(ih peer_store.InfoHash) []krpc.NodeAddr {
	now := time.Now()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	sw := ps.swarms[ih]
	if sw == nil {
		return nil
	}
	out := make([]krpc.NodeAddr, 0, min(len(sw.peers), maxPeersPerReply))
	seen := 0
	for ap, at := range sw.peers {
		if now.Sub(at) > ps.ttl {
			delete(sw.peers, ap)
			continue
		}
		na := krpc.NodeAddr{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port())}
		seen++
		if len(out) < maxPeersPerReply {
			out = append(out, na)
		} else if j := rand.IntN(seen); j < maxPeersPerReply {
			out[j] = na // reservoir sampling
		}
	}
	if len(sw.peers) == 0 {
		delete(ps.swarms, ih)
	}
	return out
}

func (ps *peerStore) expireLocked(now time.Time) {
	for ih, sw := range ps.swarms {
		for ap, at := range sw.peers {
			if now.Sub(at) > ps.ttl {
				delete(sw.peers, ap)
			}
		}
		if len(sw.peers) == 0 {
			delete(ps.swarms, ih)
		}
	}
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
