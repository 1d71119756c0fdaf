package netsim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/rpe-project/engine/internal/pktqueue"
)

// packet is a datagram waiting in a conn's receive queue.
type packet = pktqueue.Packet

// conn is a host's UDP-like endpoint on one port.
type conn struct {
	host  *Host
	port  uint16
	laddr *net.UDPAddr
	recv  *pktqueue.Queue

	mu            sync.Mutex
	writeDeadline time.Time
}

var _ net.PacketConn = (*conn)(nil)

func newConn(h *Host, port uint16) *conn {
	return &conn{
		host:  h,
		port:  port,
		laddr: &net.UDPAddr{IP: h.inside.AsSlice(), Port: int(port)},
		recv:  pktqueue.New(h.net.recvQueue),
	}
}

// deliver queues a packet; it reports false if the conn is closed or its
// queue is full.
func (c *conn) deliver(p packet) bool { return c.recv.Push(p) }

// ReadFrom reads the next packet. It blocks until one arrives, the conn is
// closed (an error matching net.ErrClosed) or the read deadline passes (an
// error matching os.ErrDeadlineExceeded). A packet longer than b is cut to
// len(b), as UDP does.
func (c *conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.recv.Read(b)
	if err != nil {
		return 0, nil, c.opError("read", nil, err)
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteTo sends a packet. It refuses, with an error matching ErrNotLoopback,
// any destination outside 127.0.0.0/8. Like UDP it reports success for a
// packet that is then lost, including one to an address nobody holds and one
// larger than the path MTU allows.
func (c *conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	deadline := c.writeDeadline
	c.mu.Unlock()
	if c.recv.Closed() {
		return 0, c.opError("write", addr, net.ErrClosed)
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return 0, c.opError("write", addr, os.ErrDeadlineExceeded)
	}
	dst, err := destination(addr)
	if err != nil {
		return 0, c.opError("write", addr, err)
	}
	h := c.host
	h.packetsSent.Add(1)
	h.bytesSent.Add(int64(len(b)))
	if h.nat != nil && dst.Addr() == h.inside {
		if !h.cut.Load() {
			h.deliverLocal(c.port, dst.Port(), b)
		} else {
			h.packetsDropped.Add(1)
		}
		return len(b), nil
	}
	to := h.net.Host(dst.Addr())
	srcPort := c.port
	if h.nat != nil && to != nil {
		p, ok := h.nat.outbound(c.port, dst)
		if !ok {
			h.packetsDropped.Add(1)
			return len(b), nil
		}
		srcPort = p
	}
	// The path MTU check is also what keeps simnet working: its token
	// bucket never admits a packet larger than the bucket, and a link
	// handed one stalls for good.
	if h.cut.Load() || to == nil || len(b) > min(h.maxPayload, to.maxPayload) {
		h.packetsDropped.Add(1)
		return len(b), nil
	}
	if err := h.send(srcPort, to, dst.Port(), b); err != nil {
		// The network was closed under us.
		return 0, c.opError("write", addr, net.ErrClosed)
	}
	return len(b), nil
}

// destination parses a write address and checks it lies in 127.0.0.0/8.
func destination(addr net.Addr) (netip.AddrPort, error) {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.UDPAddr:
		if a == nil {
			return ap, errors.New("netsim: nil address")
		}
		ap = a.AddrPort()
	case nil:
		return ap, errors.New("netsim: nil address")
	default:
		var err error
		ap, err = netip.ParseAddrPort(addr.String())
		if err != nil {
			return ap, fmt.Errorf("netsim: address %q: %w", addr.String(), err)
		}
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().Is4() || !loopback.Contains(ap.Addr()) {
		return ap, fmt.Errorf("destination %s: %w", ap, ErrNotLoopback)
	}
	return ap, nil
}

func (c *conn) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.laddr, Addr: addr, Err: err}
}

// Close closes the conn and frees its port. A blocked ReadFrom returns an
// error matching net.ErrClosed.
func (c *conn) Close() error {
	if c.recv.Close() {
		c.host.unbind(c)
	}
	return nil
}

// LocalAddr returns the conn's *net.UDPAddr.
func (c *conn) LocalAddr() net.Addr { return c.laddr }

// SetDeadline sets the read and the write deadline.
func (c *conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets when a blocked or later ReadFrom gives up; zero means
// never. Do not use it on a conn that anacrolix/dht reads: the DHT treats a
// deadline error as fatal.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.recv.SetReadDeadline(t)
	return nil
}

// SetWriteDeadline sets after when WriteTo fails; zero means never. Writes
// never block, so only a deadline already past has an effect.
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return nil
}

// SetReadBuffer does nothing; quic-go calls it and warns if it is missing.
func (c *conn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer does nothing; quic-go calls it and warns if it is missing.
func (c *conn) SetWriteBuffer(int) error { return nil }
