package swarm

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/rpe-project/engine/wire"
)

// Admission of inbound connections. Node keys cost nothing, so a peer can
// open connection after connection under fresh identities; three limits
// keep that from pushing honest peers out:
//
//   - A handshake rate limit: past handshakeBurst accepted connections at
//     once (then handshakeRate per second) a new one is closed at once,
//     before it costs an actor.
//   - When the inbound connections are full, a newcomer may take the place
//     of an existing one only if its address, and its group (the /24 of an
//     IPv4 address, the /48 of an IPv6 one), did not do so too often
//     lately (evictBurst at once, then one per evictAddrEvery for an
//     address and per evictGroupEvery for a group). Below the cap every
//     newcomer is admitted: a swarm of nodes on one address (rpe demo,
//     the loopback simulation) is never slowed.
//   - The connection dropped to make room is never one mid-transfer (an
//     answer being sent to it, or a request of ours to it under way);
//     among the rest, first one that has given nothing and taken nothing,
//     the newest first. A churning attacker thus replaces its own
//     connections, not the honest downloaders'.
type admission struct {
	hs      *rate.Limiter
	perAddr map[netip.Addr]*rate.Limiter
	perGrp  map[netip.Prefix]*rate.Limiter
}

// Admission limits (see admission).
const (
	handshakeBurst  = 200
	handshakeRate   = 100
	evictBurst      = 4
	evictAddrEvery  = 2 * time.Second
	evictGroupEvery = time.Second
	// maxAdmitKeys bounds the addresses and groups remembered; a full map
	// is emptied.
	maxAdmitKeys = 4096
)

func newAdmission() *admission {
	return &admission{
		hs:      rate.NewLimiter(handshakeRate, handshakeBurst),
		perAddr: map[netip.Addr]*rate.Limiter{},
		perGrp:  map[netip.Prefix]*rate.Limiter{},
	}
}

// handshake reports whether one more accepted connection is taken. It is
// called from the accept goroutine only; the limiter is safe anyway.
func (a *admission) handshake() bool { return a.hs.Allow() }

// evictFor reports whether a newcomer from addr may take an existing
// connection's place. Called by the swarm actor only.
func (a *admission) evictFor(addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	bits := 24
	if ip.Is6() {
		bits = 48
	}
	grp, _ := ip.Prefix(bits)
	if len(a.perAddr) >= maxAdmitKeys {
		clear(a.perAddr)
	}
	if len(a.perGrp) >= maxAdmitKeys {
		clear(a.perGrp)
	}
	al := a.perAddr[ip]
	if al == nil {
		al = rate.NewLimiter(rate.Every(evictAddrEvery), evictBurst)
		a.perAddr[ip] = al
	}
	gl := a.perGrp[grp]
	if gl == nil {
		gl = rate.NewLimiter(rate.Every(evictGroupEvery), 2*evictBurst)
		a.perGrp[grp] = gl
	}
	if al.Tokens() < 1 || gl.Tokens() < 1 {
		return false
	}
	return al.Allow() && gl.Allow()
}

// peerUseful is what one peer gave this node and took from it, and whether
// a request of ours to it is under way; its peer actor counts, the swarm
// actor reads.
type peerUseful struct {
	gave, took atomic.Int64 // chunk bytes received from it, sent to it
	asking     atomic.Int32 // our requests to it under way
}

// victim returns the inbound peer to drop for a newcomer (see admission),
// or false when every inbound peer is mid-transfer.
func (s *swarmActor) victim() (wire.NodeID, bool) {
	var best wire.NodeID
	var bestP *peer
	for id, p := range s.peers {
		if p.dialed || p.use.asking.Load() > 0 || s.ctr.up.activeFor(id) > 0 {
			continue
		}
		useful := p.use.gave.Load() > 0 || p.use.took.Load() > 0
		if bestP != nil {
			bu := bestP.use.gave.Load() > 0 || bestP.use.took.Load() > 0
			if useful && !bu || useful == bu && !p.added.After(bestP.added) {
				continue
			}
		}
		best, bestP = id, p
	}
	return best, bestP != nil
}
