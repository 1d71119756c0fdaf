package netsim

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marcopolo/simnet"
)

// Link is a host's access link. Every packet the host sends or receives
// crosses it.
type Link struct {
	// Up and Down are the rates in bytes per second of UDP payload (plus 4
	// bytes per packet of netsim framing); 0 means unlimited. A link shapes:
	// packets wait in a queue for their turn, they are not dropped for
	// exceeding a burst.
	Up, Down int64
	// Latency is the one-way delay of this link. A packet from A to B is
	// delayed by A's Latency plus B's Latency.
	Latency time.Duration
	// Loss is the probability, 0 to 1, that a packet is lost on this link,
	// in either direction.
	Loss float64
	// MTU is the largest IP packet, headers included, the link carries:
	// at most MTU-28 bytes of UDP payload. Default DefaultMTU; at least
	// MinMTU; quic-go needs 1280.
	MTU int
}

func (l Link) validate() error {
	switch {
	case l.Up < 0 || l.Down < 0:
		return fmt.Errorf("%w: negative rate (up %d, down %d)", ErrInvalidLink, l.Up, l.Down)
	case l.Latency < 0:
		return fmt.Errorf("%w: negative latency %v", ErrInvalidLink, l.Latency)
	case !validProbability(l.Loss):
		return fmt.Errorf("%w: loss %v not in [0, 1]", ErrInvalidLink, l.Loss)
	case l.MTU != 0 && (l.MTU < MinMTU || l.MTU > MaxMTU):
		return fmt.Errorf("%w: MTU %d not in [%d, %d]", ErrInvalidLink, l.MTU, MinMTU, MaxMTU)
	}
	return nil
}

// Host is one simulated machine: an address, a link, and the conns bound to
// its ports. All its conns share its link.
type Host struct {
	net        *Network
	addr       netip.Addr // public: the simnet address
	inside     netip.Addr // what its conns are bound to; addr without a NAT
	nat        *natBox    // nil without a NAT
	link       Link
	maxPayload int
	nicAddr    *net.UDPAddr    // the host's simnet endpoint address
	nic        *simnet.SimConn // the host's single simnet endpoint

	cut     atomic.Bool
	loss    atomic.Uint64 // math.Float64bits of the loss probability
	latency atomic.Int64  // one-way link latency in nanoseconds
	group   atomic.Int32  // partition group; 0 = not listed
	rng     *rand.Rand    // loss decisions; used only by simnet's router goroutine

	bytesSent, bytesRecv                     atomic.Int64
	packetsSent, packetsRecv, packetsDropped atomic.Int64

	mu       sync.Mutex
	conns    map[uint16]*conn
	nextPort int
	closed   bool
}

const (
	firstEphemeralPort = 49152
	ephemeralPorts     = 65536 - firstEphemeralPort
)

func newHost(n *Network, addr netip.Addr, l Link) *Host {
	h := &Host{
		net:        n,
		addr:       addr,
		inside:     addr,
		link:       l,
		maxPayload: l.MTU - ipUDPOverhead,
		nicAddr:    &net.UDPAddr{IP: addr.AsSlice(), Port: nicPort},
		rng:        n.hostRand(addr),
		conns:      make(map[uint16]*conn),
		nextPort:   firstEphemeralPort,
	}
	h.loss.Store(math.Float64bits(l.Loss))
	h.latency.Store(int64(l.Latency))
	return h
}

// Addr returns the address the host's conns are bound to: behind a NAT its
// inside address, which no other host can reach, else its public address.
func (h *Host) Addr() netip.Addr { return h.inside }

// PublicAddr returns the address other hosts see the host's packets come
// from: its NAT box's outside address, or its own address without a NAT.
func (h *Host) PublicAddr() netip.Addr { return h.addr }

// NAT returns the type of the host's NAT box.
func (h *Host) NAT() NATType {
	if h.nat == nil {
		return NATNone
	}
	return h.nat.typ
}

// NATMappings returns how many live mappings the host's NAT box holds.
func (h *Host) NATMappings() int {
	if h.nat == nil {
		return 0
	}
	return h.nat.mappings()
}

// String returns the host's address, and its public one behind a NAT.
func (h *Host) String() string {
	if h.nat != nil {
		return h.inside.String() + "(" + h.addr.String() + ")"
	}
	return h.addr.String()
}

// Link returns the link the host was added with, with its current latency
// and loss.
func (h *Host) Link() Link {
	l := h.link
	l.Latency = time.Duration(h.latency.Load())
	l.Loss = math.Float64frombits(h.loss.Load())
	return l
}

// ListenPacket opens a UDP-like conn on the port; port 0 picks a free
// ephemeral port. The conn's LocalAddr is a *net.UDPAddr. Besides
// net.PacketConn it has no-op SetReadBuffer and SetWriteBuffer methods, which
// quic-go looks for.
func (h *Host) ListenPacket(port int) (net.PacketConn, error) {
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("netsim: listen on %s: port %d out of range", h.addr, port)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("netsim: listen on %s: %w", h.addr, net.ErrClosed)
	}
	if port == 0 {
		for range ephemeralPorts {
			p := h.nextPort
			h.nextPort++
			if h.nextPort > 65535 {
				h.nextPort = firstEphemeralPort
			}
			if _, used := h.conns[uint16(p)]; !used {
				port = p
				break
			}
		}
		if port == 0 {
			return nil, fmt.Errorf("netsim: listen on %s: %w", h.addr, ErrNoFreePort)
		}
	} else if _, used := h.conns[uint16(port)]; used {
		return nil, fmt.Errorf("netsim: listen on %s:%d: %w", h.addr, port, ErrPortInUse)
	}
	c := newConn(h, uint16(port))
	h.conns[uint16(port)] = c
	return c, nil
}

// Cut disconnects the host: every packet to or from it is dropped, including
// packets already on their way, until Heal.
func (h *Host) Cut() {
	h.cut.Store(true)
	h.net.log.Debug("netsim: host cut", "addr", h.addr)
}

// Heal reconnects a host that was Cut.
func (h *Host) Heal() {
	h.cut.Store(false)
	h.net.log.Debug("netsim: host healed", "addr", h.addr)
}

// IsCut reports whether the host is cut off.
func (h *Host) IsCut() bool { return h.cut.Load() }

// SetLoss sets the probability, 0 to 1, that a packet to or from the host
// is lost.
func (h *Host) SetLoss(p float64) error {
	if !validProbability(p) {
		return fmt.Errorf("netsim: host %s: loss %v not in [0, 1]", h.addr, p)
	}
	h.loss.Store(math.Float64bits(p))
	return nil
}

// SetLatency sets the one-way latency of the host's link for packets that
// leave their sender's uplink from now on.
func (h *Host) SetLatency(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("netsim: host %s: negative latency %v", h.addr, d)
	}
	h.latency.Store(int64(d))
	return nil
}

// Counters returns the host's traffic counters.
func (h *Host) Counters() Counters {
	return Counters{
		BytesSent:      h.bytesSent.Load(),
		BytesRecv:      h.bytesRecv.Load(),
		PacketsSent:    h.packetsSent.Load(),
		PacketsRecv:    h.packetsRecv.Load(),
		PacketsDropped: h.packetsDropped.Load(),
	}
}

// lose draws whether the host's link loses a packet. Only simnet's router
// goroutine calls it, so rng needs no lock.
func (h *Host) lose() bool {
	p := math.Float64frombits(h.loss.Load())
	return p > 0 && h.rng.Float64() < p
}

// send frames a packet with the port header and queues it on the host's
// uplink. The caller has checked the packet and counted it as sent.
func (h *Host) send(srcPort uint16, dst *Host, dstPort uint16, p []byte) error {
	bp := h.net.getBuf()
	b := binary.BigEndian.AppendUint16((*bp)[:0], srcPort)
	b = binary.BigEndian.AppendUint16(b, dstPort)
	b = append(b, p...)
	_, err := h.nic.WriteTo(b, dst.nicAddr) // copies b
	*bp = b
	h.net.bufs.Put(bp)
	return err
}

// demux reads what the host's downlink delivers and hands each packet to the
// conn bound to its destination port. One goroutine per host.
func (h *Host) demux() {
	defer h.net.demuxers.Done()
	buf := make([]byte, h.maxPayload+headerLen)
	for {
		nb, from, err := h.nic.ReadFrom(buf)
		if err != nil {
			return // the network is closed
		}
		src := h.net.hostOf(from)
		if nb < headerLen || src == nil {
			continue // cannot happen: only netsim writes to the endpoint
		}
		srcPort := binary.BigEndian.Uint16(buf[0:2])
		dstPort := binary.BigEndian.Uint16(buf[2:4])
		if h.cut.Load() {
			src.packetsDropped.Add(1)
			continue
		}
		if h.nat != nil {
			p, ok := h.nat.inbound(dstPort, netip.AddrPortFrom(src.addr, srcPort))
			if !ok {
				src.packetsDropped.Add(1)
				continue
			}
			dstPort = p
		}
		h.mu.Lock()
		c := h.conns[dstPort]
		h.mu.Unlock()
		payload := buf[headerLen:nb]
		if c == nil || !c.deliver(packet{
			From: netip.AddrPortFrom(src.addr, srcPort),
			Data: append([]byte(nil), payload...),
		}) {
			src.packetsDropped.Add(1)
			continue
		}
		h.packetsRecv.Add(1)
		h.bytesRecv.Add(int64(len(payload)))
	}
}

// deliverLocal hands a packet from one of the host's conns to another
// without crossing the link or the NAT box: a host behind a NAT sending to
// its own inside address.
func (h *Host) deliverLocal(srcPort, dstPort uint16, p []byte) {
	h.mu.Lock()
	c := h.conns[dstPort]
	h.mu.Unlock()
	if c == nil || !c.deliver(packet{From: netip.AddrPortFrom(h.inside, srcPort), Data: append([]byte(nil), p...)}) {
		h.packetsDropped.Add(1)
		return
	}
	h.packetsRecv.Add(1)
	h.bytesRecv.Add(int64(len(p)))
}

// close closes the host's conns and endpoint for Network.Close.
func (h *Host) close() {
	h.mu.Lock()
	h.closed = true
	conns := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	h.nic.Close()
}

// unbind frees the port of a closed conn.
func (h *Host) unbind(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conns[c.port] == c {
		delete(h.conns, c.port)
	}
}
