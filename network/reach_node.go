package network

import (
	"crypto/sha1"

	"context"
	"errors"
	"fmt"
	"github.com/rpe-project/engine/release"
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

// Hint is what a node knows, before dialling, of how another node is
// reached: from the announcement or peer exchange entry it found the
// address in (see docs/FORMATS.md, "Reach hints"). The zero Hint knows
// nothing: the address may be direct or behind NAT.
type Hint struct {
	// Direct says the address is dialled as it is: the node has no NAT.
	Direct bool
	// NAT says the node is behind a NAT: nobody reaches it unasked, so a
	// direct dial is never worth its timeout.
	NAT bool
	// Varies says the node's NAT maps per destination (symmetric): a node
	// whose own mapping varies too goes straight to the relay.
	Varies bool
	// Via is a rendezvous the node is registered with; Relay the relay it
	// keeps a reservation with and AtRelay its address as the relay sees it
	// (behind a symmetric NAT, not the address others see). Each may be
	// invalid.
	Via, Relay, AtRelay netip.AddrPort
}

// Path is how Connect reached a node: the method, and the address to dial
// over the node's own transport (Direct, Punch) or the relayed conn to run
// QUIC over (Relay).
type Path struct {
	Method Method
	Addr   netip.AddrPort
	Conn   *RelayConn
}

// Connect finds a way to target, in the order of docs/NETWORK.md: a
// direct dial when the hint says the node has no NAT; else a hole punch
// through hint.Via and vias (peers this node is connected to), all asked
// at once, the first to get through winning; else the relay of the
// target, from the hint or named by a rendezvous that knew the target. If
// none of these opens a way it returns the direct address, unless the hint
// says the target is behind NAT (ErrUnreachable).
func (r *Reach) Connect(ctx context.Context, target netip.AddrPort, hint Hint, vias []netip.AddrPort) (Path, error) {
	if hint.Direct {
		return Path{Method: Direct, Addr: target}, nil
	}
	_, self := r.Public()
	relays := make([]relayRef, 0, 2)
	if f := (relayRef{relay: hint.Relay, target: hint.AtRelay}); f.valid() {
		relays = append(relays, f)
	}
	if !(hint.Varies && self == MappingVaries) {
		if hint.Via.IsValid() {
			vias = append([]netip.AddrPort{hint.Via}, vias...)
		}
		addr, relay, ok := r.punchAny(ctx, target, vias)
		if ok && relay.direct {
			return Path{Method: Direct, Addr: target}, nil
		}
		if ok {
			return Path{Method: Punch, Addr: addr}, nil
		}
		if relay.valid() && relay.relay != hint.Relay {
			relays = append(relays, relay)
		}
	}
	for _, f := range relays {
		c, err := r.DialRelay(ctx, f.relay, f.target)
		if err == nil {
			r.relayed.Add(1)
			return Path{Method: Relay, Conn: c}, nil
		}
		r.log.Debug("reach: relay", "target", target, "relay", f.relay, "err", err)
	}
	if len(relays) > 0 {
		r.relayFailed.Add(1)
	}
	if hint.NAT {
		return Path{}, fmt.Errorf("connect to %s: %w", target, ErrUnreachable)
	}
	return Path{Method: Direct, Addr: target}, nil
}

// punchAny punches to target through every via at once and returns the
// address the first successful punch opened; failing that, the relay a
// rendezvous named for the target, if any. When a rendezvous says the
// target has no NAT it returns at once, true and a relayRef marked direct.
func (r *Reach) punchAny(ctx context.Context, target netip.AddrPort, vias []netip.AddrPort) (netip.AddrPort, relayRef, bool) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PunchTimeout+r.cfg.RequestTimeout)
	defer cancel()
	type result struct {
		addr  netip.AddrPort
		relay relayRef
		err   error
	}
	results := make(chan result, len(vias))
	asked := map[netip.AddrPort]bool{target: true}
	for _, via := range vias {
		if asked[via] || r.isSelf(via) {
			continue
		}
		asked[via] = true
		go func() {
			got, relay, err := r.punchVia(ctx, via, target)
			results <- result{got, relay, err}
		}()
	}
	failed := false
	var relay relayRef
	for range len(asked) - 1 {
		res := <-results
		if res.relay.valid() && !relay.valid() {
			relay = res.relay
		}
		switch {
		case res.err == nil:
			r.punched.Add(1)
			cancel() // the other punches stop; their goroutines finish
			return res.addr, relay, true
		case errors.Is(res.err, errTargetDirect):
			cancel()
			return target, relayRef{direct: true}, true
		case errors.Is(res.err, ErrPunchFailed):
			failed = true
		}
	}
	if failed {
		r.punchFailed.Add(1)
	}
	return netip.AddrPort{}, relay, false
}

// DialAddr returns where to dial target after trying to punch through
// vias (Connect with an empty hint, without the relay).
func (r *Reach) DialAddr(ctx context.Context, target netip.AddrPort, vias []netip.AddrPort) netip.AddrPort {
	if addr, _, ok := r.punchAny(ctx, target, vias); ok {
		return addr
	}
	return target
}

// Tend keeps this node's relay reservation: behind a NAT (mapping stable
// or varies), it picks a relay among the observers that offered one and
// observes it every KeepAlive, which keeps the node registered there and
// names the relay in every observe request, so each rendezvous knows it.
// A relay silent for three keepalives is replaced. Without a NAT it holds
// none. Call it now and then (the swarm does on each tick); it does not
// block.
func (r *Reach) Tend() {
	_, m := r.Public()
	now := time.Now()
	r.mu.Lock()
	if m != MappingStable && m != MappingVaries {
		r.reservation = netip.AddrPort{}
		r.mu.Unlock()
		return
	}
	stale := 3 * r.cfg.KeepAlive
	if res := r.reservation; res.IsValid() && now.Sub(r.relays[res]) > stale {
		delete(r.relays, res)
		r.reservation = netip.AddrPort{}
	}
	if !r.reservation.IsValid() {
		var best netip.AddrPort
		var at time.Time
		for a, t := range r.relays {
			if now.Sub(t) <= stale && (!best.IsValid() || t.After(at)) {
				best, at = a, t
			}
		}
		if best.IsValid() {
			r.reservation = best
			clear(r.asked) // tell every rendezvous the new relay soon
		}
	}
	res := r.reservation
	r.mu.Unlock()
	if res.IsValid() {
		r.ObservePeer(res)
	}
}

// Reservation returns the relay this node keeps a reservation with, or an
// invalid address.
func (r *Reach) Reservation() netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reservation
}

// HintFor returns what this node, as rendezvous, can tell others about
// reaching a, a node registered with it: behind NAT or not, and its relay.
// It reports false when a is not registered.
func (r *Reach) HintFor(a netip.AddrPort) (Hint, bool) {
	reg, ok := r.lookup(a)
	if !ok {
		return Hint{}, false
	}
	switch reg.mapping {
	case MappingNone:
		return Hint{Direct: true}, true
	case MappingStable, MappingVaries:
		return Hint{NAT: true, Varies: reg.mapping == MappingVaries, Relay: reg.relay, AtRelay: reg.atRelay}, true
	}
	return Hint{Relay: reg.relay, AtRelay: reg.atRelay}, true
}

// PathOf says how a connection accepted from remote on the node's own
// transport came: Punch if a punch packet came from there in the last
// RegistrationTTL, else Direct.
func (r *Reach) PathOf(remote netip.AddrPort) Method {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.punchedFrom[remote]; ok && time.Since(t) < r.cfg.RegistrationTTL {
		return Punch
	}
	return Direct
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
	// Relayed counts connections Connect opened through a relay,
	// RelayFailed the dials whose every relay refused, RelayedIn the
	// relayed sessions others opened to this node.
	Relayed, RelayFailed, RelayedIn int64
	// RelayBytes counts the payload bytes this node forwarded as relay.
	RelayBytes int64
}

// Stats returns the counters.
func (r *Reach) Stats() ReachStats {
	return ReachStats{Punched: r.punched.Load(), PunchFailed: r.punchFailed.Load(), Introduced: r.introduced.Load(),
		Relayed: r.relayed.Load(), RelayFailed: r.relayFailed.Load(), RelayedIn: r.relayedIn.Load(),
		RelayBytes: r.relay.forwarded.Load()}
}

// NATSwarmID is the DHT swarm ID under which nodes behind a NAT with a
// stable mapping announce their public address for swarm s: the first 20
// bytes of SHA-1("rpe nat v1" ‖ 0 ‖ s). An entry found there is never
// dialled unasked: the finder punches to it through a peer both know, or
// goes through the relay a rendezvous names (docs/FORMATS.md, "Reach
// hints"). Nodes without NAT announce under s itself.
func NATSwarmID(s release.SwarmID) release.SwarmID {
	h := sha1.New()
	h.Write([]byte("rpe nat v1\x00"))
	h.Write(s[:])
	var id release.SwarmID
	copy(id[:], h.Sum(nil))
	return id
}
