package swarm

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/quic-go/quic-go"

	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// NAT traversal in the swarm. Every connection has a path (network.Method):
// direct, punched or relayed. Dialling goes through network.Reach.Connect
// with what the swarm knows of the address (a network.Hint from the
// announcement or peer exchange entry it came from) and the connected peers
// as rendezvous; a relayed connection runs rpe's QUIC (rpe/1, TLS with the
// node keys) over a network.RelayConn on a transport of its own, so the
// relay forwards only ciphertext. Relayed sessions others open to this node
// arrive on Reach.Incoming and are accepted the same way. A peer reached
// through a relay is neither offered as rendezvous nor observed: its
// address is the one its relay sees, which this node cannot send to.

// maxRendezvous bounds the connected peers offered as rendezvous for one
// dial.
const maxRendezvous = 8

// relayAcceptTimeout bounds the QUIC handshake of a relayed session
// another node opened.
const relayAcceptTimeout = 15 * time.Second

// reachState is the swarm actor's NAT traversal bookkeeping.
type reachState struct {
	// kind is where the node last announced (announceKind).
	kind announceKind
	// hints holds what announcements and peer exchange said about how to
	// reach an address; bounded by maxKnown like known.
	hints map[netip.AddrPort]network.Hint
}

// hint returns what is known of how to reach a.
func (s *swarmActor) hint(a netip.AddrPort) network.Hint {
	return s.reach.hints[a]
}

// learnHint keeps what an announcement or peer exchange entry says of a.
func (s *swarmActor) learnHint(a netip.AddrPort, h network.Hint) {
	if s.reach.hints == nil || len(s.reach.hints) >= maxKnown {
		s.reach.hints = map[netip.AddrPort]network.Hint{}
	}
	s.reach.hints[a] = h
}

// rendezvous returns the addresses of up to maxRendezvous peers connected
// directly or through a punched hole (in map order, which varies), each a
// candidate to introduce this node to a node behind NAT that is also
// connected to it.
func (s *swarmActor) rendezvous() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, min(len(s.peers), maxRendezvous))
	for _, p := range s.peers {
		if len(out) == maxRendezvous {
			break
		}
		if a, ok := remoteAddrPort(p.conn); ok && p.path != network.Relay {
			out = append(out, a)
		}
	}
	return out
}

// observePeers asks every peer connected without a relay, at most once per
// keepalive interval each, which address it sees this node at: the node
// learns its public address and NAT mapping, and stays registered with its
// peers so they can introduce others to it. It also tends the node's relay
// reservation.
func (s *swarmActor) observePeers() {
	r := s.cfg.Node.Reach()
	for _, p := range s.peers {
		if a, ok := remoteAddrPort(p.conn); ok && p.path != network.Relay {
			r.ObservePeer(a)
		}
	}
	r.Tend()
}

// openSlot reports whether this node should dial a now. A node behind NAT
// leaves half of its dial slots to other nodes behind NAT: the nodes
// anyone can dial are few (a fifth in a typical fleet) and each accepts a
// bounded number of peers, so if every node behind NAT filled its slots
// with them first, they would carry most of the traffic while the
// uploads of the others idled. An address is taken for open unless its
// hint says NAT.
func (s *swarmActor) openSlot(a netip.AddrPort) bool {
	if _, m := s.cfg.Node.Reach().Public(); m != network.MappingStable && m != network.MappingVaries {
		return true
	}
	if s.hint(a).NAT {
		return true
	}
	open := 0
	for _, p := range s.peers {
		if p.dialed && p.path == network.Direct {
			open++
		}
	}
	for d := range s.dialing {
		if !s.hint(d).NAT {
			open++
		}
	}
	return open < (s.cfg.MaxPeers+1)/2
}

// connect opens an rpe connection to a: on the node's own transport,
// directly or through a punched hole, or through a relay on a transport of
// its own that is closed with the connection.
func connect(ctx context.Context, node *network.Node, a netip.AddrPort, hint network.Hint, vias []netip.AddrPort, key ed25519.PrivateKey, lim wire.Limits) (*wire.Conn, network.Method, error) {
	p, err := node.Reach().Connect(ctx, a, hint, vias)
	if err != nil {
		return nil, 0, err
	}
	if p.Method != network.Relay {
		c, err := wire.Dial(ctx, node.Transport(), net.UDPAddrFromAddrPort(p.Addr), key, wire.NodeID{}, lim)
		return c, p.Method, err
	}
	tr := &quic.Transport{Conn: p.Conn}
	c, err := wire.Dial(ctx, tr, p.Conn.RemoteAddr(), key, wire.NodeID{}, lim)
	if err != nil {
		tr.Close()
		p.Conn.Close()
		return nil, 0, fmt.Errorf("through relay %s: %w", p.Conn.Relay(), err)
	}
	go func() {
		<-c.Done()
		tr.Close()
		p.Conn.Close()
	}()
	return c, network.Relay, nil
}

// acceptRelayed accepts the relayed sessions other nodes open to this one
// until the swarm stops: one QUIC handshake on each, then the connection
// joins the swarm as any accepted one, with path Relay.
func (s *swarmActor) acceptRelayed(ctx actor.Context) {
	sys, self, c := ctx.ActorSystem(), ctx.Self(), s.ctx
	in, key, lim, priv, adm, log := s.cfg.Node.Reach().Incoming(), s.cfg.NodeKey, s.cfg.Limits, s.cfg.Private, s.adm, s.cfg.Logger
	go func() {
		for {
			var rc *network.RelayConn
			select {
			case rc = <-in:
			case <-c.Done():
				return
			}
			go func() {
				conn, err := acceptOn(c, rc, key, lim)
				if err == nil && !adm.handshake() {
					conn.Close(wire.CodeBusy, "too many new connections")
					err = fmt.Errorf("too many new connections")
				}
				if err == nil {
					err = prove(c, priv, conn)
				}
				if err != nil {
					log.Debug("swarm: relayed session", "relay", rc.Relay(), "err", err)
					return
				}
				sys.Root.Send(self, &accepted{conn: conn, path: network.Relay})
			}()
		}
	}()
}

// acceptOn runs a listener on a transport over rc for one connection; the
// transport and rc close with it, or at once if none comes.
func acceptOn(ctx context.Context, rc *network.RelayConn, key ed25519.PrivateKey, lim wire.Limits) (*wire.Conn, error) {
	tr := &quic.Transport{Conn: rc}
	ln, err := wire.Listen(tr, key, lim)
	if err != nil {
		tr.Close()
		rc.Close()
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, relayAcceptTimeout)
	defer cancel()
	conn, err := ln.Accept(actx)
	if err != nil {
		ln.Close()
		tr.Close()
		rc.Close()
		return nil, err
	}
	go func() {
		<-conn.Done()
		ln.Close()
		tr.Close()
		rc.Close()
	}()
	return conn, nil
}

// pathOf says how a connection accepted on the node's own transport came.
func (s *swarmActor) pathOf(conn *wire.Conn) network.Method {
	a, ok := remoteAddrPort(conn)
	if !ok {
		return network.Direct
	}
	return s.cfg.Node.Reach().PathOf(a)
}

// served passes a Served on to the parent with the path of its peer's
// connection.
func (s *swarmActor) served(ctx actor.Context, m *Served) {
	if ctx.Parent() == nil {
		return
	}
	out := *m
	out.Path = network.Direct.String()
	if p := s.peers[m.Peer]; p != nil {
		out.Path = p.path.String()
		out.Addr = p.conn.RemoteAddr().String()
	}
	ctx.Send(ctx.Parent(), &out)
}

// announceKind is where this node announces its releases, from what its
// peers report of its NAT.
type announceKind uint8

const (
	announceDirect announceKind = iota // no NAT seen, or not known yet: the swarm ID
	announceNAT                        // a stable mapping: the NAT swarm ID
	announceNone                       // a symmetric NAT: no address is right
)

func (s *swarmActor) announceKind() announceKind {
	switch _, m := s.cfg.Node.Reach().Public(); m {
	case network.MappingStable:
		return announceNAT
	case network.MappingVaries:
		return announceNone
	}
	return announceDirect
}

// announceID is the swarm ID under which this node announces release id,
// and false when it announces none: a node behind NAT does not announce
// an address nobody can dial as if it were direct.
func (s *swarmActor) announceID(id release.ManifestID) (release.SwarmID, bool) {
	kind := s.announceKind()
	s.reach.kind = kind
	switch kind {
	case announceNAT:
		return network.NATSwarmID(s.swarmID(id)), true
	case announceNone:
		return release.SwarmID{}, false
	}
	return s.swarmID(id), true
}

// reannounce announces every held release again when the node's NAT
// status has changed since it last announced (a node announces before its
// peers have told it about its NAT).
func (s *swarmActor) reannounce(ctx actor.Context) {
	if s.announceKind() == s.reach.kind {
		return
	}
	for _, r := range s.cfg.Store.List() {
		if r.Count() > 0 {
			s.announce(ctx, r.ID())
		}
	}
}

// sendReachPeers tells a new peer about the peers behind NAT this node is
// connected to (directly or punched) and how to reach them: through this
// node as rendezvous, or through the relay they named here. Peers the new
// one could dial directly went in the plain Peers message.
func (s *swarmActor) sendReachPeers(ctx actor.Context, to wire.NodeID, pid *actor.PID) {
	r := s.cfg.Node.Reach()
	self, _ := r.Public()
	var entries []wire.ReachEntry
	for id, p := range s.peers {
		if id == to || p.path == network.Relay {
			continue
		}
		a, ok := remoteAddrPort(p.conn)
		if !ok {
			continue
		}
		h, ok := r.HintFor(a)
		if !ok || !h.NAT {
			continue
		}
		entries = append(entries, wire.ReachEntry{Addr: a, NAT: true, Varies: h.Varies, Via: self, Relay: h.Relay, AtRelay: h.AtRelay})
		if len(entries) == pexTake {
			break
		}
	}
	if len(entries) > 0 {
		ctx.Send(pid, &send{msg: &wire.ReachPeers{Version: wire.ReachVersion, Entries: entries}})
	}
}

// takeReachPeers learns the entries of a peer's ReachPeers, within the
// same limits as Peers, and dials them as Peers entries are. An entry that
// names no rendezvous gets the sender, which knows the node.
func (s *swarmActor) takeReachPeers(ctx actor.Context, p *peer, m *wire.ReachPeers) {
	if m.Version != wire.ReachVersion {
		return // a later format: not ours to guess
	}
	sender, senderOK := remoteAddrPort(p.conn)
	senderOK = senderOK && p.path != network.Relay
	taken := 0
	for _, e := range m.Entries {
		a := netip.AddrPortFrom(e.Addr.Addr().Unmap(), e.Addr.Port())
		if !dialable(a) || a == s.cfg.Node.QUICAddr() {
			continue
		}
		if s.known[a] && s.hint(a) != (network.Hint{}) {
			continue // known, and how to reach it too
		}
		if taken == pexTake || s.pex.Tokens() < 1 || !p.pex.Allow() || !s.pex.Allow() {
			break
		}
		taken++
		h := network.Hint{Direct: e.Direct, NAT: e.NAT, Varies: e.Varies, Via: e.Via, Relay: e.Relay, AtRelay: e.AtRelay}
		if !h.Via.IsValid() && senderOK {
			h.Via = sender
		}
		if h.Via.IsValid() && !dialable(h.Via) {
			h.Via = netip.AddrPort{}
		}
		if h.Relay.IsValid() && (!dialable(h.Relay) || !dialable(h.AtRelay)) {
			h.Relay, h.AtRelay = netip.AddrPort{}, netip.AddrPort{}
		}
		s.learnHint(a, h)
		s.learn(a)
		s.maybeDial(ctx, a)
	}
}

func remoteAddrPort(c *wire.Conn) (netip.AddrPort, bool) {
	a, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), true
}
