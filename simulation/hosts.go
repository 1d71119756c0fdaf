package simulation

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/rpe-project/engine/simulation/netsim"
)

// Net names the network the nodes of a run talk over.
type Net string

// The networks a run can use.
const (
	// Netsim is the in-memory network (simulation/netsim): every link
	// has its rates, latency and loss, and virtual time works.
	Netsim Net = "netsim"
	// Loopback is real UDP sockets on 127.0.0.1, as `rpe demo` uses:
	// the kernel carries the packets, rates are the engines' own
	// UploadRate and DownloadRate limits, and there is no added latency or
	// loss. It measures what the engine costs on real sockets; it cannot
	// run in a synctest bubble.
	Loopback Net = "loopback"
)

// hostNet is where a run adds its hosts: netsim or loopback.
type hostNet interface {
	addHost(netsim.Link) (host, error)
	// addHostNAT adds a host behind a NAT box of the type.
	addHostNAT(netsim.Link, netsim.NATType) (host, error)
	// bytesSent is every UDP payload byte sent so far, or -1 when the
	// kernel carries them and nothing counts them.
	bytesSent() int64
	close() error
}

// host is one machine of a run: a DHT and a QUIC port on one address.
type host interface {
	// listen opens the host's DHT and QUIC conns (again after a restart,
	// on the same ports).
	listen() (dht, quic net.PacketConn, err error)
	// dhtAddr is where the host's DHT conn listens.
	dhtAddr() string
	// publicIP is the address others see the host's packets come from.
	publicIP() netip.Addr
	String() string
}

// Ports every netsim host uses; each host has its own address.
const (
	dhtPort  = 6881
	quicPort = 4433
)

// netsimNet is the in-memory network.
type netsimNet struct{ n *netsim.Network }

type netsimHost struct{ h *netsim.Host }

func (s netsimNet) addHost(l netsim.Link) (host, error) {
	h, err := s.n.AddHost(l)
	if err != nil {
		return nil, err
	}
	return netsimHost{h}, nil
}

func (s netsimNet) addHostNAT(l netsim.Link, typ netsim.NATType) (host, error) {
	h, err := s.n.AddHostNAT(l, netsim.NAT{Type: typ})
	if err != nil {
		return nil, err
	}
	return netsimHost{h}, nil
}

func (s netsimNet) bytesSent() int64 { return s.n.Counters().BytesSent }
func (s netsimNet) close() error     { return s.n.Close() }

func (h netsimHost) listen() (net.PacketConn, net.PacketConn, error) {
	d, err := h.h.ListenPacket(dhtPort)
	if err != nil {
		return nil, nil, err
	}
	q, err := h.h.ListenPacket(quicPort)
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, q, nil
}

func (h netsimHost) dhtAddr() string      { return netip.AddrPortFrom(h.h.Addr(), dhtPort).String() }
func (h netsimHost) String() string       { return h.h.String() }
func (h netsimHost) publicIP() netip.Addr { return h.h.PublicAddr() }

// loopbackNet hands out pairs of real UDP ports on 127.0.0.1. Link rates
// are not applied here: the run gives them to the engines instead.
type loopbackNet struct{}

// loopbackHost is two ports on 127.0.0.1. Its first listen returns the
// sockets bound when it was added, so its DHT address is known before
// the node starts; later listens (a churned node's restart) bind the same
// ports again.
type loopbackHost struct {
	dht, quic netip.AddrPort
	first     []net.PacketConn // bound at add, until the first listen
}

func (l *loopbackNet) addHost(netsim.Link) (host, error) {
	d, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loopback: %w", err)
	}
	q, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("loopback: %w", err)
	}
	h := &loopbackHost{first: []net.PacketConn{d, q}}
	h.dht = d.LocalAddr().(*net.UDPAddr).AddrPort()
	h.quic = q.LocalAddr().(*net.UDPAddr).AddrPort()
	return h, nil
}

func (l *loopbackNet) addHostNAT(link netsim.Link, typ netsim.NATType) (host, error) {
	if typ != netsim.NATNone {
		return nil, fmt.Errorf("loopback: no NAT boxes (%s)", typ)
	}
	return l.addHost(link)
}

func (l *loopbackNet) bytesSent() int64 { return -1 }
func (l *loopbackNet) close() error     { return nil }

func (h *loopbackHost) listen() (net.PacketConn, net.PacketConn, error) {
	if h.first != nil {
		d, q := h.first[0], h.first[1]
		h.first = nil
		return d, q, nil
	}
	d, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(h.dht))
	if err != nil {
		return nil, nil, fmt.Errorf("loopback: %w", err)
	}
	q, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(h.quic))
	if err != nil {
		d.Close()
		return nil, nil, fmt.Errorf("loopback: %w", err)
	}
	return d, q, nil
}

func (h *loopbackHost) dhtAddr() string      { return h.dht.String() }
func (h *loopbackHost) String() string       { return h.dht.Addr().String() }
func (h *loopbackHost) publicIP() netip.Addr { return h.dht.Addr() }
