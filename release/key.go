package release

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
)

// PublicKeySize is the length in bytes of a publisher's ed25519 public key.
const PublicKeySize = ed25519.PublicKeySize

// PublicKeyTextLen is the length of a public key in z-base-32 text form.
const PublicKeyTextLen = 52

// zbase32Alphabet is the z-base-32 alphabet, as pkarr writes public keys.
const zbase32Alphabet = "ybndrfg8ejkmcpqxot1uwisza345h769"

// ErrBadKey is matched by every public key parsing error.
var ErrBadKey = errors.New("bad public key")

// PublicKey is a publisher's ed25519 public key.
type PublicKey [PublicKeySize]byte

// String returns the key in z-base-32, the 52-character form pkarr uses.
func (k PublicKey) String() string { return encodeZ32(k[:]) }

// Ed25519 returns the key as a crypto/ed25519 public key.
func (k PublicKey) Ed25519() ed25519.PublicKey { return ed25519.PublicKey(k[:]) }

// ParsePublicKey parses the 52-character z-base-32 text form of a key. A
// "pk:" prefix, as pkarr URIs write it, is accepted.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	s = strings.TrimPrefix(s, "pk:")
	if len(s) != PublicKeyTextLen {
		return k, fmt.Errorf("%w: %d characters, want %d", ErrBadKey, len(s), PublicKeyTextLen)
	}
	b, err := decodeZ32(s, PublicKeySize)
	if err != nil {
		return k, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	copy(k[:], b)
	return k, nil
}

// encodeZ32 writes b in z-base-32, most significant bit first, without padding.
func encodeZ32(b []byte) string {
	out := make([]byte, 0, (len(b)*8+4)/5)
	var acc uint32
	var bits uint
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out = append(out, zbase32Alphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		out = append(out, zbase32Alphabet[(acc<<(5-bits))&31])
	}
	return string(out)
}

// decodeZ32 decodes s into exactly n bytes; unused trailing bits must be zero.
func decodeZ32(s string, n int) ([]byte, error) {
	if len(s) != (n*8+4)/5 {
		return nil, fmt.Errorf("%d characters, want %d", len(s), (n*8+4)/5)
	}
	out := make([]byte, 0, n)
	var acc uint32
	var bits uint
	for i := 0; i < len(s); i++ {
		v := z32Value(s[i])
		if v < 0 {
			return nil, fmt.Errorf("character %q at position %d is not z-base-32", s[i], i+1)
		}
		acc = acc<<5 | uint32(v)
		bits += 5
		if bits >= 8 {
			bits -= 8
			if len(out) < n {
				out = append(out, byte(acc>>bits))
			}
		}
	}
	if acc&(1<<bits-1) != 0 {
		return nil, fmt.Errorf("last character %q has non-zero padding bits", s[len(s)-1])
	}
	return out, nil
}

func z32Value(c byte) int {
	for i := 0; i < len(zbase32Alphabet); i++ {
		if zbase32Alphabet[i] == c {
			return i
		}
	}
	return -1
}
