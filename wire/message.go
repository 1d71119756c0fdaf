package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"unicode/utf8"

	"github.com/rpe-project/engine/release"
)

// Message is a decoded frame: a one-way message (*Hello, *Have, *Record,
// *Peers), a request (*GetManifest, *GetChunk) or an error answer (*Error).
// Manifest and chunk answers are raw bytes, not Messages.
type Message interface {
	// Type returns the frame type the message travels in.
	Type() Type
	appendPayload(b []byte) ([]byte, error)
}

// HaveSet says what a node holds of one release.
type HaveSet struct {
	ID       release.ManifestID
	Complete bool   // the node holds every chunk; Bitfield is then empty
	Bitfield []byte // bit i (most significant bit first in each byte) = chunk i held
}

// Hello is the first message on a control stream. It is also sent again
// whenever the sender's set of releases changes; each Hello replaces the
// previous one.
type Hello struct {
	Version  uint16 // ProtocolVersion; zero is filled in by Conn.Send
	NodeID   NodeID // the sender's node ID; zero is filled in by Conn.Send
	Releases []HaveSet
}

// Have says the sender now holds one more chunk of a release.
type Have struct {
	ID    release.ManifestID
	Index uint32
}

// Record carries a publisher's signed record for gossip. Relay is opaque to
// this package (the pkarr relay form); the receiver must verify it.
type Record struct {
	Relay []byte // 1 to MaxRecord bytes
}

// Peers is peer exchange: QUIC addresses of other rpe nodes.
type Peers struct {
	Addrs []netip.AddrPort
}

// GetManifest asks for the signed manifest with the given ID.
type GetManifest struct {
	ID release.ManifestID
}

// GetChunk asks for one chunk of a release.
type GetChunk struct {
	ID    release.ManifestID
	Index uint32
}

// Type implements Message.
func (*Hello) Type() Type { return TypeHello }

// Type implements Message.
func (*Have) Type() Type { return TypeHave }

// Type implements Message.
func (*Record) Type() Type { return TypeRecord }

// Type implements Message.
func (*Peers) Type() Type { return TypePeers }

// Type implements Message.
func (*Error) Type() Type { return TypeError }

// Type implements Message.
func (*GetManifest) Type() Type { return TypeGetManifest }

// Type implements Message.
func (*GetChunk) Type() Type { return TypeGetChunk }

const helloFlagComplete = 0x01

var errEncode = errors.New("wire: cannot encode")

func (m *Hello) appendPayload(b []byte) ([]byte, error) {
	if len(m.Releases) > 0xffff {
		return nil, fmt.Errorf("%w: Hello with %d releases", errEncode, len(m.Releases))
	}
	b = binary.BigEndian.AppendUint16(b, m.Version)
	b = append(b, m.NodeID[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Releases)))
	for _, r := range m.Releases {
		if r.Complete && len(r.Bitfield) > 0 {
			return nil, fmt.Errorf("%w: Hello release %s complete with a bitfield", errEncode, r.ID.Short())
		}
		if uint64(len(r.Bitfield)) > 0xffffffff {
			return nil, fmt.Errorf("%w: Hello bitfield too long", errEncode)
		}
		b = append(b, r.ID[:]...)
		var flags byte
		if r.Complete {
			flags |= helloFlagComplete
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.Bitfield)))
		b = append(b, r.Bitfield...)
	}
	return b, nil
}

func (m *Have) appendPayload(b []byte) ([]byte, error) {
	b = append(b, m.ID[:]...)
	return binary.BigEndian.AppendUint32(b, m.Index), nil
}

func (m *Record) appendPayload(b []byte) ([]byte, error) {
	if len(m.Relay) == 0 || len(m.Relay) > MaxRecord {
		return nil, fmt.Errorf("%w: Record of %d bytes, want 1 to %d", errEncode, len(m.Relay), MaxRecord)
	}
	return append(b, m.Relay...), nil
}

func (m *Peers) appendPayload(b []byte) ([]byte, error) {
	if len(m.Addrs) > 0xffff {
		return nil, fmt.Errorf("%w: Peers with %d addresses", errEncode, len(m.Addrs))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Addrs)))
	for _, ap := range m.Addrs {
		var err error
		if b, err = appendPeerAddr(b, ap); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (m *Error) appendPayload(b []byte) ([]byte, error) {
	if len(m.Reason) > MaxReason || !utf8.ValidString(m.Reason) {
		return nil, fmt.Errorf("%w: Error reason of %d bytes or not UTF-8", errEncode, len(m.Reason))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(m.Code))
	return append(b, m.Reason...), nil
}

func (m *GetManifest) appendPayload(b []byte) ([]byte, error) {
	return append(b, m.ID[:]...), nil
}

func (m *GetChunk) appendPayload(b []byte) ([]byte, error) {
	b = append(b, m.ID[:]...)
	return binary.BigEndian.AppendUint32(b, m.Index), nil
}

// AppendMessage appends m as a whole frame (header and payload) to dst.
func AppendMessage(dst []byte, m Message) ([]byte, error) {
	start := len(dst)
	b, err := m.appendPayload(AppendHeader(dst, m.Type(), 0))
	if err != nil {
		return dst, err
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(len(b)-start-HeaderSize))
	return b, nil
}

// EncodeMessage returns m as a whole frame.
func EncodeMessage(m Message) ([]byte, error) { return AppendMessage(nil, m) }

// DecodeMessage decodes the payload of a frame of type t. Decoding is strict:
// every field must be in range and no byte may be left over, so a decoded
// message encodes back to exactly the same bytes. The message does not alias
// payload. Errors match ErrUnknownMessage or ErrProtocol.
func DecodeMessage(t Type, payload []byte) (Message, error) {
	d := decoder{b: payload}
	var m Message
	switch t {
	case TypeHello:
		m = d.hello()
	case TypeHave:
		h := &Have{}
		d.id(&h.ID)
		h.Index = d.u32()
		m = h
	case TypeRecord:
		if len(payload) == 0 || len(payload) > MaxRecord {
			return nil, fmt.Errorf("%w: Record of %d bytes", ErrProtocol, len(payload))
		}
		m = &Record{Relay: d.bytes(len(payload))}
	case TypePeers:
		m = d.peers()
	case TypeReachPeers:
		m = d.reachPeers()
	case TypeError:
		e := &Error{Code: ErrorCode(d.u16())}
		r := d.bytes(len(d.b))
		if len(r) > MaxReason || !utf8.Valid(r) {
			d.fail("Error reason of %d bytes or not UTF-8", len(r))
		}
		e.Reason = string(r)
		m = e
	case TypeGetManifest:
		g := &GetManifest{}
		d.id(&g.ID)
		m = g
	case TypeGetChunk:
		g := &GetChunk{}
		d.id(&g.ID)
		g.Index = d.u32()
		m = g
	case TypeManifest, TypeChunk, TypeProof:
		return nil, fmt.Errorf("%w: %s is raw bytes, not a message", ErrProtocol, t)
	default:
		return nil, fmt.Errorf("%w: %s", ErrUnknownMessage, t)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrProtocol, t, d.err)
	}
	return m, nil
}

// decoder reads fields from a payload; the first error sticks and later
// reads return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	d.b = nil
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.fail("truncated: need %d bytes, have %d", n, len(d.b))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) bytes(n int) []byte {
	p := d.take(n)
	if p == nil {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) u8() byte {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) id(dst *release.ManifestID) {
	copy(dst[:], d.take(idSize))
}

func (d *decoder) hello() *Hello {
	h := &Hello{Version: d.u16()}
	copy(h.NodeID[:], d.take(idSize))
	n := int(d.u16())
	// Each release takes at least 37 bytes: never allocate for more than fit.
	if n > len(d.b)/(idSize+5) {
		d.fail("Hello claims %d releases in %d bytes", n, len(d.b))
		return h
	}
	if n > 0 {
		h.Releases = make([]HaveSet, n)
	}
	for i := range h.Releases {
		r := &h.Releases[i]
		d.id(&r.ID)
		flags := d.u8()
		if flags&^helloFlagComplete != 0 {
			d.fail("Hello release %d has unknown flags %#x", i, flags)
		}
		r.Complete = flags&helloFlagComplete != 0
		bl := d.u32()
		if uint64(bl) > uint64(len(d.b)) {
			d.fail("Hello bitfield of %d bytes in %d", bl, len(d.b))
		}
		if r.Complete && bl != 0 {
			d.fail("Hello release %d complete with a bitfield", i)
		}
		if bl > 0 {
			r.Bitfield = d.bytes(int(bl))
		}
	}
	return h
}

func (d *decoder) peers() *Peers {
	p := &Peers{}
	n := int(d.u16())
	// Each address takes at least 7 bytes.
	if n > len(d.b)/7 {
		d.fail("Peers claims %d addresses in %d bytes", n, len(d.b))
		return p
	}
	if n > 0 {
		p.Addrs = make([]netip.AddrPort, n)
	}
	for i := range p.Addrs {
		p.Addrs[i] = d.peerAddr(fmt.Sprintf("Peers address %d", i))
		if d.err != nil {
			return p
		}
	}
	return p
}
