package release

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// A rotation statement moves a publisher from one key to another. It names
// the old key and the new one and a time, and is signed by both: by the old
// key, whose trust it hands on, and by the new key, which proves that
// someone holds it (a typo cannot hand the program to a key nobody has).
// Nodes that trust the old key follow it and from then on accept only the
// new key; see FollowRotation for the rules that keep it from being
// replayed backwards.
//
//	"RPER" ‖ format (1) ‖ old key (32) ‖ new key (32) ‖ time (8, µs since
//	1970, big-endian) ‖ signature by the old key (64) ‖ signature by the new
//	key (64)
//
// Both signatures cover RotationSigContext ‖ the first 77 bytes.

// RotationSize is the length of an encoded rotation statement.
const RotationSize = 4 + 1 + 2*PublicKeySize + 8 + 2*ed25519.SignatureSize

// RotationSigContext separates rotation signatures from every other
// signature of the same keys (records start "3:seq", manifests "rpe
// manifest").
const RotationSigContext = "rpe rotation v1\x00"

const (
	rotationMagic  = "RPER"
	rotationFormat = 1
	rotationBody   = 4 + 1 + 2*PublicKeySize + 8
)

// RotationLabel names the TXT record that carries a rotation statement in
// the old key's signed packet: "_rpe-rotate.<z32 old key>.", value "r=" and
// the unpadded base64url of the statement.
const RotationLabel = "_rpe-rotate"

// Rotation errors.
var (
	// ErrRotation is matched by every rotation statement that may not be
	// followed: not signed by the key trusted now, older than the last one
	// followed, or back to a key already retired.
	ErrRotation = errors.New("rotation statement refused")
)

// Rotation is a verified rotation statement.
type Rotation struct {
	Old, New PublicKey
	Time     time.Time // whole microseconds
	raw      []byte
}

// Encode returns the statement's bytes.
func (r *Rotation) Encode() []byte { return bytes.Clone(r.raw) }

// SignRotation makes the statement that moves oldKey's trust to newKey at
// time at.
func SignRotation(oldKey, newKey ed25519.PrivateKey, at time.Time) (*Rotation, error) {
	if len(oldKey) != ed25519.PrivateKeySize || len(newKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign rotation: secret keys must have %d bytes", ed25519.PrivateKeySize)
	}
	oldPub, newPub := PublicKeyOf(oldKey), PublicKeyOf(newKey)
	if oldPub == newPub {
		return nil, fmt.Errorf("sign rotation: %w: old and new key are the same", ErrRotation)
	}
	if at.UnixMicro() <= 0 {
		return nil, fmt.Errorf("sign rotation: time %v before 1970", at)
	}
	b := make([]byte, 0, RotationSize)
	b = append(b, rotationMagic...)
	b = append(b, rotationFormat)
	b = append(b, oldPub[:]...)
	b = append(b, newPub[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixMicro()))
	msg := append([]byte(RotationSigContext), b...)
	b = append(b, ed25519.Sign(oldKey, msg)...)
	b = append(b, ed25519.Sign(newKey, msg)...)
	return ParseRotation(b)
}

// ParseRotation decodes a statement and checks both signatures. Errors
// wrap ErrMalformed or ErrBadSignature.
func ParseRotation(b []byte) (*Rotation, error) {
	if len(b) != RotationSize {
		return nil, fmt.Errorf("%w rotation statement: %d bytes, want %d", ErrMalformed, len(b), RotationSize)
	}
	if string(b[:4]) != rotationMagic || b[4] != rotationFormat {
		return nil, fmt.Errorf("%w rotation statement: bad magic or format %d", ErrMalformed, b[4])
	}
	r := &Rotation{raw: bytes.Clone(b)}
	copy(r.Old[:], b[5:])
	copy(r.New[:], b[5+PublicKeySize:])
	us := binary.BigEndian.Uint64(b[5+2*PublicKeySize:])
	if us == 0 || us > 1<<62 {
		return nil, fmt.Errorf("%w rotation statement: time %d µs out of range", ErrMalformed, us)
	}
	r.Time = time.UnixMicro(int64(us)).UTC()
	if r.Old == r.New {
		return nil, fmt.Errorf("%w rotation statement: old and new key are the same", ErrMalformed)
	}
	msg := append([]byte(RotationSigContext), b[:rotationBody]...)
	sigs := b[rotationBody:]
	if !ed25519.Verify(r.Old.Ed25519(), msg, sigs[:ed25519.SignatureSize]) {
		return nil, fmt.Errorf("rotation statement from %s: old key's %w", r.Old, ErrBadSignature)
	}
	if !ed25519.Verify(r.New.Ed25519(), msg, sigs[ed25519.SignatureSize:]) {
		return nil, fmt.Errorf("rotation statement to %s: new key's %w", r.New, ErrBadSignature)
	}
	return r, nil
}

// FollowRotation decides whether a node that trusts key now, and has
// followed the statements done (oldest first; nil for none), may follow r.
// It may when r is signed by the key trusted now, is newer than the last
// statement followed, and does not lead back to a key retired before: so a
// statement cannot be replayed to take a node back to an old (perhaps
// stolen) key, and a stolen old key cannot sign its way back in.
func FollowRotation(trusted PublicKey, done []*Rotation, r *Rotation) error {
	if r.Old != trusted {
		return fmt.Errorf("%w: it rotates %s, this node trusts %s", ErrRotation, r.Old, trusted)
	}
	if n := len(done); n > 0 && !r.Time.After(done[n-1].Time) {
		return fmt.Errorf("%w: made %s, not after the last one followed (%s)", ErrRotation,
			r.Time.Format(time.RFC3339Nano), done[n-1].Time.Format(time.RFC3339Nano))
	}
	for _, d := range done {
		if d.Old == r.New {
			return fmt.Errorf("%w: back to %s, retired on %s", ErrRotation, r.New, d.Time.Format(time.RFC3339))
		}
	}
	return nil
}

// TrustedKey returns the key a node configured with key trusts after the
// statements chain (oldest first), each checked with FollowRotation.
func TrustedKey(key PublicKey, chain []*Rotation) (PublicKey, error) {
	for i, r := range chain {
		if err := FollowRotation(key, chain[:i], r); err != nil {
			return key, fmt.Errorf("rotation %d of %d: %w", i+1, len(chain), err)
		}
		key = r.New
	}
	return key, nil
}

// EncodeRotations concatenates statements, as a node keeps them on disk.
func EncodeRotations(chain []*Rotation) []byte {
	b := make([]byte, 0, len(chain)*RotationSize)
	for _, r := range chain {
		b = append(b, r.raw...)
	}
	return b
}

// DecodeRotations splits and checks what EncodeRotations wrote.
func DecodeRotations(b []byte) ([]*Rotation, error) {
	if len(b)%RotationSize != 0 {
		return nil, fmt.Errorf("%w rotations: %d bytes is not a multiple of %d", ErrMalformed, len(b), RotationSize)
	}
	var out []*Rotation
	for len(b) > 0 {
		r, err := ParseRotation(b[:RotationSize])
		if err != nil {
			return nil, fmt.Errorf("rotation %d: %w", len(out)+1, err)
		}
		out = append(out, r)
		b = b[RotationSize:]
	}
	return out, nil
}

// MergeRotation returns a packet signed by sk (the old key) with sequence
// number seq that carries r, replacing any statement prev carried; every
// other record of prev is kept, so nodes that do not know rotations still
// see the releases it names.
func MergeRotation(sk ed25519.PrivateKey, prev *SignedPacket, r *Rotation, seq int64) (*SignedPacket, error) {
	pub := PublicKeyOf(sk)
	if r.Old != pub {
		return nil, fmt.Errorf("merge rotation: statement rotates %s, key is %s: %w", r.Old, pub, ErrWrongKey)
	}
	var entries []Entry
	var others []dnsmessage.Resource
	if prev != nil {
		if prev.PublicKey != pub {
			return nil, fmt.Errorf("merge rotation: previous packet signed by %s, not %s: %w (%w)", prev.PublicKey, pub, ErrWrongKey, ErrBadSignature)
		}
		if err := prev.Verify(); err != nil {
			return nil, fmt.Errorf("merge rotation: previous packet: %w", err)
		}
		if seq <= prev.Seq {
			return nil, fmt.Errorf("merge rotation: seq %d, previous %d: %w", seq, prev.Seq, ErrStaleSeq)
		}
		var err error
		if entries, others, err = parseRecords(prev.PublicKey, prev.Packet); err != nil {
			return nil, fmt.Errorf("merge rotation: previous packet: %w", err)
		}
	}
	name := RotationLabel + "." + pub.String() + "."
	others = slices.DeleteFunc(others, func(rr dnsmessage.Resource) bool {
		return strings.EqualFold(rr.Header.Name.String(), name)
	})
	n, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, fmt.Errorf("merge rotation: %w", err)
	}
	others = append(others, dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: n, Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET, TTL: RecordTTL},
		Body:   &dnsmessage.TXTResource{TXT: splitTXT("r=" + base64.RawURLEncoding.EncodeToString(r.raw))},
	})
	return buildPacket(sk, others, entries, seq)
}

// Rotation returns the rotation statement the packet carries, or nil when
// it carries none. A statement that is malformed, badly signed or does not
// rotate the packet's own key is an error.
func (p *SignedPacket) Rotation() (*Rotation, error) {
	_, others, err := parseRecords(p.PublicKey, p.Packet)
	if err != nil {
		return nil, err
	}
	name := strings.ToLower(RotationLabel + "." + p.PublicKey.String() + ".")
	var found *Rotation
	for _, rr := range others {
		if strings.ToLower(rr.Header.Name.String()) != name {
			continue
		}
		body, ok := rr.Body.(*dnsmessage.TXTResource)
		if rr.Header.Type != dnsmessage.TypeTXT || !ok || found != nil {
			return nil, fmt.Errorf("%w rotation record: not one TXT record", ErrMalformed)
		}
		v, ok := strings.CutPrefix(strings.Join(body.TXT, ""), "r=")
		if !ok {
			return nil, fmt.Errorf("%w rotation record: value does not start with r=", ErrMalformed)
		}
		raw, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("%w rotation record: %v", ErrMalformed, err)
		}
		r, err := ParseRotation(raw)
		if err != nil {
			return nil, err
		}
		if r.Old != p.PublicKey {
			return nil, fmt.Errorf("rotation record in the packet of %s rotates %s: %w", p.PublicKey, r.Old, ErrWrongKey)
		}
		found = r
	}
	return found, nil
}
