package release

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"time"
)

// BuildOptions says what a new manifest is for. The zero value of each field
// means its default.
type BuildOptions struct {
	App string // required
	// Channel defaults to "stable".
	Channel string
	// Platform defaults to GOOS-GOARCH of the running program, e.g. "linux-amd64".
	Platform string
	// Version is a semantic version, required (see ParseVersion).
	Version string
	// ChunkSize defaults to DefaultChunkSize (256 KiB).
	ChunkSize int
	// Created defaults to the current time.
	Created time.Time
	// Expires defaults to Created + DefaultLifetime (90 days).
	Expires time.Time
	// MaxSize is the largest artifact accepted; zero means DefaultMaxSize.
	MaxSize int64
	// Chunker: ChunkFixed (default) cuts every ChunkSize bytes; ChunkContent
	// cuts by content (manifest format 2), so that a later release that
	// inserts bytes shares the chunks around the change with this one.
	// With ChunkContent, ChunkSize is the largest chunk (default
	// DefaultContentMax), MinChunk the smallest (default DefaultContentMin)
	// and AverageBits the average's power of two (default
	// DefaultContentAverageBits).
	Chunker     Chunker
	MinChunk    int
	AverageBits uint8
}

// DefaultChannel is the channel of a manifest whose options name none.
const DefaultChannel = "stable"

// DefaultPlatform returns GOOS-GOARCH of the running program.
func DefaultPlatform() string { return runtime.GOOS + "-" + runtime.GOARCH }

// BuildManifest reads an artifact to its end and returns its manifest.
// Memory use does not grow with the artifact: it reads through a few fixed
// buffers and keeps only the 32-byte chunk hashes. The whole-file hash and
// the chunk hashes are computed side by side on two goroutines, both of
// which have ended when it returns. A regular file (an *os.File, or anything
// with ReadAt, Seek and Stat) is read by both goroutines, each at its own
// pace, from its current offset; it must not change meanwhile, and a change
// in its size or modification time is an error. Any other reader is read
// once and its blocks shared.
func BuildManifest(r io.Reader, opts BuildOptions) (*Manifest, error) {
	m := &Manifest{App: opts.App, Channel: opts.Channel, Platform: opts.Platform, ChunkSize: opts.ChunkSize}
	if m.Channel == "" {
		m.Channel = DefaultChannel
	}
	if m.Platform == "" {
		m.Platform = DefaultPlatform()
	}
	if opts.Chunker == ChunkContent {
		m.Chunker, m.MinChunk, m.AverageBits = ChunkContent, opts.MinChunk, opts.AverageBits
		if m.ChunkSize == 0 {
			m.ChunkSize = DefaultContentMax
		}
		if m.MinChunk == 0 {
			m.MinChunk = min(DefaultContentMin, m.ChunkSize)
		}
		if m.AverageBits == 0 {
			m.AverageBits = DefaultContentAverageBits
		}
	} else if opts.Chunker != ChunkFixed {
		return nil, fmt.Errorf("build manifest: unknown chunker %d", opts.Chunker)
	}
	if m.ChunkSize == 0 {
		m.ChunkSize = DefaultChunkSize
	}
	if err := m.Target().Validate(); err != nil {
		return nil, fmt.Errorf("build manifest: %w", err)
	}
	v, err := ParseVersion(opts.Version)
	if err != nil {
		return nil, fmt.Errorf("build manifest: %w", err)
	}
	m.Version = v
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("build manifest: chunk size %d outside %d..%d", m.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	m.Created = opts.Created
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	m.Created = time.Unix(m.Created.Unix(), 0).UTC()
	m.Expires = opts.Expires
	if m.Expires.IsZero() {
		m.Expires = m.Created.Add(DefaultLifetime)
	}
	m.Expires = time.Unix(m.Expires.Unix(), 0).UTC()
	if !m.Expires.After(m.Created) {
		return nil, fmt.Errorf("build manifest: expires %s is not after created %s", m.Expires.Format(time.RFC3339), m.Created.Format(time.RFC3339))
	}
	maxSize := min(Limits{MaxSize: opts.MaxSize}.maxSize(), maxArtifactSize)
	if m.ContentDefined() {
		if err := m.validateContentParams(); err != nil {
			return nil, fmt.Errorf("build manifest: %w", err)
		}
		if err := buildContent(m, r, maxSize+1); err != nil {
			return nil, fmt.Errorf("build manifest: read artifact: %w", err)
		}
		if m.Size == 0 {
			return nil, fmt.Errorf("build manifest: %w", ErrEmpty)
		}
		if m.Size > maxSize {
			return nil, fmt.Errorf("build manifest: artifact %w of %d bytes", ErrSizeLimit, maxSize)
		}
		return m, nil
	}
	sums, whole, n, err := hashInput(r, m.ChunkSize, maxSize+1)
	if err != nil {
		return nil, fmt.Errorf("build manifest: read artifact: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("build manifest: %w", ErrEmpty)
	}
	if n > maxSize {
		return nil, fmt.Errorf("build manifest: artifact %w of %d bytes", ErrSizeLimit, maxSize)
	}
	m.Size, m.Chunks, m.FileHash = n, sums, whole
	return m, nil
}

// VerifyFile reads a file once, streaming, and checks it against m: every
// chunk (the first bad one is reported as a *ChunkError, as soon as it is
// read) and the length (ErrTruncated, ErrTooLong). It reads at most
// m.Size+1 bytes, one chunk at a time into one buffer, and hashes each byte
// once: one SHA-256 pass, on the caller's goroutine.
//
// It does not compare the whole-file hash: the signed chunk hashes already
// commit to every byte (a file that differs from the release differs in
// some chunk, and a chunk with the same SHA-256 but other bytes is a
// SHA-256 collision), so a second SHA-256 pass over the whole file would
// double the cost and add no assurance. The manifest keeps the whole-file
// hash for people and tools (sha256sum) and BuildManifest still computes it.
func VerifyFile(r io.Reader, m *Manifest) error {
	if m.ContentDefined() && m.validateContent() != nil {
		return fmt.Errorf("verify file: inconsistent manifest (size %d, %d chunk lengths, %d chunk hashes)", m.Size, len(m.Lengths), len(m.Chunks))
	}
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize || m.Size <= 0 || len(m.Chunks) != m.NumChunks() {
		return fmt.Errorf("verify file: inconsistent manifest (size %d, chunk size %d, %d chunk hashes)", m.Size, m.ChunkSize, len(m.Chunks))
	}
	buf := make([]byte, min(int64(m.ChunkSize), m.Size))
	var n int64
	for i := range m.NumChunks() {
		want := m.ChunkLen(i)
		k, err := io.ReadFull(r, buf[:want])
		n += int64(k)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			// A partial chunk cannot be compared: the file is short.
			return fmt.Errorf("verify file: %w: %d of %d bytes", ErrTruncated, n, m.Size)
		}
		if err != nil {
			return fmt.Errorf("verify file: %w", err)
		}
		if sha256.Sum256(buf[:want]) != m.Chunks[i] {
			return fmt.Errorf("verify file: %w", &ChunkError{Index: i, Err: fmt.Errorf("%w: SHA-256 differs", ErrChunkMismatch)})
		}
	}
	var one [1]byte
	switch k, err := io.ReadFull(r, one[:]); {
	case k > 0:
		return fmt.Errorf("verify file: %w (%d bytes)", ErrTooLong, m.Size)
	case err != io.EOF:
		return fmt.Errorf("verify file: %w", err)
	}
	return nil
}

// Stream hashing. The caller's goroutine reads fixed blocks and hashes the
// whole file; one helper goroutine hashes the chunks of the same blocks. A
// block goes back to the free list once the helper is done with it; the
// reader is done with it before it takes the next block, so no block is
// written while being read.
const (
	streamBlock   = 128 << 10 // small enough to stay in a core's L2 cache
	streamBuffers = 16        // lets the two goroutines drift apart by 2 MiB
)

// chunkHasher splits a stream into chunks and keeps their SHA-256 sums.
type chunkHasher struct {
	size   int
	filled int
	h      hash.Hash
	sums   [][32]byte
}

func (c *chunkHasher) write(p []byte) {
	for len(p) > 0 {
		if c.filled == 0 && len(p) >= c.size {
			c.sums = append(c.sums, sha256.Sum256(p[:c.size]))
			p = p[c.size:]
			continue
		}
		n := min(len(p), c.size-c.filled)
		c.h.Write(p[:n])
		c.filled += n
		p = p[n:]
		if c.filled == c.size {
			c.flush()
		}
	}
}

func (c *chunkHasher) flush() {
	c.sums = append(c.sums, [32]byte{})
	c.h.Sum(c.sums[len(c.sums)-1][:0]) // into place: no allocation per chunk
	c.h.Reset()
	c.filled = 0
}

func (c *chunkHasher) finish() [][32]byte {
	if c.filled > 0 {
		c.flush()
	}
	return c.sums
}

// hashStream reads r until EOF or limit bytes and returns the SHA-256 of
// every chunk, the SHA-256 of all bytes read, and their count.
func hashStream(r io.Reader, chunkSize int, limit int64) (sums [][32]byte, whole [32]byte, n int64, err error) {

	r = io.LimitReader(r, limit)
	ch := &chunkHasher{size: chunkSize, h: sha256.New(), sums: nil}
	wh := sha256.New()

	first := make([]byte, streamBlock)
	k, err := io.ReadFull(r, first)
	n = int64(k)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		// Small input: no helper needed.
		ch.write(first[:k])
		wh.Write(first[:k])
		wh.Sum(whole[:0])
		return ch.finish(), whole, n, nil
	}
	if err != nil {
		return nil, whole, n, err
	}

	work := make(chan []byte, streamBuffers)
	free := make(chan []byte, streamBuffers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range work {
			ch.write(b)
			free <- b[:cap(b)]
		}
	}()
	allocated := 1 // buffers are made as needed, up to streamBuffers
	buf := first[:k]
	for {
		work <- buf
		wh.Write(buf)
		if len(buf) < streamBlock {
			break
		}
		select {
		case buf = <-free:
		default:
			if allocated < streamBuffers {
				buf = make([]byte, streamBlock)
				allocated++
			} else {
				buf = <-free
			}
		}
		k, err = io.ReadFull(r, buf)
		n += int64(k)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil
			buf = buf[:k]
			if k == 0 {
				break
			}
			continue
		}
		if err != nil {
			break
		}
	}
	close(work)
	<-done
	if err != nil {
		return nil, whole, n, err
	}
	wh.Sum(whole[:0])
	return ch.finish(), whole, n, nil
}
