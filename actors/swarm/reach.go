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

// announceID is the swarm ID under which this node announces a release.
func (s *swarmActor) announceID(id release.ManifestID) release.SwarmID {
	return s.swarmID(id)
}

func remoteAddrPort(c *wire.Conn) (netip.AddrPort, bool) {
	a, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), true
}
