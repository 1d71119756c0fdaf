package simulation

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// loopback is the only range any simulated packet may come from or go to.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// checkedConn counts packets read from or written to an address outside
// 127.0.0.0/8. netsim refuses to send such packets; this makes sure none is
// even attempted, whatever a node learnt from its peers.
type checkedConn struct {
	net.PacketConn
	bad *atomic.Int64
}

func checked(c net.PacketConn, bad *atomic.Int64) net.PacketConn {
	return &checkedConn{PacketConn: c, bad: bad}
}

func (c *checkedConn) check(a net.Addr) {
	if a == nil {
		return
	}
	var ip netip.Addr
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			c.bad.Add(1)
			return
		}
		ip = ap.Addr()
	}
	if !loopback.Contains(ip.Unmap()) {
		c.bad.Add(1)
	}
}

func (c *checkedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		c.check(a)
	}
	return n, a, err
}

func (c *checkedConn) WriteTo(b []byte, a net.Addr) (int, error) {
	c.check(a)
	return c.PacketConn.WriteTo(b, a)
}

// SetReadBuffer and SetWriteBuffer keep quic-go from warning that the
// buffers cannot be raised; netsim's conns have no kernel buffers.
func (c *checkedConn) SetReadBuffer(int) error  { return nil }
func (c *checkedConn) SetWriteBuffer(int) error { return nil }
