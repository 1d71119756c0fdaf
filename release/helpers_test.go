package release

import (
	"crypto/ed25519"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// testSeed is the fixed seed of the key behind the golden files.
var testSeed = func() []byte {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = byte(i + 1)
	}
	return s
}()

func testKey() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(testSeed) }

func otherKey() ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	s[0] = 0xff
	return ed25519.NewKeyFromSeed(s)
}

func thirdKey() ed25519.PrivateKey { return otherKeyN(3) }

// otherKeyN is a fixed key whose seed starts with n.
func otherKeyN(n byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	s[0], s[1] = n, 0x77
	return ed25519.NewKeyFromSeed(s)
}

// testTime is the fixed creation time of test manifests.
var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// patternReader yields n deterministic pseudo-random bytes without holding
// them: a 64 KiB random block, with the block number stamped into each copy
// so no two blocks are equal.
type patternReader struct {
	n, off int64
	block  []byte
}

const patternBlock = 64 << 10

func newPatternReader(n int64, seed uint64) *patternReader {
	b := make([]byte, patternBlock)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return &patternReader{n: n, block: b}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if rest := p.n - p.off; int64(len(b)) > rest {
		b = b[:rest]
	}
	total := 0
	for len(b) > 0 {
		blk := p.off / patternBlock
		in := int(p.off % patternBlock)
		k := copy(b, p.block[in:])
		// Stamp the block number over the block's first 8 bytes.
		if in < 8 {
			var stamp [8]byte
			binary.BigEndian.PutUint64(stamp[:], uint64(blk)^binary.BigEndian.Uint64(p.block[:8]))
			copy(b[:min(k, 8-in)], stamp[in:])
		}
		b = b[k:]
		p.off += int64(k)
		total += k
	}
	return total, nil
}

func patternBytes(t testing.TB, n int64, seed uint64) []byte {
	t.Helper()
	b, err := io.ReadAll(newPatternReader(n, seed))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ed25519Sign(sk ed25519.PrivateKey, msg []byte) []byte { return ed25519.Sign(sk, msg) }
