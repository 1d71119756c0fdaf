package netsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/marcopolo/simnet"
)

// Errors returned by netsim, for errors.Is.
var (
	// ErrNotLoopback means an address or subnet lies outside 127.0.0.0/8.
	ErrNotLoopback = errors.New("netsim: address outside 127.0.0.0/8")
	// ErrSubnetFull means every address of the subnet is taken.
	ErrSubnetFull = errors.New("netsim: subnet full")
	// ErrPortInUse means another conn of the host holds the port.
	ErrPortInUse = errors.New("netsim: port in use")
	// ErrNoFreePort means the host has no free ephemeral port left.
	ErrNoFreePort = errors.New("netsim: no free port")
	// ErrInvalidLink means a Link field is out of range.
	ErrInvalidLink = errors.New("netsim: invalid link")
	// ErrForeignHost means a host of another network was passed in.
	ErrForeignHost = errors.New("netsim: host belongs to another network")
	// ErrDuplicateHost means a host appears in more than one partition group.
	ErrDuplicateHost = errors.New("netsim: host listed twice")
)

const (
	// DefaultMTU is the MTU of a link whose MTU is zero.
	DefaultMTU = 1500
	// MinMTU is the smallest MTU a link accepts (the IPv4 minimum
	// reassembly size). quic-go needs at least 1280.
	MinMTU = 576
	// MaxMTU is the largest MTU a link accepts.
	MaxMTU = 65535
	// DefaultRecvQueue is the receive queue of a conn, in packets, when
	// Config.RecvQueue is zero.
	DefaultRecvQueue = 1024
	// DefaultLinkBurst is Config.LinkBurst when it is zero.
	DefaultLinkBurst = 10 * time.Millisecond

	// ipUDPOverhead is the IPv4 plus UDP header that MTU includes.
	ipUDPOverhead = 28
	// headerLen is netsim's port header inside every simnet packet.
	headerLen = 4
	// nicPort is the port of every host's single simnet endpoint.
	nicPort = 1
	// unlimitedBits is the simnet rate standing in for "unlimited": simnet
	// has no infinite rate, and 10^15 bit/s never makes a packet wait.
	unlimitedBits = 1_000_000_000_000_000
)

// Config configures a Network. The zero value is usable.
type Config struct {
	// Seed makes packet loss reproducible: each host's loss decisions come
	// from a generator seeded with Seed and the host's address.
	Seed int64
	// Subnet is where host addresses come from; it must lie inside
	// 127.0.0.0/8. Default 127.20.0.0/16. The first and the last address of
	// the subnet are never handed out.
	Subnet netip.Prefix
	// Logger receives debug events (hosts added, cuts, partitions). Nil
	// means silent.
	Logger *slog.Logger
	// LinkBurst is how much traffic a link may send at once after being
	// idle, in time at its rate; it is never less than one packet. Default
	// DefaultLinkBurst. A larger burst keeps links at their rate in real time
	// although timers fire late; a negative one means a single packet, which
	// shapes exactly in virtual time.
	LinkBurst time.Duration
	// RecvQueue is how many packets wait in a conn until ReadFrom takes
	// them; more are dropped, as by a full socket buffer. Default
	// DefaultRecvQueue.
	RecvQueue int
	// NATSubnet is where the inside addresses of hosts behind a NAT come
	// from: the k-th such host gets the address .2 of the k-th /24 of it.
	// It must lie inside 127.0.0.0/8 and not overlap Subnet. Default
	// 127.64.0.0/10 (16384 NATs).
	NATSubnet netip.Prefix
}

// Counters counts traffic. For a host, BytesSent and PacketsSent count what
// its conns handed to WriteTo, BytesRecv and PacketsRecv what reached a conn's
// receive queue, and PacketsDropped the packets the host sent that never
// reached one (loss, cut, partition, no such host or port, too big, full
// receive queue). Packets dropped by the links' CoDel queues are not seen by
// netsim and not counted. Sizes are UDP payload bytes.
type Counters struct {
	BytesSent, BytesRecv                     int64
	PacketsSent, PacketsRecv, PacketsDropped int64
}

func (c *Counters) add(o Counters) {
	c.BytesSent += o.BytesSent
	c.BytesRecv += o.BytesRecv
	c.PacketsSent += o.PacketsSent
	c.PacketsRecv += o.PacketsRecv
	c.PacketsDropped += o.PacketsDropped
}

// Network is a simulated network of hosts. Its methods are safe for
// concurrent use.
type Network struct {
	log       *slog.Logger
	seed      int64
	subnet    netip.Prefix
	base      uint32 // subnet's first address
	maxHosts  int
	recvQueue int
	linkBurst time.Duration
	natSubnet netip.Prefix
	sim       *simnet.Simnet
	dropAddr  *net.UDPAddr // routed nowhere: simnet drops packets sent here
	bufs      sync.Pool    // *[]byte scratch for framing
	demuxers  sync.WaitGroup

	mu     sync.RWMutex
	hosts  []*Host // hosts[i] has address base+1+i
	nats   int     // hosts behind a NAT so far
	closed bool
}

// New starts an empty network. Under testing/synctest, call it inside the
// bubble.
func New(cfg Config) (*Network, error) {
	subnet := cfg.Subnet
	if !subnet.IsValid() {
		subnet = netip.MustParsePrefix("127.20.0.0/16")
	}
	if !subnet.Addr().Is4() || subnet.Bits() < 8 || !loopback.Contains(subnet.Addr()) {
		return nil, fmt.Errorf("netsim: subnet %s: %w", subnet, ErrNotLoopback)
	}
	if subnet.Bits() > 30 {
		return nil, fmt.Errorf("netsim: subnet %s has room for fewer than 2 hosts", subnet)
	}
	subnet = subnet.Masked()
	natSubnet := cfg.NATSubnet
	if !natSubnet.IsValid() {
		natSubnet = netip.MustParsePrefix("127.64.0.0/10")
	}
	if !natSubnet.Addr().Is4() || natSubnet.Bits() < 8 || !loopback.Contains(natSubnet.Addr()) {
		return nil, fmt.Errorf("netsim: NAT subnet %s: %w", natSubnet, ErrNotLoopback)
	}
	natSubnet = natSubnet.Masked()
	if natSubnet.Bits() > 24 {
		return nil, fmt.Errorf("netsim: NAT subnet %s is smaller than a /24", natSubnet)
	}
	if natSubnet.Overlaps(subnet) {
		return nil, fmt.Errorf("netsim: NAT subnet %s overlaps subnet %s", natSubnet, subnet)
	}
	if cfg.RecvQueue < 0 {
		return nil, fmt.Errorf("netsim: negative receive queue %d", cfg.RecvQueue)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Network{
		log:       log,
		seed:      cfg.Seed,
		subnet:    subnet,
		base:      addrToUint(subnet.Addr()),
		maxHosts:  1<<(32-subnet.Bits()) - 2,
		recvQueue: cfg.RecvQueue,
		natSubnet: natSubnet,
		dropAddr:  &net.UDPAddr{IP: subnet.Addr().AsSlice(), Port: 0},
	}
	switch {
	case cfg.LinkBurst == 0:
		n.linkBurst = DefaultLinkBurst
	case cfg.LinkBurst > 0:
		n.linkBurst = cfg.LinkBurst
	}
	if n.recvQueue == 0 {
		n.recvQueue = DefaultRecvQueue
	}
	n.sim = &simnet.Simnet{
		LatencyFunc: n.route,
		// simnet logs every packet it cannot route at error level; netsim
		// routes the packets it drops to nowhere on purpose.
		Logger: slog.New(slog.DiscardHandler),
	}
	n.sim.Start()
	return n, nil
}

// loopback is 127.0.0.0/8, the only range a netsim conn sends to.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// Subnet returns the subnet host addresses come from.
func (n *Network) Subnet() netip.Prefix { return n.subnet }

// AddHost adds a host with the next free address of the subnet.
func (n *Network) AddHost(l Link) (*Host, error) { return n.AddHostNAT(l, NAT{}) }

// AddHostNAT adds a host behind a NAT box of its own. The box holds the next
// free address of the subnet (the host's PublicAddr); the host's conns are
// bound to its inside address (Addr), which nobody outside can send to. With
// NATNone it is AddHost.
func (n *Network) AddHostNAT(l Link, nat NAT) (*Host, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	if nat.Type < NATNone || nat.Type > NATSymmetric {
		return nil, fmt.Errorf("%w: %d", ErrBadNATType, int(nat.Type))
	}
	if nat.Timeout < 0 {
		return nil, fmt.Errorf("netsim: negative NAT timeout %v", nat.Timeout)
	}
	if nat.Timeout == 0 {
		nat.Timeout = DefaultNATTimeout
	}
	if l.MTU == 0 {
		l.MTU = DefaultMTU
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("netsim: add host: %w", net.ErrClosed)
	}
	if len(n.hosts) >= n.maxHosts {
		return nil, fmt.Errorf("netsim: add host to %s: %w", n.subnet, ErrSubnetFull)
	}
	addr := uintToAddr(n.base + 1 + uint32(len(n.hosts)))
	h := newHost(n, addr, l)
	if nat.Type != NATNone {
		if n.nats >= 1<<(24-n.natSubnet.Bits()) {
			return nil, fmt.Errorf("netsim: add host behind NAT: NAT subnet %s: %w", n.natSubnet, ErrSubnetFull)
		}
		h.inside = uintToAddr(addrToUint(n.natSubnet.Addr()) + uint32(n.nats)<<8 + 2)
		h.nat = newNATBox(nat)
		n.nats++
	}
	h.nic = n.sim.NewEndpoint(h.nicAddr, simnet.NodeBiDiLinkSettings{
		Uplink:   simnet.LinkSettings{BitsPerSecond: bitsPerSecond(l.Up), MTU: n.burst(l.Up, h.maxPayload)},
		Downlink: simnet.LinkSettings{BitsPerSecond: bitsPerSecond(l.Down), MTU: n.burst(l.Down, h.maxPayload)},
	})
	n.hosts = append(n.hosts, h)
	n.demuxers.Add(1)
	go h.demux()
	n.log.Debug("netsim: host added", "addr", addr, "inside", h.inside, "nat", nat.Type, "up", l.Up, "down", l.Down, "latency", l.Latency, "loss", l.Loss, "mtu", l.MTU)
	return h, nil
}

// burst is the token bucket size of a link direction. simnet calls it MTU and
// uses it as the bucket size and the FQ-CoDel quantum; netsim enforces the
// real MTU itself. A bucket of one packet shapes exactly in virtual time, but
// in real time every late timer wakeup is link time lost for good, so the
// bucket holds Config.LinkBurst of traffic.
func (n *Network) burst(bytesPerSecond int64, maxPayload int) int {
	b := maxPayload + headerLen
	if bytesPerSecond == 0 || bytesPerSecond >= unlimitedBits/8 {
		return b
	}
	return max(b, int(min(float64(bytesPerSecond)*n.linkBurst.Seconds(), 1<<30)))
}

func bitsPerSecond(bytesPerSecond int64) int {
	if bytesPerSecond == 0 || bytesPerSecond >= unlimitedBits/8 {
		return unlimitedBits
	}
	return int(bytesPerSecond * 8)
}

// Hosts returns the hosts in the order they were added.
func (n *Network) Hosts() []*Host {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return append([]*Host(nil), n.hosts...)
}

// Host returns the host with the public address, or nil.
func (n *Network) Host(addr netip.Addr) *Host {
	addr = addr.Unmap()
	if !addr.Is4() {
		return nil
	}
	v := addrToUint(addr)
	if v <= n.base {
		return nil
	}
	i := uint64(v - n.base - 1)
	n.mu.RLock()
	defer n.mu.RUnlock()
	if i >= uint64(len(n.hosts)) {
		return nil
	}
	return n.hosts[i]
}

// hostOf returns the host of a simnet packet address, or nil.
func (n *Network) hostOf(a net.Addr) *Host {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return nil
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return nil
	}
	return n.Host(ip)
}

// Partition splits the network: packets between hosts of different groups
// are dropped. Hosts listed in no group, including hosts added later, form
// one more group of their own, so Partition(a) cuts the hosts in a off from
// everyone else. A new partition replaces the previous one.
func (n *Network) Partition(groups ...[]*Host) error {
	seen := make(map[*Host]bool)
	for _, g := range groups {
		for _, h := range g {
			if h == nil || h.net != n {
				return fmt.Errorf("netsim: partition: %w", ErrForeignHost)
			}
			if seen[h] {
				return fmt.Errorf("netsim: partition: %s: %w", h.addr, ErrDuplicateHost)
			}
			seen[h] = true
		}
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, h := range n.hosts {
		h.group.Store(0)
	}
	for i, g := range groups {
		for _, h := range g {
			h.group.Store(int32(i + 1))
		}
	}
	n.log.Debug("netsim: partitioned", "groups", len(groups))
	return nil
}

// HealPartition ends any partition: every host reaches every other again.
func (n *Network) HealPartition() {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, h := range n.hosts {
		h.group.Store(0)
	}
	n.log.Debug("netsim: partition healed")
}

// Counters returns the sum of every host's counters.
func (n *Network) Counters() Counters {
	var c Counters
	for _, h := range n.Hosts() {
		c.add(h.Counters())
	}
	return c
}

// Close closes every conn (a blocked ReadFrom returns net.ErrClosed), stops
// the network's goroutines and waits for them. Later calls do nothing.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	hosts := append([]*Host(nil), n.hosts...)
	n.mu.Unlock()
	for _, h := range hosts {
		h.close()
	}
	n.sim.Close()
	n.demuxers.Wait()
	return nil
}

// route is simnet's latency function, called once per packet by simnet's
// router after the packet left the sender's uplink. It also decides whether
// the core drops the packet: a dropped packet is readdressed to dropAddr,
// where simnet's router finds no endpoint and discards it.
func (n *Network) route(p *simnet.Packet) time.Duration {
	src, dst := n.hostOf(p.From), n.hostOf(p.To)
	if src == nil || dst == nil {
		return 0 // simnet drops it; cannot happen for packets netsim sent
	}
	if src.cut.Load() || dst.cut.Load() || src.group.Load() != dst.group.Load() ||
		src.lose() || dst.lose() {
		src.packetsDropped.Add(1)
		p.To = n.dropAddr
		return 0
	}
	return time.Duration(src.latency.Load() + dst.latency.Load())
}

func (n *Network) getBuf() *[]byte {
	if b, ok := n.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, DefaultMTU)
	return &b
}

// hostRand returns the loss generator of the host at addr.
func (n *Network) hostRand(addr netip.Addr) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(n.seed), uint64(addrToUint(addr))|0x6e657473<<32))
}

func addrToUint(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func uintToAddr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func validProbability(p float64) bool { return !math.IsNaN(p) && p >= 0 && p <= 1 }
