// Package store keeps the releases a node holds on disk: for each manifest
// ID, the signed manifest, the data file (complete or being downloaded) and
// the set of chunks already verified.
//
// It is the one place that state lives. The downloader writes chunks and
// marks them verified; the swarm reads verified chunks to serve peers; both
// run in different goroutines, so a Store is safe for concurrent use. A chunk
// is served only once it is marked verified, and marked only after its bytes
// are on disk, so a peer never receives an unverified byte.
//
// Layout under the store directory (see docs/FORMATS.md, "State directory"):
//
//	releases/<manifest id hex>/manifest   the signed manifest, as published
//	releases/<manifest id hex>/data       the file, at its full size
//	releases/<manifest id hex>/have       one bit per verified chunk
//	lock                                  held (flock) while a Store is open
//
// Only one Store may have a directory open at a time, in any process: a
// second Open fails with ErrInUse instead of two writers interleaving their
// chunk sets and deleting each other's files.
//
// The have file is created (and rewritten by Open) through a temporary
// file and a rename; MarkVerified then writes the one byte holding the
// chunk's bit in place, so marking a whole download writes one byte per
// chunk rather than the whole file per chunk (64 KiB per 16 KiB chunk for
// the largest releases). Neither it nor the chunk writes are fsynced: a set
// bit is only a claim, and Open checks every claimed chunk against the
// signed manifest before trusting it. A power loss or a torn write can
// therefore cost chunks that must be fetched again, never an unverified
// byte served or installed; an fsync per chunk would cost thousands of disk
// flushes per GiB for no added safety.
//
// Every file is read with a cap from the manifest's limits, and Open deletes
// only directories named like a manifest ID, so a state directory pointed
// at the wrong place by mistake loses none of the files already there.
package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rpe-project/engine/internal/atomicfile"
	"github.com/rpe-project/engine/release"
)

// ErrNotHeld is returned for a release or chunk this node does not hold.
var ErrNotHeld = errors.New("not held")

// ErrInUse is returned by Open when another Store, in this or another
// process, has the directory open.
var ErrInUse = errors.New("state dir in use by another rpe process")

// ErrVerified is returned by WriteChunk for a chunk already verified: its
// bytes on disk are being served and are never overwritten.
var ErrVerified = errors.New("chunk already verified")

// errDamaged marks a release whose files are wrong, not merely unreadable.
var errDamaged = errors.New("damaged release")

// Store is the set of releases on disk.
type Store struct {
	dir    string
	pub    release.PublicKey
	limits release.Limits

	mu   sync.Mutex
	rels map[release.ManifestID]*Release
	lock *os.File // holds the directory's lock until Close
}

// Open opens (creating if needed) the store in dir, locks it (ErrInUse if
// another Store has it open) and loads every release whose manifest
// verifies under pub. A release whose files are damaged is removed and
// logged, never half-trusted; an entry not named like a manifest ID is not
// the store's and is left alone.
func Open(dir string, pub release.PublicKey, limits release.Limits, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dir == "" {
		return nil, errors.New("open store: no directory given")
	}
	s := &Store{dir: dir, pub: pub, limits: limits, rels: map[release.ManifestID]*Release{}}
	root := filepath.Join(dir, "releases")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s.lock = lock
	ents, err := os.ReadDir(root)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	for _, e := range ents {
		rd := filepath.Join(root, e.Name())
		if _, err := release.ParseManifestID(e.Name()); err != nil || !e.IsDir() {
			log.Warn("store: ignoring an entry that is not a release", "path", rd)
			continue
		}
		r, err := load(rd, pub, limits)
		if errors.Is(err, errDamaged) {
			log.Warn("store: dropping damaged release", "dir", rd, "err", err)
			os.RemoveAll(rd)
			continue
		}
		if err != nil {
			// An I/O error (permissions, too many open files) says nothing
			// about the release: leave it for the next start.
			log.Warn("store: skipping release", "dir", rd, "err", err)
			continue
		}
		s.rels[r.sm.ID] = r
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Add returns the release for sm, creating its files if it is new.
func (s *Store) Add(sm *release.SignedManifest) (*Release, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rels[sm.ID]; r != nil {
		return r, nil
	}
	rd := filepath.Join(s.dir, "releases", sm.ID.String())
	if err := os.MkdirAll(rd, 0o755); err != nil {
		return nil, fmt.Errorf("add release %s: %w", sm.ID.Short(), err)
	}
	if err := writeAtomic(filepath.Join(rd, "manifest"), sm.Raw); err != nil {
		os.RemoveAll(rd)
		return nil, fmt.Errorf("add release %s: %w", sm.ID.Short(), err)
	}
	f, err := os.OpenFile(filepath.Join(rd, "data"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		os.RemoveAll(rd)
		return nil, fmt.Errorf("add release %s: %w", sm.ID.Short(), err)
	}
	if err := f.Truncate(sm.Manifest.Size); err != nil {
		f.Close()
		os.RemoveAll(rd)
		return nil, fmt.Errorf("add release %s: %w", sm.ID.Short(), err)
	}
	have := newBitfield(sm.Manifest.NumChunks())
	hf, err := createHave(rd, have.b)
	if err != nil {
		f.Close()
		os.RemoveAll(rd)
		return nil, fmt.Errorf("add release %s: %w", sm.ID.Short(), err)
	}
	r := &Release{dir: rd, sm: sm, f: f, hf: hf, have: have}
	s.rels[sm.ID] = r
	return r, nil
}

// AddFile adds a release whose complete file is at path (a publisher's
// artifact): the bytes are copied into the store and every chunk is checked
// against the manifest before it is marked verified.
func (s *Store) AddFile(sm *release.SignedManifest, path string) (*Release, error) {
	if r := s.Get(sm.ID); r != nil && r.Complete() {
		return r, nil
	}
	// Check the whole file first, so a wrong artifact touches nothing (not
	// even a partial download of the same release already in the store).
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", path, err)
	}
	defer src.Close()
	if err := release.VerifyFile(src, sm.Manifest); err != nil {
		return nil, fmt.Errorf("add %s: %w", path, err)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("add %s: %w", path, err)
	}
	r, err := s.Add(sm)
	if err != nil {
		return nil, err
	}
	if r.Complete() {
		return r, nil
	}
	m := sm.Manifest
	buf := make([]byte, m.ChunkSize)
	for i := 0; i < m.NumChunks(); i++ {
		b := buf[:m.ChunkLen(i)]
		if _, err := io.ReadFull(src, b); err != nil {
			s.remove(sm.ID, r)
			return nil, fmt.Errorf("add %s: chunk %d: %w", path, i, err)
		}
		if r.Has(i) {
			continue // verified already (a download under way): keep it
		}
		if err := m.VerifyChunk(i, b); err != nil {
			s.remove(sm.ID, r)
			return nil, fmt.Errorf("add %s: %w", path, err)
		}
		if err := r.WriteChunk(i, b); err != nil {
			s.remove(sm.ID, r)
			return nil, err
		}
		r.mu.Lock()
		r.have.set(i)
		r.mu.Unlock()
	}
	if err := r.saveHave(); err != nil {
		s.remove(sm.ID, r)
		return nil, err
	}
	return r, nil
}

// Get returns the release with id, or nil.
func (s *Store) Get(id release.ManifestID) *Release {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rels[id]
}

// List returns every release held.
func (s *Store) List() []*Release {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Release, 0, len(s.rels))
	for _, r := range s.rels {
		out = append(out, r)
	}
	return out
}

// Remove deletes a release and its files. A holder of the removed *Release
// gets errors from then on, never another release's files.
func (s *Store) Remove(id release.ManifestID) { s.remove(id, nil) }

// remove deletes the release with id, if it is only (when not nil).
//
// The files are deleted under s.mu: an Add of the same ID waits until they
// are gone and then creates new ones, instead of creating them in the
// directory being deleted (which left a release held in memory with no
// files on disk). Get and List wait meanwhile too; removing is rare (a
// download replaced by a newer release), and unlinking a data file takes
// milliseconds.
func (s *Store) remove(id release.ManifestID, only *Release) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rels[id]
	if r == nil || (only != nil && r != only) {
		return
	}
	delete(s.rels, id)
	r.close()
	os.RemoveAll(r.dir)
}

// Close closes every open data file and releases the directory's lock.
// Closing twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rels {
		r.close()
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return nil
}

// Release is one release held on disk.
type Release struct {
	dir string
	sm  *release.SignedManifest

	// saveMu serialises writes of the have file, so that a byte written
	// from an older state of the bitfield never lands after a newer one.
	saveMu sync.Mutex
	mu     sync.Mutex
	f      *os.File // the data file; nil once closed
	hf     *os.File // the have file, written in place; nil once closed
	have   bitfield
}

func load(rd string, pub release.PublicKey, limits release.Limits) (*Release, error) {
	removeTemps(rd)
	raw, err := readCapped(filepath.Join(rd, "manifest"), release.ManifestSizeLimit(limits))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no manifest", errDamaged)
	}
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("%w: manifest: %w", errDamaged, err)
	}
	if err != nil {
		return nil, err
	}
	sm, err := release.ParseManifest(raw, pub, limits)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDamaged, err)
	}
	if filepath.Base(rd) != sm.ID.String() {
		return nil, fmt.Errorf("%w: directory name does not match manifest ID %s", errDamaged, sm.ID)
	}
	f, err := os.OpenFile(filepath.Join(rd, "data"), os.O_RDWR, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no data file", errDamaged)
	}
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != sm.Manifest.Size {
		f.Close()
		return nil, fmt.Errorf("%w: data file has the wrong size", errDamaged)
	}
	m := sm.Manifest
	n := m.NumChunks()
	have := newBitfield(n)
	if b, err := readCapped(filepath.Join(rd, "have"), int64(len(have.b))); err == nil && len(b) == len(have.b) {
		copy(have.b, b)
		have.clearPadding(n)
	}
	// A set bit is a claim, not a proof (a crash can leave the bit on disk
	// before the data): check every claimed chunk once at load.
	buf := make([]byte, m.ChunkSize)
	for i := 0; i < n; i++ {
		if !have.has(i) {
			continue
		}
		b := buf[:m.ChunkLen(i)]
		if _, err := f.ReadAt(b, m.ChunkOffset(i)); err != nil || m.VerifyChunk(i, b) != nil {
			have.clear(i)
		}
	}
	// Write back what was found, at the right length (a have file of any
	// other length, or missing, would stay useless: MarkVerified writes in
	// place), replacing whatever stood at that name.
	hf, err := createHave(rd, have.b)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("rewrite chunk set: %w", err)
	}
	return &Release{dir: rd, sm: sm, f: f, hf: hf, have: have}, nil
}

// Manifest returns the release's signed manifest.
func (r *Release) Manifest() *release.SignedManifest { return r.sm }

// ID returns the release's manifest ID.
func (r *Release) ID() release.ManifestID { return r.sm.ID }

// Path returns the data file's path.
func (r *Release) Path() string { return filepath.Join(r.dir, "data") }

// Has reports whether chunk i is verified.
func (r *Release) Has(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.have.has(i)
}

// Bitfield returns a copy of the verified-chunk bitfield (bit i of byte i/8,
// most significant bit first, as in BitTorrent).
func (r *Release) Bitfield() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.have.b...)
}

// Count returns how many chunks are verified.
func (r *Release) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.have.count()
}

// Complete reports whether every chunk is verified.
func (r *Release) Complete() bool { return r.Count() == r.sm.Manifest.NumChunks() }

// Missing returns the indices of chunks not yet verified.
func (r *Release) Missing() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for i := 0; i < r.sm.Manifest.NumChunks(); i++ {
		if !r.have.has(i) {
			out = append(out, i)
		}
	}
	return out
}

// WriteChunk writes chunk i's bytes at its offset. It does not mark the
// chunk verified: that is MarkVerified's job, after the verifier agreed. A
// chunk already verified is not written again (ErrVerified): peers are
// being served its bytes, which only Reset makes writable again.
func (r *Release) WriteChunk(i int, data []byte) error {
	m := r.sm.Manifest
	if i < 0 || i >= m.NumChunks() || len(data) != m.ChunkLen(i) {
		return fmt.Errorf("write chunk %d of %s: bad index or length %d", i, r.sm.ID.Short(), len(data))
	}
	r.mu.Lock()
	f, verified := r.f, r.have.has(i)
	r.mu.Unlock()
	if verified {
		return fmt.Errorf("write chunk %d of %s: %w", i, r.sm.ID.Short(), ErrVerified)
	}
	if f == nil {
		return fmt.Errorf("write chunk %d of %s: %w", i, r.sm.ID.Short(), os.ErrClosed)
	}
	if _, err := f.WriteAt(data, m.ChunkOffset(i)); err != nil {
		return fmt.Errorf("write chunk %d of %s: %w", i, r.sm.ID.Short(), err)
	}
	return nil
}

// MarkVerified records chunk i as verified, on disk. It writes the one byte
// of the have file that holds chunk i's bit, in place.
func (r *Release) MarkVerified(i int) error {
	if i < 0 || i >= r.sm.Manifest.NumChunks() {
		return fmt.Errorf("mark chunk %d of %s: index out of range", i, r.sm.ID.Short())
	}
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	hf := r.hf
	if hf == nil {
		r.mu.Unlock()
		return fmt.Errorf("mark chunk %d of %s: %w", i, r.sm.ID.Short(), os.ErrClosed)
	}
	r.have.set(i)
	b := [1]byte{r.have.b[i/8]}
	r.mu.Unlock()
	if _, err := hf.WriteAt(b[:], int64(i/8)); err != nil {
		return fmt.Errorf("save chunk set of %s: %w", r.sm.ID.Short(), err)
	}
	return nil
}

// ReadChunk reads verified chunk i into buf (grown if needed) and returns it.
func (r *Release) ReadChunk(i int, buf []byte) ([]byte, error) {
	m := r.sm.Manifest
	if i < 0 || i >= m.NumChunks() {
		return nil, fmt.Errorf("read chunk %d of %s: index out of range", i, r.sm.ID.Short())
	}
	r.mu.Lock()
	ok, f := r.have.has(i), r.f
	r.mu.Unlock()
	if !ok || f == nil {
		return nil, fmt.Errorf("chunk %d of %s: %w", i, r.sm.ID.Short(), ErrNotHeld)
	}
	n := m.ChunkLen(i)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := f.ReadAt(buf, m.ChunkOffset(i)); err != nil {
		if errors.Is(err, os.ErrClosed) {
			// Removed while we read: no longer held.
			return nil, fmt.Errorf("chunk %d of %s: %w", i, r.sm.ID.Short(), ErrNotHeld)
		}
		return nil, fmt.Errorf("read chunk %d of %s: %w", i, r.sm.ID.Short(), err)
	}
	return buf, nil
}

// ReadWritten reads chunk i's bytes as written, verified or not; the
// downloader uses it to have a chunk checked again after the verifier
// restarted, instead of fetching it again.
func (r *Release) ReadWritten(i int) ([]byte, error) {
	m := r.sm.Manifest
	if i < 0 || i >= m.NumChunks() {
		return nil, fmt.Errorf("read chunk %d of %s: index out of range", i, r.sm.ID.Short())
	}
	r.mu.Lock()
	f := r.f
	r.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", i, r.sm.ID.Short(), os.ErrClosed)
	}
	buf := make([]byte, m.ChunkLen(i))
	if _, err := f.ReadAt(buf, m.ChunkOffset(i)); err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", i, r.sm.ID.Short(), err)
	}
	return buf, nil
}

// Reset forgets every verified chunk (after a whole-file mismatch).
func (r *Release) Reset() error {
	r.mu.Lock()
	r.have = newBitfield(r.sm.Manifest.NumChunks())
	r.mu.Unlock()
	return r.saveHave()
}

// saveHave writes the whole bitfield over the have file, in place.
func (r *Release) saveHave() error {
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	b, hf := append([]byte(nil), r.have.b...), r.hf
	r.mu.Unlock()
	if hf == nil {
		return fmt.Errorf("save chunk set of %s: %w", r.sm.ID.Short(), os.ErrClosed)
	}
	if _, err := hf.WriteAt(b, 0); err != nil {
		return fmt.Errorf("save chunk set of %s: %w", r.sm.ID.Short(), err)
	}
	return nil
}

func (r *Release) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range []**os.File{&r.f, &r.hf} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// errTooLarge marks a file longer than any valid one.
var errTooLarge = errors.New("file too large")

// readCapped reads the file at path, refusing one of more than max bytes
// without reading it.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > max {
		return nil, fmt.Errorf("%s: %w (%d bytes, limit %d)", path, errTooLarge, fi.Size(), max)
	}
	// The size may change under us: read at most one byte past the cap.
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w (limit %d)", path, errTooLarge, max)
	}
	return b, nil
}

// tempPrefix starts the names of the temporary files older versions left;
// atomicfile's contain atomicfile.TempMarker.
const tempPrefix = ".tmp-"

// removeTemps deletes temporary files a crash left in a release directory.
func removeTemps(rd string) {
	ents, _ := os.ReadDir(rd)
	for _, e := range ents {
		if (strings.HasPrefix(e.Name(), tempPrefix) || strings.Contains(e.Name(), atomicfile.TempMarker)) && e.Type().IsRegular() {
			os.Remove(filepath.Join(rd, e.Name()))
		}
	}
}

// createHave writes b as the have file in rd and returns it open, for
// MarkVerified to write in place.
func createHave(rd string, b []byte) (*os.File, error) {
	return createAtomic(filepath.Join(rd, "have"), b)
}

// writeAtomic replaces path with b through atomicfile, so a crash or power
// loss leaves either the old or the new contents.
func writeAtomic(path string, b []byte) error {
	return atomicfile.WriteFile(path, b, 0o600)
}

// createAtomic is writeAtomic returning the new file, open for reading and
// writing.
func createAtomic(path string, b []byte) (*os.File, error) {
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}

type bitfield struct{ b []byte }

func newBitfield(n int) bitfield { return bitfield{b: make([]byte, (n+7)/8)} }

func (f bitfield) has(i int) bool { return i >= 0 && i/8 < len(f.b) && f.b[i/8]&(0x80>>(i%8)) != 0 }
func (f bitfield) set(i int)      { f.b[i/8] |= 0x80 >> (i % 8) }
func (f bitfield) clear(i int)    { f.b[i/8] &^= 0x80 >> (i % 8) }
func (f bitfield) count() int {
	n := 0
	for _, c := range f.b {
		for ; c != 0; c &= c - 1 {
			n++
		}
	}
	return n
}
func (f bitfield) clearPadding(n int) {
	if n%8 != 0 && len(f.b) > 0 {
		f.b[len(f.b)-1] &= ^byte(0xff >> (n % 8))
	}
}
