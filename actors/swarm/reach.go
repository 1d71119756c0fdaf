package swarm

import (
	"net/netip"

	"github.com/rpe-project/engine/wire"
)

// maxRendezvous bounds the connected peers offered as rendezvous for one
// dial; network.Reach.DialAddr asks at most three of them.
const maxRendezvous = 8

// rendezvous returns the addresses of up to maxRendezvous connected peers
// (in map order, which varies), each a candidate to introduce this node to
// a node behind NAT that is also connected to it.
func (s *swarmActor) rendezvous() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, min(len(s.peers), maxRendezvous))
	for _, p := range s.peers {
		if len(out) == maxRendezvous {
			break
		}
		if a, ok := remoteAddrPort(p.conn); ok {
			out = append(out, a)
		}
	}
	return out
}

// observePeers asks every connected peer, at most once per keepalive
// interval each, which address it sees this node at: the node learns its
// public address and NAT mapping, and stays registered with its peers so
// they can introduce others to it.
func (s *swarmActor) observePeers() {
	r := s.cfg.Node.Reach()
	for _, p := range s.peers {
		if a, ok := remoteAddrPort(p.conn); ok {
			r.ObservePeer(a)
		}
	}
}

func remoteAddrPort(c *wire.Conn) (netip.AddrPort, bool) {
	a, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), true
}
