package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// ReachPeers is peer exchange that says how to reach each address: dial it
// directly, punch a hole to it through a named rendezvous, or go through a
// named relay (docs/FORMATS.md, "Reach hints"). It supersedes Peers for
// nodes behind NAT, whose addresses nobody can dial unasked; a plain Peers
// entry still reads as "direct, or unknown".
//
// Version is the format of the entries; this package writes and reads
// ReachVersion. An entry list of another version is kept as Raw (it
// encodes back unchanged) and the receiver ignores it, so a later version
// can add fields without breaking older nodes.
type ReachPeers struct {
	Version uint8
	Entries []ReachEntry
	Raw     []byte // entries of a version other than ReachVersion
}

// ReachVersion is the version of ReachPeers entries this package knows.
const ReachVersion = 1

// ReachEntry says how to reach one node.
type ReachEntry struct {
	Addr netip.AddrPort
	// Direct: the node has no NAT, dial Addr. NAT: it is behind one,
	// never dial it unasked. Varies: its NAT maps per destination
	// (symmetric). Neither Direct nor NAT: the sender does not know.
	Direct, NAT, Varies bool
	// Via is a rendezvous the node is registered with (invalid: none
	// named). The receiver asks Via to introduce it and punches.
	Via netip.AddrPort
	// Relay is the relay the node keeps a reservation with and AtRelay its
	// address as that relay sees it; both valid or both invalid.
	Relay, AtRelay netip.AddrPort
}

// Flags of a ReachEntry, in this order in its first byte.
const (
	reachDirect = 1 << iota
	reachNAT
	reachVaries
	reachVia
	reachRelay
	reachFlags = reachDirect | reachNAT | reachVaries | reachVia | reachRelay
)

// Type implements Message.
func (*ReachPeers) Type() Type { return TypeReachPeers }

func (m *ReachPeers) appendPayload(b []byte) ([]byte, error) {
	b = append(b, m.Version)
	if m.Version != ReachVersion {
		if len(m.Entries) > 0 {
			return nil, fmt.Errorf("%w: ReachPeers version %d with entries", errEncode, m.Version)
		}
		return append(b, m.Raw...), nil
	}
	if len(m.Entries) > 0xffff {
		return nil, fmt.Errorf("%w: ReachPeers with %d entries", errEncode, len(m.Entries))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Entries)))
	for _, e := range m.Entries {
		var f byte
		for bit, on := range map[byte]bool{reachDirect: e.Direct, reachNAT: e.NAT, reachVaries: e.Varies,
			reachVia: e.Via.IsValid(), reachRelay: e.Relay.IsValid()} {
			if on {
				f |= bit
			}
		}
		if e.Direct && (e.NAT || e.Varies) {
			return nil, fmt.Errorf("%w: reach entry %v both direct and behind NAT", errEncode, e.Addr)
		}
		if e.Relay.IsValid() != e.AtRelay.IsValid() {
			return nil, fmt.Errorf("%w: reach entry %v: relay without its address there", errEncode, e.Addr)
		}
		b = append(b, f)
		addrs := []netip.AddrPort{e.Addr}
		if e.Via.IsValid() {
			addrs = append(addrs, e.Via)
		}
		if e.Relay.IsValid() {
			addrs = append(addrs, e.Relay, e.AtRelay)
		}
		for _, a := range addrs {
			var err error
			if b, err = appendPeerAddr(b, a); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// appendPeerAddr appends an address as Peers entries carry it: family (4 or
// 6), IP, port.
func appendPeerAddr(b []byte, ap netip.AddrPort) ([]byte, error) {
	a := ap.Addr()
	switch {
	case !a.IsValid() || a.Zone() != "":
		return nil, fmt.Errorf("%w: peer address %v", errEncode, ap)
	case a.Is4():
		b = append(b, 4)
		a4 := a.As4()
		b = append(b, a4[:]...)
	default:
		b = append(b, 6)
		a16 := a.As16()
		b = append(b, a16[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port()), nil
}

// peerAddr reads what appendPeerAddr wrote.
func (d *decoder) peerAddr(what string) netip.AddrPort {
	var a netip.Addr
	switch fam := d.u8(); fam {
	case 4:
		if b := d.take(4); b != nil {
			a = netip.AddrFrom4([4]byte(b))
		}
	case 6:
		if b := d.take(16); b != nil {
			a = netip.AddrFrom16([16]byte(b))
		}
	default:
		d.fail("%s has family %d", what, fam)
	}
	if d.err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, d.u16())
}

func (d *decoder) reachPeers() *ReachPeers {
	m := &ReachPeers{Version: d.u8()}
	if d.err != nil {
		return m
	}
	if m.Version != ReachVersion {
		if len(d.b) > 0 {
			m.Raw = d.bytes(len(d.b))
		}
		return m
	}
	n := int(d.u16())
	// Each entry takes at least 8 bytes.
	if n > len(d.b)/8 {
		d.fail("ReachPeers claims %d entries in %d bytes", n, len(d.b))
		return m
	}
	if n > 0 {
		m.Entries = make([]ReachEntry, n)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		f := d.u8()
		if f&^reachFlags != 0 || f&reachDirect != 0 && f&(reachNAT|reachVaries) != 0 {
			d.fail("reach entry %d has flags %#x", i, f)
			return m
		}
		e.Direct, e.NAT, e.Varies = f&reachDirect != 0, f&reachNAT != 0, f&reachVaries != 0
		e.Addr = d.peerAddr(fmt.Sprintf("reach entry %d", i))
		if f&reachVia != 0 {
			e.Via = d.peerAddr(fmt.Sprintf("reach entry %d's rendezvous", i))
		}
		if f&reachRelay != 0 {
			e.Relay = d.peerAddr(fmt.Sprintf("reach entry %d's relay", i))
			e.AtRelay = d.peerAddr(fmt.Sprintf("reach entry %d's address at its relay", i))
		}
		if d.err != nil {
			return m
		}
	}
	return m
}
