package network

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/rpe-project/engine/internal/pktqueue"
)

// relaySessionIdle is how long a relay keeps a session nobody sends on.
const relaySessionIdle = time.Minute

// relaySession is a pair a relay forwards for.
type relaySession struct {
	a, b netip.AddrPort // requester, target
	last time.Time
}

// relayer is both halves of relaying: the relay's forwarding table (when
// ReachConfig.Relay is set) and this node's own relayed conns.
type relayer struct {
	r *Reach

	forwarded atomic.Int64 // payload bytes forwarded as relay

	mu       sync.Mutex
	sessions map[uint64]*relaySession     // as relay
	limits   map[netip.Addr]*rate.Limiter // as relay, per sending node
	conns    map[uint64]*RelayConn        // as an end
	incoming chan *RelayConn
	closed   bool
}

func newRelayer(r *Reach) *relayer {
	return &relayer{
		r:        r,
		sessions: make(map[uint64]*relaySession),
		limits:   make(map[netip.Addr]*rate.Limiter),
		conns:    make(map[uint64]*RelayConn),
		incoming: make(chan *RelayConn, 16),
	}
}

func (l *relayer) close() {
	l.mu.Lock()
	l.closed = true
	conns := make([]*RelayConn, 0, len(l.conns))
	for _, c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (l *relayer) handle(src netip.AddrPort, m reachMsg) {
	switch m.typ {
	case msgRelayConnect:
		l.open(src, m)
	case msgRelayIncoming:
		l.r.mu.Lock()
		_, ours := l.r.observed[src] // only a relay we registered with
		l.r.mu.Unlock()
		if !ours || !m.addr.IsValid() {
			return
		}
		l.mu.Lock()
		if _, dup := l.conns[m.nonce]; dup || l.closed {
			l.mu.Unlock()
			return
		}
		c := newRelayConn(l, m.nonce, src, m.addr)
		l.conns[m.nonce] = c
		l.mu.Unlock()
		l.r.relayedIn.Add(1)
		select {
		case l.incoming <- c:
		default:
			c.Close() // nobody takes relayed conns
		}
	case msgRelayData:
		if l.forward(src, m) {
			return
		}
		l.mu.Lock()
		c := l.conns[m.nonce]
		l.mu.Unlock()
		if c != nil && c.relay == src {
			c.deliver(m.payload)
		}
	}
}

// open answers a relay request as relay.
func (l *relayer) open(src netip.AddrPort, m reachMsg) {
	_, registered := l.r.lookup(m.addr)
	now := time.Now()
	l.mu.Lock()
	for id, s := range l.sessions {
		if now.Sub(s.last) > relaySessionIdle {
			delete(l.sessions, id)
		}
	}
	s, exists := l.sessions[m.nonce]
	ok := l.r.cfg.Relay && registered && (exists || len(l.sessions) < l.r.cfg.MaxRelays)
	if ok && !exists {
		s = &relaySession{a: src, b: m.addr, last: now}
		l.sessions[m.nonce] = s
	}
	ok = ok && s.a == src && s.b == m.addr
	l.mu.Unlock()
	if !ok {
		l.r.send(src, reachMsg{typ: msgRefused, nonce: m.nonce})
		return
	}
	l.r.send(m.addr, reachMsg{typ: msgRelayIncoming, nonce: m.nonce, addr: src})
	l.r.send(src, reachMsg{typ: msgRelayOK, nonce: m.nonce, addr: m.addr})
}

// forward passes a session's packet to the other end, within the sender's
// bandwidth cap; it reports whether this node relays the session.
func (l *relayer) forward(src netip.AddrPort, m reachMsg) bool {
	l.mu.Lock()
	s := l.sessions[m.nonce]
	if s == nil {
		l.mu.Unlock()
		return false
	}
	var to netip.AddrPort
	switch src {
	case s.a:
		to = s.b
	case s.b:
		to = s.a
	default:
		l.mu.Unlock()
		return true
	}
	s.last = time.Now()
	lim := l.limits[src.Addr()]
	if lim == nil {
		rt := l.r.cfg.RelayRate
		lim = rate.NewLimiter(rate.Limit(rt), max(rt, 64<<10)) // a second's worth
		l.limits[src.Addr()] = lim
	}
	l.mu.Unlock()
	if !lim.AllowN(time.Now(), len(m.payload)) {
		return true // over the cap: dropped, QUIC backs off
	}
	l.forwarded.Add(int64(len(m.payload)))
	l.r.send(to, reachMsg{typ: msgRelayData, nonce: m.nonce, payload: m.payload})
	return true
}

// DialRelay asks relay, a node both sides are registered with, to forward
// packets between this node and target, and returns the conn carrying
// them. Run QUIC over it (a quic.Transport on the conn, with path MTU
// discovery off): the relay then forwards only ciphertext. Target receives
// its end from Incoming.
func (r *Reach) DialRelay(ctx context.Context, relay, target netip.AddrPort) (*RelayConn, error) {
	nonce := newNonce()
	a, err := r.request(ctx, relay, reachMsg{typ: msgRelayConnect, nonce: nonce, addr: target})
	if err != nil {
		return nil, fmt.Errorf("relay to %s via %s: %w", target, relay, err)
	}
	if a.typ != msgRelayOK {
		return nil, fmt.Errorf("relay to %s via %s: %w", target, relay, ErrRelayRefused)
	}
	l := r.relay
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrReachClosed
	}
	c := newRelayConn(l, nonce, relay, target)
	l.conns[nonce] = c
	return c, nil
}

// Incoming delivers the relayed conns others opened to this node; if
// nobody takes them, they are closed.
func (r *Reach) Incoming() <-chan *RelayConn { return r.relay.incoming }

// RelayConn is one end of a relayed session: a net.PacketConn whose
// packets travel, framed, through the relay to the other end. Whatever
// address WriteTo is given, packets go to the other end; ReadFrom reports
// the other end's address as the relay sees it.
type RelayConn struct {
	l      *relayer
	nonce  uint64
	relay  netip.AddrPort
	remote *net.UDPAddr
	local  *net.UDPAddr
	recv   *pktqueue.Queue
}

var _ net.PacketConn = (*RelayConn)(nil)

// relayQueue bounds the packets waiting in a RelayConn.
const relayQueue = 256

func newRelayConn(l *relayer, nonce uint64, relay, remote netip.AddrPort) *RelayConn {
	return &RelayConn{
		l: l, nonce: nonce, relay: relay,
		remote: net.UDPAddrFromAddrPort(remote),
		local:  net.UDPAddrFromAddrPort(l.r.local),
		recv:   pktqueue.New(relayQueue),
	}
}

// Relay returns the address of the relay.
func (c *RelayConn) Relay() netip.AddrPort { return c.relay }

// RemoteAddr returns the other end's address as the relay sees it.
func (c *RelayConn) RemoteAddr() net.Addr { return c.remote }

func (c *RelayConn) deliver(p []byte) {
	c.recv.Push(pktqueue.Packet{Data: append([]byte(nil), p...)})
}

// ReadFrom returns the next packet from the other end.
func (c *RelayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, err := c.recv.Read(b)
	if err != nil {
		return 0, nil, err
	}
	return n, c.remote, nil
}

// WriteTo sends p to the other end through the relay. A packet larger than
// a relay carries is dropped, as a router drops one over the path MTU.
func (c *RelayConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	if c.recv.Closed() {
		return 0, net.ErrClosed
	}
	if len(p) > maxRelayPayload {
		return len(p), nil
	}
	c.l.r.send(c.relay, reachMsg{typ: msgRelayData, nonce: c.nonce, payload: p})
	return len(p), nil
}

// Close closes the conn; a blocked ReadFrom returns net.ErrClosed.
func (c *RelayConn) Close() error {
	if !c.recv.Close() {
		return nil
	}
	c.l.mu.Lock()
	if c.l.conns[c.nonce] == c {
		delete(c.l.conns, c.nonce)
	}
	c.l.mu.Unlock()
	return nil
}

// LocalAddr returns the node's QUIC socket address.
func (c *RelayConn) LocalAddr() net.Addr { return c.local }

// SetDeadline sets the read deadline; writes never block.
func (c *RelayConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline sets when a blocked or later ReadFrom gives up.
func (c *RelayConn) SetReadDeadline(t time.Time) error {
	c.recv.SetReadDeadline(t)
	return nil
}

// SetWriteDeadline does nothing: writes never block.
func (c *RelayConn) SetWriteDeadline(time.Time) error { return nil }

// SetReadBuffer does nothing; quic-go looks for it.
func (c *RelayConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer does nothing; quic-go looks for it.
func (c *RelayConn) SetWriteBuffer(int) error { return nil }
