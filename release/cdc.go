package release

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Chunker says how an artifact is cut into chunks.
type Chunker uint8

const (
	// ChunkFixed cuts every ChunkSize bytes (manifest format 1).
	ChunkFixed Chunker = 0
	// ChunkContent cuts where a rolling Rabin fingerprint of the last 64
	// bytes says (restic's chunker, polynomial RabinPolynomial), so cut
	// points move with the bytes: an insertion changes the chunks around it
	// and not every chunk after it (manifest format 2). Chunks are
	// MinChunk..ChunkSize bytes, 2^AverageBits on average.
	ChunkContent Chunker = 1
)

// String returns "fixed" or "content".
func (c Chunker) String() string {
	switch c {
	case ChunkFixed:
		return "fixed"
	case ChunkContent:
		return "content"
	}
	return fmt.Sprintf("chunker(%d)", uint8(c))
}

// ParseChunker reads "fixed" or "content" ("" is fixed).
func ParseChunker(s string) (Chunker, error) {
	switch s {
	case "", "fixed":
		return ChunkFixed, nil
	case "content":
		return ChunkContent, nil
	}
	return 0, fmt.Errorf("chunking %q: want fixed or content", s)
}

// RabinPolynomial is the irreducible polynomial of degree 53 that
// ChunkContent's fingerprint uses. It is part of the format: every
// publisher and node cuts with it, so an old file is cut where the new
// release was.
const RabinPolynomial = 0x3DA3358B4DC173

// Content-defined chunking defaults (BuildOptions with ChunkContent and no
// sizes): 16 KiB to 256 KiB, 64 KiB on average. Measured on two builds of
// examples/hello a line apart (docs/BENCHMARKS.md), these reuse about as
// much as 16 KiB chunks would with a quarter of the chunks.
const (
	DefaultContentMin         = 16 << 10
	DefaultContentMax         = 256 << 10
	DefaultContentAverageBits = 16
	minAverageBits            = 13 // 8 KiB
	maxAverageBits            = 22 // 4 MiB
)

// ContentDefined reports whether the manifest's chunks were cut by content
// (ChunkContent) rather than at fixed offsets.
func (m *Manifest) ContentDefined() bool { return m.Chunker == ChunkContent }

// Split cuts r the way the manifest's artifact was cut and calls emit with
// each piece in order; the slice is valid only during the call. For fixed
// chunks it cuts every ChunkSize bytes. An error from emit ends Split and is
// returned.
func (m *Manifest) Split(r io.Reader, emit func([]byte) error) error {
	if !m.ContentDefined() {
		buf := make([]byte, m.ChunkSize)
		for {
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				if e := emit(buf[:n]); e != nil {
					return e
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	c := chunker.NewWithBoundaries(r, chunker.Pol(RabinPolynomial), uint(m.MinChunk), uint(m.ChunkSize))
	c.SetAverageBits(int(m.AverageBits))
	buf := make([]byte, m.ChunkSize)
	for {
		ch, err := c.Next(buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if e := emit(ch.Data); e != nil {
			return e
		}
	}
}

// buildContent cuts r by content and fills m's chunk lengths and hashes,
// file hash and size, reading at most limit bytes.
func buildContent(m *Manifest, r io.Reader, limit int64) error {
	whole := sha256.New()
	lr := &io.LimitedReader{R: io.TeeReader(io.LimitReader(r, limit), whole), N: limit}
	m.Size = 0
	m.Chunks, m.Lengths = nil, nil
	err := m.Split(lr, func(p []byte) error {
		m.Chunks = append(m.Chunks, sha256.Sum256(p))
		m.Lengths = append(m.Lengths, len(p))
		m.Size += int64(len(p))
		return nil
	})
	if err != nil {
		return err
	}
	whole.Sum(m.FileHash[:0])
	m.index()
	return nil
}

// index fills the chunk offsets of a manifest of content-defined chunks.
func (m *Manifest) index() {
	if !m.ContentDefined() {
		m.offsets = nil
		return
	}
	m.offsets = make([]int64, len(m.Lengths)+1)
	for i, l := range m.Lengths {
		m.offsets[i+1] = m.offsets[i] + int64(l)
	}
}

// validateContent checks the chunking fields of a manifest of
// content-defined chunks.
func (m *Manifest) validateContent() error {
	if m.Chunker != ChunkContent {
		return fmt.Errorf("chunker %d: unknown", m.Chunker)
	}
	if err := m.validateContentParams(); err != nil {
		return err
	}
	if len(m.Lengths) != len(m.Chunks) {
		return fmt.Errorf("%d chunk lengths for %d chunk hashes", len(m.Lengths), len(m.Chunks))
	}
	var sum int64
	for i, l := range m.Lengths {
		if l < 1 || l > m.ChunkSize || (l < m.MinChunk && i != len(m.Lengths)-1) {
			return fmt.Errorf("chunk %d has %d bytes: outside %d..%d", i, l, m.MinChunk, m.ChunkSize)
		}
		sum += int64(l)
	}
	if sum != m.Size {
		return fmt.Errorf("chunk lengths add up to %d, size is %d", sum, m.Size)
	}
	return nil
}

// validateContentParams checks the chunker's parameters before any chunk
// is cut.
func (m *Manifest) validateContentParams() error {
	if m.AverageBits < minAverageBits || m.AverageBits > maxAverageBits {
		return fmt.Errorf("average chunk 2^%d: outside 2^%d..2^%d", m.AverageBits, minAverageBits, maxAverageBits)
	}
	if m.MinChunk < MinChunkSize || m.MinChunk > m.ChunkSize {
		return fmt.Errorf("smallest chunk %d: outside %d..%d (the largest)", m.MinChunk, MinChunkSize, m.ChunkSize)
	}
	return nil
}
