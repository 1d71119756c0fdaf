package netsim

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// NATType is the behaviour of a host's NAT box, in the terms of RFC 4787:
// how it maps an inside port to a public port (endpoint-independent or
// endpoint-dependent mapping) and which outside packets it lets in
// (filtering).
type NATType int

const (
	// NATNone is no NAT: the host holds its public address itself and
	// receives from anyone.
	NATNone NATType = iota
	// NATFullCone maps an inside port to one public port whatever the
	// destination (endpoint-independent mapping) and lets in packets from
	// any outside address and port once the mapping exists
	// (endpoint-independent filtering).
	NATFullCone
	// NATAddressRestricted maps like NATFullCone but lets in only packets
	// from an address the inside port has sent to, from any of its ports
	// (address-dependent filtering).
	NATAddressRestricted
	// NATPortRestricted maps like NATFullCone but lets in only packets from
	// an address and port the inside port has sent to (address-and-port-
	// dependent filtering). The commonest home router.
	NATPortRestricted
	// NATSymmetric gives every (inside port, destination address and port)
	// its own public port (endpoint-dependent mapping) and lets in only the
	// destination of that mapping.
	NATSymmetric
)

// NATTypes lists every NATType, NATNone first.
func NATTypes() []NATType {
	return []NATType{NATNone, NATFullCone, NATAddressRestricted, NATPortRestricted, NATSymmetric}
}

var natNames = [...]string{"none", "full-cone", "address-restricted", "port-restricted", "symmetric"}

// String returns the name ParseNATType accepts.
func (t NATType) String() string {
	if t < 0 || int(t) >= len(natNames) {
		return fmt.Sprintf("NATType(%d)", int(t))
	}
	return natNames[t]
}

// ErrBadNATType means a NAT type name or value is unknown.
var ErrBadNATType = errors.New("netsim: unknown NAT type")

// ParseNATType parses a name as String returns it.
func ParseNATType(s string) (NATType, error) {
	for i, n := range natNames {
		if strings.EqualFold(s, n) {
			return NATType(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q (want one of %s)", ErrBadNATType, s, strings.Join(natNames[:], ", "))
}

// DefaultNATTimeout is NAT.Timeout when it is zero: RFC 4787 asks for at
// least two minutes.
const DefaultNATTimeout = 2 * time.Minute

// NAT configures the NAT box in front of a host.
type NAT struct {
	Type NATType
	// Timeout is how long a mapping, and each permission to receive from an
	// outside endpoint, lives after the last packet the inside sent through
	// it. Inbound packets do not refresh it. Default DefaultNATTimeout.
	Timeout time.Duration
}

// natMapping is one public port of a NAT box.
type natMapping struct {
	inside uint16
	public uint16
	remote netip.AddrPort // the one destination of a symmetric mapping
	last   time.Time      // last outbound packet
	// allowed holds, per outside endpoint the inside sent to, when it last
	// did. Address-restricted boxes key it by address with port 0.
	allowed map[netip.AddrPort]time.Time
}

type natKey struct {
	inside uint16
	remote netip.AddrPort // zero unless the mapping is endpoint-dependent
}

// natBox is the NAT in front of one host. The host's public address is its
// simnet address; its conns are bound to the inside address.
type natBox struct {
	typ     NATType
	timeout time.Duration

	mu       sync.Mutex
	byInside map[natKey]*natMapping
	byPublic map[uint16]*natMapping
	nextPort int
}

// firstNATPort is where a box starts handing out public ports.
const firstNATPort = 20000

func newNATBox(cfg NAT) *natBox {
	return &natBox{
		typ:      cfg.Type,
		timeout:  cfg.Timeout,
		byInside: make(map[natKey]*natMapping),
		byPublic: make(map[uint16]*natMapping),
		nextPort: firstNATPort,
	}
}

func (b *natBox) filterKey(from netip.AddrPort) netip.AddrPort {
	if b.typ == NATAddressRestricted {
		return netip.AddrPortFrom(from.Addr(), 0)
	}
	return from
}

// outbound returns the public port for a packet from the inside port to
// dst, creating or refreshing the mapping. It reports false when no public
// port is free.
func (b *natBox) outbound(inside uint16, dst netip.AddrPort) (uint16, bool) {
	now := time.Now()
	key := natKey{inside: inside}
	if b.typ == NATSymmetric {
		key.remote = dst
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.byInside[key]
	if m != nil && now.Sub(m.last) > b.timeout {
		b.drop(m)
		m = nil
	}
	if m == nil {
		port, ok := b.freePort(now)
		if !ok {
			return 0, false
		}
		m = &natMapping{inside: inside, public: port, remote: key.remote, allowed: make(map[netip.AddrPort]time.Time)}
		b.byInside[key] = m
		b.byPublic[port] = m
	}
	m.last = now
	m.allowed[b.filterKey(dst)] = now
	return m.public, true
}

// inbound returns the inside port for a packet from src to the public port,
// or false when the box drops it.
func (b *natBox) inbound(public uint16, src netip.AddrPort) (uint16, bool) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.byPublic[public]
	if m == nil {
		return 0, false
	}
	if now.Sub(m.last) > b.timeout {
		b.drop(m)
		return 0, false
	}
	if b.typ == NATFullCone {
		return m.inside, true
	}
	k := b.filterKey(src)
	t, ok := m.allowed[k]
	if !ok {
		return 0, false
	}
	if now.Sub(t) > b.timeout {
		delete(m.allowed, k)
		return 0, false
	}
	return m.inside, true
}

// freePort finds an unused public port, reclaiming expired mappings it
// passes. The caller holds b.mu.
func (b *natBox) freePort(now time.Time) (uint16, bool) {
	for range 65536 - firstNATPort {
		p := uint16(b.nextPort)
		b.nextPort++
		if b.nextPort > 65535 {
			b.nextPort = firstNATPort
		}
		m := b.byPublic[p]
		if m == nil {
			return p, true
		}
		if now.Sub(m.last) > b.timeout {
			b.drop(m)
			return p, true
		}
	}
	return 0, false
}

func (b *natBox) drop(m *natMapping) {
	delete(b.byPublic, m.public)
	delete(b.byInside, natKey{inside: m.inside, remote: m.remote})
}

// mappings returns how many live mappings the box holds.
func (b *natBox) mappings() int {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.byPublic {
		if now.Sub(m.last) <= b.timeout {
			n++
		}
	}
	return n
}
