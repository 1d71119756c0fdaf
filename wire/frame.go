package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Type is a frame's type byte.
type Type uint8

// Frame types. The values are part of the wire format.
const (
	TypeHello       Type = 0x01 // control stream: first message, node ID, version, what it holds
	TypeHave        Type = 0x02 // control stream: one more chunk held
	TypeRecord      Type = 0x03 // control stream: a signed record, for gossip
	TypePeers       Type = 0x04 // control stream: peer exchange
	TypeError       Type = 0x05 // request stream: an error answer
	TypeProof       Type = 0x06 // proof stream (private swarms): MAC proving the swarm secret
	TypeReachPeers  Type = 0x07 // control stream: peer exchange saying how to reach each peer (reach.go)
	TypeGetManifest Type = 0x10 // request stream: ask for a manifest
	TypeGetChunk    Type = 0x11 // request stream: ask for a chunk
	TypeManifest    Type = 0x20 // request stream: the manifest's bytes
	TypeChunk       Type = 0x21 // request stream: the chunk's bytes
)

// HeaderSize is the size of a frame header: the type byte and a 4-byte
// big-endian payload length.
const HeaderSize = 5

// Fixed payload sizes and caps of the types that have one.
const (
	idSize          = 32
	haveSize        = idSize + 4
	getManifestSize = idSize
	getChunkSize    = idSize + 4
	errorMaxSize    = 2 + MaxReason
	proofSize       = 32 // HMAC-SHA256
	peerEntryMax    = 1 + 16 + 2
	reachEntryMax   = 1 + 4*peerEntryMax

	// MaxRecord is the largest Record payload: a pkarr signed packet in relay
	// form (public key, signature, seq, DNS packet of at most 1000 bytes).
	MaxRecord = 32 + 64 + 8 + 1000
)

// String returns the type's name.
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "Hello"
	case TypeHave:
		return "Have"
	case TypeRecord:
		return "Record"
	case TypePeers:
		return "Peers"
	case TypeReachPeers:
		return "ReachPeers"
	case TypeError:
		return "Error"
	case TypeProof:
		return "Proof"
	case TypeGetManifest:
		return "GetManifest"
	case TypeGetChunk:
		return "GetChunk"
	case TypeManifest:
		return "Manifest"
	case TypeChunk:
		return "Chunk"
	}
	return fmt.Sprintf("Type(%#02x)", uint8(t))
}

// Known reports whether t is a frame type of this protocol version.
func (t Type) Known() bool { return typeCap(t) != 0 }

// typeCap returns the largest payload a type can ever have, whatever the
// limits: its fixed size or cap, -1 if only Limits bound it, 0 if unknown.
func typeCap(t Type) int {
	switch t {
	case TypeHave:
		return haveSize
	case TypeRecord:
		return MaxRecord
	case TypeError:
		return errorMaxSize
	case TypeProof:
		return proofSize
	case TypeGetManifest:
		return getManifestSize
	case TypeGetChunk:
		return getChunkSize
	case TypeHello, TypePeers, TypeReachPeers, TypeManifest, TypeChunk:
		return -1
	}
	return 0
}

// AppendHeader appends a frame header for a payload of n bytes to dst.
func AppendHeader(dst []byte, t Type, n int) []byte {
	dst = append(dst, byte(t))
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// EncodeFrame returns a frame of type t carrying payload.
func EncodeFrame(t Type, payload []byte) []byte {
	b := make([]byte, 0, HeaderSize+len(payload))
	return append(AppendHeader(b, t, len(payload)), payload...)
}

// checkHeader validates a header against the type's cap and limit.
func checkHeader(t Type, n uint32, limit int) error {
	c := typeCap(t)
	if c == 0 {
		return fmt.Errorf("%w: %s", ErrUnknownMessage, t)
	}
	if limit < 0 {
		return fmt.Errorf("%w: %s frame not allowed here", ErrProtocol, t)
	}
	if c > 0 && c < limit {
		limit = c
	}
	if uint64(n) > uint64(limit) {
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrFrameTooLarge, t, n, limit)
	}
	return nil
}

// DecodeFrame parses one frame from the start of b. The payload may be at
// most max bytes (a negative max refuses every frame) and no more than its
// type allows. The payload and rest alias
// b. A frame cut short is an io.ErrUnexpectedEOF.
func DecodeFrame(b []byte, max int) (t Type, payload, rest []byte, err error) {
	if len(b) < HeaderSize {
		return 0, nil, nil, fmt.Errorf("frame header: %w", io.ErrUnexpectedEOF)
	}
	t = Type(b[0])
	n := binary.BigEndian.Uint32(b[1:HeaderSize])
	if err := checkHeader(t, n, max); err != nil {
		return 0, nil, nil, err
	}
	b = b[HeaderSize:]
	if uint64(len(b)) < uint64(n) {
		return 0, nil, nil, fmt.Errorf("%s frame of %d bytes: %w", t, n, io.ErrUnexpectedEOF)
	}
	return t, b[:n:n], b[n:], nil
}

// ReadFrame reads one frame from r. The payload may be at most max bytes and
// no more than its type allows; nothing larger is ever allocated. A stream
// that ends before the first byte gives io.EOF, one that ends inside a frame
// io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, max int) (Type, []byte, error) {
	return readFrame(r, func(Type) int { return max })
}

// readFrame reads one frame whose payload limit depends on its type.
func readFrame(r io.Reader, limit func(Type) int) (Type, []byte, error) {
	t, n, err := readHeader(r, limit)
	if err != nil {
		return 0, nil, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("%s frame of %d bytes: %w", t, n, noEOF(err))
	}
	return t, p, nil
}

// readHeader reads and checks a frame header.
func readHeader(r io.Reader, limit func(Type) int) (Type, int, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, 0, fmt.Errorf("frame header: %w", err)
		}
		return 0, 0, err
	}
	t := Type(h[0])
	n := binary.BigEndian.Uint32(h[1:])
	if err := checkHeader(t, n, limit(t)); err != nil {
		return 0, 0, err
	}
	return t, int(n), nil
}

// noEOF turns an io.EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
