package network

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Reach returns the node's NAT traversal, which runs on its QUIC socket.
// The node owns it: do not close it.
func (n *Node) Reach() *Reach { return n.reach }

// announcePort is the port Announce publishes: the public port peers see
// the QUIC socket at when the NAT in front of it maps endpoint-
// independently (the DHT node stores it with the announce's public source
// address), else the socket's own port. Behind a symmetric NAT no port is
// right; the socket's own is announced and the node is reached only by
// nodes it dials.
func (n *Node) announcePort() int {
	if pub, m := n.reach.Public(); pub.IsValid() && m != MappingVaries {
		return int(pub.Port())
	}
	return int(n.QUICAddr().Port())
}

// DialAddr returns where to dial target: if one of vias (peers this node
// is connected to) has target registered, the address a hole punch through
// it opened; otherwise target itself. All vias are asked at once and the
// first punch that gets through wins. It never fails: refused or failed
// punches leave the direct dial to try.
func (r *Reach) DialAddr(ctx context.Context, target netip.AddrPort, vias []netip.AddrPort) netip.AddrPort {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PunchTimeout+r.cfg.RequestTimeout)
	defer cancel()
	type result struct {
		addr netip.AddrPort
		err  error
	}
	results := make(chan result, len(vias))
	asked := 0
	for _, via := range vias {
		if via == target {
			continue
		}
		asked++
		go func() {
			got, err := r.Punch(ctx, via, target)
			results <- result{got, err}
		}()
	}
	failed := false
	for range asked {
		res := <-results
		switch {
		case res.err == nil:
			r.punched.Add(1)
			cancel() // the other punches stop; their goroutines finish
			return res.addr
		case errors.Is(res.err, ErrPunchFailed):
			failed = true
		}
	}
	if failed {
		r.punchFailed.Add(1)
	}
	return target
}

// ObservePeer asks a connected peer which address it sees this node at,
// unless it asked in the last KeepAlive, in the background. Calling it for
// every peer now and then keeps the node registered with them, so that
// they can introduce others to it.
func (r *Reach) ObservePeer(peer netip.AddrPort) {
	now := time.Now()
	r.mu.Lock()
	if t, ok := r.asked[peer]; ok && now.Sub(t) < r.cfg.KeepAlive {
		r.mu.Unlock()
		return
	}
	if len(r.asked) >= maxRegistrations {
		clear(r.asked)
	}
	r.asked[peer] = now
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if _, err := r.Observe(r.ctx, peer); err != nil {
			r.log.Debug("reach: observe peer", "peer", peer, "err", err)
		}
	}()
}

// ReachStats counts what a node's Reach did.
type ReachStats struct {
	// Punched counts dials that a hole punch opened; PunchFailed those
	// whose punch got no packet through (the dial then went direct).
	Punched, PunchFailed int64
	// Introduced counts introductions this node made as rendezvous.
	Introduced int64
}

// Stats returns the counters.
func (r *Reach) Stats() ReachStats {
	return ReachStats{Punched: r.punched.Load(), PunchFailed: r.punchFailed.Load(), Introduced: r.introduced.Load()}
}
