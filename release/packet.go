package release

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// MaxPacketSize is the largest DNS packet a pkarr signed packet may carry
// (the BEP44 limit on v).
const MaxPacketSize = 1000

// ErrBadSignature is matched by every signature verification failure.
var ErrBadSignature = errors.New("bad signature")

// ErrPacketTooLarge is returned when a DNS packet would exceed MaxPacketSize.
var ErrPacketTooLarge = errors.New("dns packet exceeds 1000 bytes")

// SignedPacket is a pkarr signed packet: a BEP44 mutable item with nil salt
// whose value v is a DNS packet. Seq is the signing time in microseconds since
// the Unix epoch. Anyone may store or re-publish a SignedPacket; only the
// holder of the secret key can make one.
type SignedPacket struct {
	PublicKey PublicKey
	Seq       int64
	Sig       [ed25519.SignatureSize]byte
	Packet    []byte // the DNS packet (v), at most MaxPacketSize bytes
}

// SignableBytes returns the bytes BEP44 signs for a mutable item with nil
// salt: the bencoded "3:seqi<seq>e1:v<len>:<v>". The DNS packet is carried as
// a bencoded byte string, so v's encoding is "<len>:<packet>".
func SignableBytes(seq int64, packet []byte) []byte {
	b := make([]byte, 0, 32+len(packet))
	b = append(b, "3:seqi"...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, "e1:v"...)
	b = strconv.AppendInt(b, int64(len(packet)), 10)
	b = append(b, ':')
	return append(b, packet...)
}

// Verify checks the packet's size and its signature under its own public key.
func (p *SignedPacket) Verify() error {
	if len(p.Packet) > MaxPacketSize {
		return fmt.Errorf("%w: %d bytes", ErrPacketTooLarge, len(p.Packet))
	}
	if !ed25519.Verify(p.PublicKey.Ed25519(), SignableBytes(p.Seq, p.Packet), p.Sig[:]) {
		return fmt.Errorf("signed packet seq %d from %s: %w", p.Seq, p.PublicKey, ErrBadSignature)
	}
	return nil
}

// Time returns the signing time the sequence number stands for.
func (p *SignedPacket) Time() time.Time { return time.UnixMicro(p.Seq) }
