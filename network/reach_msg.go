package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// reachType is the type of a reach packet.
type reachType uint8

const (
	msgObserve       reachType = 1  // which address do you see me at? (and register me)
	msgObserved      reachType = 2  // you are at addr
	msgConnect       reachType = 3  // introduce me to addr
	msgIntroduce     reachType = 4  // addr wants to reach you: punch towards it
	msgIntroduced    reachType = 5  // the target is at addr: punch towards it
	msgRefused       reachType = 6  // the rendezvous or relay cannot help
	msgPunch         reachType = 7  // a hole punch
	msgPunchAck      reachType = 8  // a punch arrived
	msgRelayConnect  reachType = 9  // relay me to addr
	msgRelayOK       reachType = 10 // the relay session nonce is open
	msgRelayIncoming reachType = 11 // addr opened relay session nonce to you
	msgRelayData     reachType = 12 // payload of relay session nonce
)

var reachTypeNames = map[reachType]string{
	msgObserve: "observe", msgObserved: "observed", msgConnect: "connect",
	msgIntroduce: "introduce", msgIntroduced: "introduced", msgRefused: "refused",
	msgPunch: "punch", msgPunchAck: "punch-ack", msgRelayConnect: "relay-connect",
	msgRelayOK: "relay-ok", msgRelayIncoming: "relay-incoming", msgRelayData: "relay-data",
}

func (t reachType) String() string {
	if s, ok := reachTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("reachType(%d)", uint8(t))
}

const (
	// reachMagic is the first byte of every reach packet. Its two top bits
	// are clear, so quic-go takes the packet for non-QUIC; it is not 0 or 1,
	// the first byte of a STUN message.
	reachMagic   = 0x1f
	reachVersion = 1
	// reachFixed is the header: magic, version, type, nonce, mapping,
	// address length.
	reachFixed = 3 + 8 + 1 + 1
	// minObserveLen pads an observe request to at least the size of its
	// answer, so answering never amplifies a spoofed request.
	minObserveLen = 48
	// maxRelayPayload is the largest packet a relay session carries.
	maxRelayPayload = 1400
)

// errBadReach means a packet is not a valid reach packet.
var errBadReach = errors.New("network: bad reach packet")

// reachMsg is one reach packet. Every type has the same layout; fields a
// type does not use are zero.
type reachMsg struct {
	typ     reachType
	nonce   uint64
	mapping Mapping
	addr    netip.AddrPort
	payload []byte

	from netip.AddrPort // where it came from; not encoded
}

func (m reachMsg) encode() []byte {
	b := make([]byte, 0, reachFixed+18+len(m.payload))
	b = append(b, reachMagic, reachVersion, byte(m.typ))
	b = binary.BigEndian.AppendUint64(b, m.nonce)
	b = append(b, byte(m.mapping))
	if m.addr.IsValid() {
		ip := m.addr.Addr().Unmap()
		s := ip.AsSlice()
		b = append(b, byte(len(s)))
		b = append(b, s...)
		b = binary.BigEndian.AppendUint16(b, m.addr.Port())
	} else {
		b = append(b, 0)
	}
	b = append(b, m.payload...)
	if m.typ == msgObserve {
		for len(b) < minObserveLen {
			b = append(b, 0)
		}
	}
	return b
}

func decodeReach(b []byte) (reachMsg, error) {
	var m reachMsg
	if len(b) < reachFixed || b[0] != reachMagic || b[1] != reachVersion {
		return m, errBadReach
	}
	m.typ = reachType(b[2])
	if _, ok := reachTypeNames[m.typ]; !ok {
		return m, fmt.Errorf("%w: type %d", errBadReach, b[2])
	}
	m.nonce = binary.BigEndian.Uint64(b[3:11])
	m.mapping = Mapping(b[11])
	if m.mapping > MappingVaries {
		return m, fmt.Errorf("%w: mapping %d", errBadReach, b[11])
	}
	n := int(b[12])
	rest := b[reachFixed:]
	switch n {
	case 0:
	case 4, 16:
		if len(rest) < n+2 {
			return m, fmt.Errorf("%w: short address", errBadReach)
		}
		ip, _ := netip.AddrFromSlice(rest[:n])
		port := binary.BigEndian.Uint16(rest[n : n+2])
		if port == 0 {
			return m, fmt.Errorf("%w: port 0", errBadReach)
		}
		m.addr = netip.AddrPortFrom(ip.Unmap(), port)
		rest = rest[n+2:]
	default:
		return m, fmt.Errorf("%w: address length %d", errBadReach, n)
	}
	switch m.typ {
	case msgObserve:
		if len(b) < minObserveLen {
			return m, fmt.Errorf("%w: observe request not padded", errBadReach)
		}
	case msgRelayData:
		if len(rest) > maxRelayPayload {
			return m, fmt.Errorf("%w: relay payload of %d bytes", errBadReach, len(rest))
		}
		m.payload = rest
	}
	return m, nil
}
