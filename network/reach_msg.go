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
	msgObserve       reachType = 1  // which address do you see me at? (and register me; addr, payload: my relay, me as it sees me)
	msgObserved      reachType = 2  // you are at addr (payload: flags, observedRelays)
	msgConnect       reachType = 3  // introduce me to addr
	msgIntroduce     reachType = 4  // addr wants to reach you: punch towards it
	msgIntroduced    reachType = 5  // the target is at addr: punch towards it (payload: its relay, it as the relay sees it)
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
	// observedRelays is the flag of an observed answer saying the
	// observer relays for the asker: it may keep a reservation there.
	observedRelays = 0x01
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
	b = appendAddr(b, m.addr)
	b = append(b, m.payload...)
	if m.typ == msgObserve {
		for len(b) < minObserveLen {
			b = append(b, 0)
		}
	}
	return b
}

// appendAddr appends an address as the reach format writes it: its length
// (0, 4 or 16), the IP and the port; an invalid address is the single 0.
func appendAddr(b []byte, a netip.AddrPort) []byte {
	if !a.IsValid() {
		return append(b, 0)
	}
	s := a.Addr().Unmap().AsSlice()
	b = append(b, byte(len(s)))
	b = append(b, s...)
	return binary.BigEndian.AppendUint16(b, a.Port())
}

// readAddr reads what appendAddr wrote from b and returns the rest.
func readAddr(b []byte) (netip.AddrPort, []byte, error) {
	if len(b) < 1 {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: no address length", errBadReach)
	}
	n := int(b[0])
	b = b[1:]
	switch n {
	case 0:
		return netip.AddrPort{}, b, nil
	case 4, 16:
	default:
		return netip.AddrPort{}, nil, fmt.Errorf("%w: address length %d", errBadReach, n)
	}
	if len(b) < n+2 {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: short address", errBadReach)
	}
	ip, _ := netip.AddrFromSlice(b[:n])
	port := binary.BigEndian.Uint16(b[n : n+2])
	if port == 0 {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: port 0", errBadReach)
	}
	return netip.AddrPortFrom(ip.Unmap(), port), b[n+2:], nil
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
	addr, rest, err := readAddr(b[reachFixed-1:])
	if err != nil {
		return m, err
	}
	m.addr = addr
	switch m.typ {
	case msgObserve:
		if len(b) < minObserveLen {
			return m, fmt.Errorf("%w: observe request not padded", errBadReach)
		}
		// The sender as its relay sees it, then padding (zeros); an older
		// node sends only padding.
		if m.addr.IsValid() {
			seen, _, err := readAddr(rest)
			if err != nil || !seen.IsValid() {
				return m, fmt.Errorf("%w: observe request names a relay but not its address there", errBadReach)
			}
			m.payload = appendAddr(nil, seen)
		}
	case msgObserved:
		// One byte of flags; an older node sends none.
		if len(rest) > 1 {
			return m, fmt.Errorf("%w: observed answer of %d extra bytes", errBadReach, len(rest))
		}
		m.payload = rest
	case msgIntroduced:
		// The target's relay and the target as the relay sees it; an
		// older node sends none.
		if len(rest) > 0 {
			if _, _, err := readRelayRef(rest); err != nil {
				return m, err
			}
			m.payload = rest
		}
	case msgRelayData:
		if len(rest) > maxRelayPayload {
			return m, fmt.Errorf("%w: relay payload of %d bytes", errBadReach, len(rest))
		}
		m.payload = rest
	}
	return m, nil
}

// appendRelayRef appends a relay and a node's address as that relay sees
// it, as an introduced answer carries them.
func appendRelayRef(b []byte, relay, target netip.AddrPort) []byte {
	return appendAddr(appendAddr(b, relay), target)
}

// readRelayRef reads what appendRelayRef wrote; both must be valid and
// nothing may follow.
func readRelayRef(b []byte) (relay, target netip.AddrPort, err error) {
	relay, b, err = readAddr(b)
	if err == nil {
		target, b, err = readAddr(b)
	}
	if err == nil && (!relay.IsValid() || !target.IsValid() || len(b) != 0) {
		err = fmt.Errorf("%w: relay reference", errBadReach)
	}
	return relay, target, err
}
