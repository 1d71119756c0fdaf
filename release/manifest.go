package release

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/Masterminds/semver/v3"
)

// Manifest limits.
const (
	MinChunkSize     = 16 << 10  // 16 KiB
	MaxChunkSize     = 16 << 20  // 16 MiB
	DefaultChunkSize = 256 << 10 // 256 KiB
	DefaultMaxSize   = 8 << 30   // 8 GiB
	// DefaultLifetime is how long a manifest stays valid when BuildOptions
	// names no expiry.
	DefaultLifetime = 90 * 24 * time.Hour
	// MaxClockSkew is how far in the future a manifest's creation time may
	// lie before Check reports ErrNotYetValid.
	MaxClockSkew = 10 * time.Minute
)

// manifestMagic starts every encoded manifest; the byte after it is the
// format version.
const manifestMagic = "RPEM"

// Manifest formats: 1 has fixed-size chunks, 2 content-defined chunks
// (a chunker, its parameters and every chunk's length).
const (
	manifestFormat        = 1
	manifestFormatContent = 2
)

// ManifestSigContext is prepended to the manifest body before signing, so a
// manifest signature can never be taken for any other signed message of the
// same key (a BEP44 item starts with "3:seq" or "4:salt").
const ManifestSigContext = "rpe manifest v1\x00"

// manifestHeaderMax is the largest encoding before the chunk hashes: magic,
// format, key, four length-prefixed strings, size, chunk size, created,
// expires, file hash, (format 2) chunker, average bits and smallest chunk,
// chunk count.
const manifestHeaderMax = 4 + 1 + 32 + 3*(1+MaxNameLen) + (1 + MaxVersionLen) + 8 + 4 + 8 + 8 + 32 + 6 + 4

// chunkEntryMax is the most bytes a chunk takes in a manifest: its hash,
// and in format 2 its length.
const chunkEntryMax = sha256.Size + 4

// MaxManifestSize is the largest valid manifest encoding under the default
// limits: DefaultMaxSize split into MinChunkSize chunks (about 18 MiB). Read
// no more than this (or ManifestSizeLimit(lim)) of a manifest.
const MaxManifestSize = manifestHeaderMax + (DefaultMaxSize+MinChunkSize-1)/MinChunkSize*chunkEntryMax + ed25519.SignatureSize

// ManifestSizeLimit is the largest valid manifest encoding under lim.
func ManifestSizeLimit(lim Limits) int64 {
	maxSize := min(lim.maxSize(), maxArtifactSize)
	// Content-defined chunks are at least MinChunkSize but the last.
	return manifestHeaderMax + (maxSize+MinChunkSize-1)/MinChunkSize*chunkEntryMax + ed25519.SignatureSize
}

// Limits bounds what ParseManifest accepts. The zero value is the default.
type Limits struct {
	// MaxSize is the largest artifact accepted, in bytes. Zero means
	// DefaultMaxSize (8 GiB).
	MaxSize int64
}

// maxArtifactSize is the largest size the encoding can describe: 2^32-1
// chunks of the smallest size.
const maxArtifactSize = (1<<32 - 1) * MinChunkSize

func (l Limits) maxSize() int64 {
	if l.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return l.MaxSize
}

// Manifest describes one release artifact: what it is for, and the hash of
// every chunk and of the whole file. It is signed by the publisher (see
// SignManifest) and checked before any byte of the artifact is trusted.
type Manifest struct {
	App, Channel, Platform string
	Version                *semver.Version
	Size                   int64      // artifact size in bytes, at least 1
	ChunkSize              int        // MinChunkSize..MaxChunkSize; the last chunk may be shorter
	Chunks                 [][32]byte // SHA-256 of each chunk
	FileHash               [32]byte   // SHA-256 of the whole file
	Created, Expires       time.Time  // whole seconds, UTC

	// Chunker says how the artifact was cut. ChunkFixed (the zero value,
	// format 1): every ChunkSize bytes. ChunkContent (format 2): by
	// content, with ChunkSize the largest chunk, MinChunk the smallest but
	// the last, 2^AverageBits bytes on average, and Lengths the length of
	// every chunk.
	Chunker     Chunker
	AverageBits uint8
	MinChunk    int
	Lengths     []int
	offsets     []int64 // chunk offsets of content-defined chunks, from Lengths
}

// Target returns the app, channel and platform the manifest is for.
func (m *Manifest) Target() Target { return Target{m.App, m.Channel, m.Platform} }

// NumChunks returns the number of chunks the size and chunk size imply.
func (m *Manifest) NumChunks() int {
	if m.ContentDefined() {
		return len(m.Lengths)
	}
	if m.ChunkSize <= 0 || m.Size <= 0 {
		return 0
	}
	return int((m.Size + int64(m.ChunkSize) - 1) / int64(m.ChunkSize))
}

// ChunkOffset returns the file offset of chunk i.
func (m *Manifest) ChunkOffset(i int) int64 {
	if m.ContentDefined() {
		if len(m.offsets) != len(m.Lengths)+1 {
			// Built by hand, never validated: add up the lengths.
			var off int64
			for _, l := range m.Lengths[:min(max(i, 0), len(m.Lengths))] {
				off += int64(l)
			}
			return off
		}
		return m.offsets[min(max(i, 0), len(m.Lengths))]
	}
	return int64(i) * int64(m.ChunkSize)
}

// ChunkLen returns the length of chunk i: ChunkSize, or less for the last
// chunk. It returns 0 for an index outside the manifest.
func (m *Manifest) ChunkLen(i int) int {
	if i < 0 || i >= m.NumChunks() {
		return 0
	}
	if m.ContentDefined() {
		return m.Lengths[i]
	}
	rest := m.Size - m.ChunkOffset(i)
	if rest < int64(m.ChunkSize) {
		return int(rest)
	}
	return m.ChunkSize
}

// VerifyChunk checks chunk i's data against its length and hash. A failure
// is a *ChunkError wrapping ErrChunkMismatch (or ErrNoSuchChunk).
func (m *Manifest) VerifyChunk(i int, data []byte) error {
	if i < 0 || i >= len(m.Chunks) {
		return &ChunkError{Index: i, Err: fmt.Errorf("%w: manifest has %d chunks", ErrNoSuchChunk, len(m.Chunks))}
	}
	if want := m.ChunkLen(i); len(data) != want {
		return &ChunkError{Index: i, Err: fmt.Errorf("%w: %d bytes, want %d", ErrChunkMismatch, len(data), want)}
	}
	if sha256.Sum256(data) != m.Chunks[i] {
		return &ChunkError{Index: i, Err: fmt.Errorf("%w: SHA-256 differs", ErrChunkMismatch)}
	}
	return nil
}

// Check tells whether the manifest may be used by a node running want at
// time now: the target must match exactly (ErrWrongTarget, naming the
// field), now must be before Expires (ErrExpired) and not earlier than
// Created less MaxClockSkew (ErrNotYetValid).
func (m *Manifest) Check(want Target, now time.Time) error {
	for _, f := range [...]struct{ name, got, want string }{
		{"app", m.App, want.App},
		{"channel", m.Channel, want.Channel},
		{"platform", m.Platform, want.Platform},
	} {
		if f.got != f.want {
			return fmt.Errorf("%w: %s is %q, want %q", ErrWrongTarget, f.name, f.got, f.want)
		}
	}
	if !now.Before(m.Expires) {
		return fmt.Errorf("%w at %s", ErrExpired, m.Expires.UTC().Format(time.RFC3339))
	}
	if now.Add(MaxClockSkew).Before(m.Created) {
		return fmt.Errorf("%w: created %s, now %s", ErrNotYetValid, m.Created.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// validate checks every field that does not need the encoding.
func (m *Manifest) validate(lim Limits) error {
	if err := m.Target().Validate(); err != nil {
		return err
	}
	if m.Version == nil {
		return fmt.Errorf("version: %w: missing", ErrNotSemver)
	}
	if vs := m.Version.String(); len(vs) > MaxVersionLen {
		return fmt.Errorf("version %.20q…: %w: longer than %d characters", vs, ErrNotSemver, MaxVersionLen)
	}
	if m.ChunkSize < MinChunkSize || m.ChunkSize > MaxChunkSize {
		return fmt.Errorf("chunk size %d: outside %d..%d", m.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if m.Size <= 0 {
		return fmt.Errorf("size %d: %w", m.Size, ErrEmpty)
	}
	if max := lim.maxSize(); m.Size > max {
		return fmt.Errorf("size %d: %w %d", m.Size, ErrSizeLimit, max)
	}
	if m.Size > maxArtifactSize {
		return fmt.Errorf("size %d: %w %d (the format's largest)", m.Size, ErrSizeLimit, int64(maxArtifactSize))
	}
	if m.Chunker != ChunkFixed {
		if err := m.validateContent(); err != nil {
			return err
		}
		m.index()
	} else if m.AverageBits != 0 || m.MinChunk != 0 || m.Lengths != nil {
		return fmt.Errorf("chunk lengths or content-chunking parameters in a manifest of fixed-size chunks")
	} else if n := m.NumChunks(); len(m.Chunks) != n {
		return fmt.Errorf("%d chunk hashes, but size %d and chunk size %d make %d chunks", len(m.Chunks), m.Size, m.ChunkSize, n)
	}
	if !m.Expires.After(m.Created) {
		return fmt.Errorf("expires %s is not after created %s", m.Expires.UTC().Format(time.RFC3339), m.Created.UTC().Format(time.RFC3339))
	}
	return nil
}

// SignedManifest is a manifest with its signed encoding, as stored in a
// .rpem file and sent to peers.
type SignedManifest struct {
	Manifest  *Manifest
	Raw       []byte     // the full signed encoding (docs/FORMATS.md)
	ID        ManifestID // SHA-256 of Raw
	PublicKey PublicKey  // the publisher key that signed it
}

// SignManifest encodes m with the public key of sk and signs it. Created and
// Expires are truncated to whole seconds. It fails if m breaks a manifest
// rule (names, version, chunk size, chunk count, times). Any size the format
// can describe is signed; receivers refuse sizes above their Limits.
func SignManifest(m *Manifest, sk ed25519.PrivateKey) (*SignedManifest, error) {
	if len(sk) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign manifest: secret key has %d bytes, want %d", len(sk), ed25519.PrivateKeySize)
	}
	mm := *m
	mm.Created = time.Unix(m.Created.Unix(), 0).UTC()
	mm.Expires = time.Unix(m.Expires.Unix(), 0).UTC()
	if err := mm.validate(Limits{MaxSize: maxArtifactSize}); err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	pub := PublicKeyOf(sk)
	body := encodeManifestBody(&mm, pub)
	sig := ed25519.Sign(sk, manifestSignedMessage(body))
	raw := append(body, sig...)
	return &SignedManifest{Manifest: &mm, Raw: raw, ID: sha256.Sum256(raw), PublicKey: pub}, nil
}

func manifestSignedMessage(body []byte) []byte {
	msg := make([]byte, 0, len(ManifestSigContext)+len(body))
	msg = append(msg, ManifestSigContext...)
	return append(msg, body...)
}

func encodeManifestBody(m *Manifest, pub PublicKey) []byte {
	vs := m.Version.String()
	n := 4 + 1 + 32 + 4 + len(m.App) + len(m.Channel) + len(m.Platform) + len(vs) + 8 + 4 + 8 + 8 + 32 + 6 + 4 + chunkEntryMax*len(m.Chunks)
	b := make([]byte, 0, n+ed25519.SignatureSize)
	b = append(b, manifestMagic...)
	content := m.ContentDefined()
	if content {
		b = append(b, manifestFormatContent)
	} else {
		b = append(b, manifestFormat)
	}
	b = append(b, pub[:]...)
	for _, s := range [...]string{m.App, m.Channel, m.Platform, vs} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(m.Size))
	b = binary.BigEndian.AppendUint32(b, uint32(m.ChunkSize))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Created.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Expires.Unix()))
	b = append(b, m.FileHash[:]...)
	if content {
		b = append(b, byte(m.Chunker), m.AverageBits)
		b = binary.BigEndian.AppendUint32(b, uint32(m.MinChunk))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Chunks)))
	for i := range m.Chunks {
		if content {
			b = binary.BigEndian.AppendUint32(b, uint32(m.Lengths[i]))
		}
		b = append(b, m.Chunks[i][:]...)
	}
	return b
}

// ParseManifest decodes a signed manifest and checks it: the layout (no
// trailing bytes, lengths in range), that it is signed by pub (ErrWrongKey
// for another key, ErrBadSignature for a bad signature), and every manifest
// rule (chunk size 16 KiB–16 MiB, chunk count consistent with size and chunk
// size, size within lim, canonical semver, valid names, expires after
// created). Layout and rule failures wrap ErrMalformed. It does not check
// the target or the time: use Manifest.Check.
func ParseManifest(raw []byte, pub PublicKey, lim Limits) (*SignedManifest, error) {
	if max := ManifestSizeLimit(lim); int64(len(raw)) > max {
		return nil, fmt.Errorf("%w manifest: %d bytes, more than the %d a manifest may have: %w", ErrMalformed, len(raw), max, ErrSizeLimit)
	}
	m, signer, bodyLen, err := decodeManifest(raw)
	if err != nil {
		return nil, err
	}
	if signer != pub {
		return nil, fmt.Errorf("manifest signed by %s, want %s: %w (%w)", signer, pub, ErrWrongKey, ErrBadSignature)
	}
	if !ed25519.Verify(pub.Ed25519(), manifestSignedMessage(raw[:bodyLen]), raw[bodyLen:]) {
		return nil, fmt.Errorf("manifest from %s: %w", pub, ErrBadSignature)
	}
	if err := m.validate(lim); err != nil {
		return nil, fmt.Errorf("%w manifest: %w", ErrMalformed, err)
	}
	return &SignedManifest{Manifest: m, Raw: bytes.Clone(raw), ID: sha256.Sum256(raw), PublicKey: pub}, nil
}

// decodeManifest decodes the layout of a signed manifest without checking
// the signature or the manifest rules. It returns the signer's key and the
// length of the signed body; raw[bodyLen:] is the signature.
func decodeManifest(raw []byte) (m *Manifest, signer PublicKey, bodyLen int, err error) {
	d := decoder{b: raw}
	magic := d.bytes(4)
	format := d.byte()
	if d.err == nil && string(magic) != manifestMagic {
		return nil, signer, 0, fmt.Errorf("%w manifest: does not start with %q", ErrMalformed, manifestMagic)
	}
	if d.err == nil && format != manifestFormat && format != manifestFormatContent {
		return nil, signer, 0, fmt.Errorf("%w manifest: format %d, want %d or %d", ErrMalformed, format, manifestFormat, manifestFormatContent)
	}
	content := format == manifestFormatContent
	copy(signer[:], d.bytes(32))
	m = &Manifest{}
	m.App = d.str(MaxNameLen)
	m.Channel = d.str(MaxNameLen)
	m.Platform = d.str(MaxNameLen)
	vs := d.str(MaxVersionLen)
	m.Size = int64(d.uint64())
	m.ChunkSize = int(d.uint32())
	m.Created = time.Unix(int64(d.uint64()), 0).UTC()
	m.Expires = time.Unix(int64(d.uint64()), 0).UTC()
	copy(m.FileHash[:], d.bytes(32))
	entry := 32
	if content {
		m.Chunker = Chunker(d.byte())
		m.AverageBits = d.byte()
		m.MinChunk = int(d.uint32())
		entry += 4
		if d.err == nil && m.Chunker != ChunkContent {
			return nil, signer, 0, fmt.Errorf("%w manifest: format 2 with chunker %d", ErrMalformed, m.Chunker)
		}
	}
	n := int(d.uint32())
	if d.err != nil {
		return nil, signer, 0, fmt.Errorf("%w manifest: %v", ErrMalformed, d.err)
	}
	// Check the length before allocating for the hashes.
	if rest := len(raw) - d.off; rest != n*entry+ed25519.SignatureSize {
		if rest < n*entry+ed25519.SignatureSize {
			return nil, signer, 0, fmt.Errorf("%w manifest: %d chunk entries and a signature need %d bytes, %d left", ErrMalformed, n, n*entry+ed25519.SignatureSize, rest)
		}
		return nil, signer, 0, fmt.Errorf("%w manifest: %d trailing bytes", ErrMalformed, rest-n*entry-ed25519.SignatureSize)
	}
	m.Chunks = make([][32]byte, n)
	if content {
		m.Lengths = make([]int, n)
	}
	for i := range m.Chunks {
		if content {
			m.Lengths[i] = int(d.uint32())
		}
		copy(m.Chunks[i][:], d.bytes(32))
	}
	v, err := parseCanonicalVersion(vs)
	if err != nil {
		return nil, signer, 0, fmt.Errorf("%w manifest: %w", ErrMalformed, err)
	}
	m.Version = v
	return m, signer, d.off, nil
}

// decoder reads big-endian fields; the first short read sets err and every
// later read returns zeros.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return make([]byte, n)
	}
	if len(d.b)-d.off < n {
		d.err = fmt.Errorf("truncated at byte %d: need %d more, have %d", d.off, n, len(d.b)-d.off)
		return make([]byte, n)
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) byte() byte     { return d.bytes(1)[0] }
func (d *decoder) uint32() uint32 { return binary.BigEndian.Uint32(d.bytes(4)) }
func (d *decoder) uint64() uint64 { return binary.BigEndian.Uint64(d.bytes(8)) }
func (d *decoder) str(max int) string {
	at := d.off
	n := int(d.byte())
	if d.err == nil && (n == 0 || n > max) {
		d.err = fmt.Errorf("string at byte %d has length %d, want 1..%d", at, n, max)
	}
	return string(d.bytes(n))
}
