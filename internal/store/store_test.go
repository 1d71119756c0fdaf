package store

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// chunk is the chunk size of test manifests: the smallest allowed, so tests
// have several chunks without big files.
const chunk = release.MinChunkSize

// testKey returns a fixed publisher key; seed picks which one.
func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

// artifact returns n deterministic pseudo-random bytes.
func artifact(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// signed builds and signs a manifest for data.
func signed(t testing.TB, sk ed25519.PrivateKey, data []byte, version string) *release.SignedManifest {
	t.Helper()
	return signedFrom(t, sk, bytes.NewReader(data), version)
}

// signedFrom builds and signs a manifest for the artifact read from r.
func signedFrom(t testing.TB, sk ed25519.PrivateKey, r io.Reader, version string) *release.SignedManifest {
	t.Helper()
	m, err := release.BuildManifest(r, release.BuildOptions{
		App: "app", Platform: "linux-amd64", Version: version, ChunkSize: chunk,
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := release.SignManifest(m, sk)
	if err != nil {
		t.Fatal(err)
	}
	return sm
}

// fixture is one signed release and its bytes: 3 full chunks and a short one.
type fixture struct {
	sk   ed25519.PrivateKey
	pub  release.PublicKey
	data []byte
	sm   *release.SignedManifest
}

func newFixture(t testing.TB) fixture {
	sk := testKey(1)
	data := artifact(3*chunk+1000, 1)
	return fixture{sk: sk, pub: release.PublicKeyOf(sk), data: data, sm: signed(t, sk, data, "1.2.3")}
}

func (f fixture) chunkData(i int) []byte {
	m := f.sm.Manifest
	off := m.ChunkOffset(i)
	return f.data[off : off+int64(m.ChunkLen(i))]
}

func open(t testing.TB, dir string, pub release.PublicKey) *Store {
	t.Helper()
	s, err := Open(dir, pub, release.Limits{}, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// stored returns a new store directory holding f's release, complete,
// with the store closed again.
func stored(t testing.TB, f fixture) string {
	t.Helper()
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	if _, err := s.AddFile(f.sm, writeFile(t, f.data)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return dir
}

func releaseDir(dir string, id release.ManifestID) string {
	return filepath.Join(dir, "releases", id.String())
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// noTemp fails if a temporary file of writeAtomic is left in dir.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

func TestAddWriteVerifyRead(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	m := f.sm.Manifest
	n := m.NumChunks()
	if n != 4 {
		t.Fatalf("fixture has %d chunks, want 4", n)
	}

	r, err := s.Add(f.sm)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	if again, err := s.Add(f.sm); err != nil || again != r {
		t.Fatalf("Add again = %p, %v; want the same release %p", again, err, r)
	}
	if s.Get(f.sm.ID) != r {
		t.Fatal("Get does not return the added release")
	}
	if l := s.List(); len(l) != 1 || l[0] != r {
		t.Fatalf("List = %v", l)
	}
	if r.ID() != f.sm.ID || r.Manifest() != f.sm {
		t.Fatal("ID or Manifest differ from the signed manifest")
	}
	if fi, err := os.Stat(r.Path()); err != nil || fi.Size() != m.Size {
		t.Fatalf("data file: %v, size %v; want %d bytes", err, fi, m.Size)
	}
	if got, _ := os.ReadFile(filepath.Join(releaseDir(dir, f.sm.ID), "manifest")); !bytes.Equal(got, f.sm.Raw) {
		t.Fatal("manifest file is not the signed manifest")
	}
	if r.Count() != 0 || r.Complete() || len(r.Missing()) != n {
		t.Fatalf("new release: Count %d, Complete %v, Missing %v", r.Count(), r.Complete(), r.Missing())
	}

	// Writes with a bad index or length are refused.
	for _, bad := range []struct {
		i    int
		data []byte
	}{
		{-1, f.chunkData(0)},
		{n, f.chunkData(0)},
		{0, f.chunkData(0)[:chunk-1]},
		{3, f.chunkData(0)}, // the last chunk is short
		{0, append(append([]byte(nil), f.chunkData(0)...), 0)},
	} {
		if err := r.WriteChunk(bad.i, bad.data); err == nil {
			t.Errorf("WriteChunk(%d, %d bytes) succeeded", bad.i, len(bad.data))
		}
	}

	// Written but not verified: readable as written, never served.
	if err := r.WriteChunk(1, f.chunkData(1)); err != nil {
		t.Fatalf("WriteChunk: %v", err)
	}
	if _, err := r.ReadChunk(1, nil); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("ReadChunk of an unverified chunk: %v, want ErrNotHeld", err)
	}
	if r.Has(1) {
		t.Fatal("Has(1) before MarkVerified")
	}
	if got, err := r.ReadWritten(1); err != nil || !bytes.Equal(got, f.chunkData(1)) {
		t.Fatalf("ReadWritten(1) = %d bytes, %v", len(got), err)
	}
	for _, i := range []int{-1, n} {
		if _, err := r.ReadWritten(i); err == nil {
			t.Errorf("ReadWritten(%d) succeeded", i)
		}
		if _, err := r.ReadChunk(i, nil); err == nil {
			t.Errorf("ReadChunk(%d) succeeded", i)
		}
	}

	if err := r.MarkVerified(1); err != nil {
		t.Fatalf("MarkVerified: %v", err)
	}
	got, err := r.ReadChunk(1, make([]byte, 10)) // a buffer too small is grown
	if err != nil || !bytes.Equal(got, f.chunkData(1)) {
		t.Fatalf("ReadChunk(1) = %d bytes, %v", len(got), err)
	}
	if !r.Has(1) || r.Count() != 1 || r.Complete() {
		t.Fatalf("after one chunk: Has %v, Count %d, Complete %v", r.Has(1), r.Count(), r.Complete())
	}
	if want := []int{0, 2, 3}; !equalInts(r.Missing(), want) {
		t.Fatalf("Missing = %v, want %v", r.Missing(), want)
	}
	if bf := r.Bitfield(); !bytes.Equal(bf, []byte{0x40}) {
		t.Fatalf("Bitfield = %08b, want 01000000", bf)
	}
	// Bitfield is a copy.
	r.Bitfield()[0] = 0xff
	if r.Count() != 1 {
		t.Fatal("changing the Bitfield copy changed the release")
	}

	for _, i := range []int{3, 0, 2} {
		if err := r.WriteChunk(i, f.chunkData(i)); err != nil {
			t.Fatal(err)
		}
		if err := r.MarkVerified(i); err != nil {
			t.Fatal(err)
		}
	}
	if !r.Complete() || r.Count() != n || len(r.Missing()) != 0 {
		t.Fatalf("all written: Complete %v, Count %d, Missing %v", r.Complete(), r.Count(), r.Missing())
	}
	if b, _ := os.ReadFile(r.Path()); !bytes.Equal(b, f.data) {
		t.Fatal("data file differs from the artifact")
	}
	got, err = r.ReadChunk(3, nil)
	if err != nil || !bytes.Equal(got, f.chunkData(3)) {
		t.Fatalf("ReadChunk(last) = %d bytes, %v", len(got), err)
	}
	noTemp(t, releaseDir(dir, f.sm.ID))
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReopenReloadsVerified(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s, err := Open(dir, f.pub, release.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Add(f.sm)
	if err != nil {
		t.Fatal(err)
	}
	// Chunk 0 verified, chunk 2 written only.
	for _, i := range []int{0, 2} {
		if err := r.WriteChunk(i, f.chunkData(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.MarkVerified(0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := r.ReadChunk(0, nil); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("ReadChunk after Close: %v, want ErrNotHeld", err)
	}

	s2 := open(t, dir, f.pub)
	r2 := s2.Get(f.sm.ID)
	if r2 == nil {
		t.Fatal("release not reloaded")
	}
	if r2.Count() != 1 || !r2.Has(0) || r2.Has(2) {
		t.Fatalf("reloaded: Count %d, Has(0) %v, Has(2) %v; want only chunk 0", r2.Count(), r2.Has(0), r2.Has(2))
	}
	if got, err := r2.ReadChunk(0, nil); err != nil || !bytes.Equal(got, f.chunkData(0)) {
		t.Fatalf("ReadChunk(0) after reopen: %v", err)
	}
	if got, err := r2.ReadWritten(2); err != nil || !bytes.Equal(got, f.chunkData(2)) {
		t.Fatalf("ReadWritten(2) after reopen: %v", err)
	}
	if !bytes.Equal(r2.Manifest().Raw, f.sm.Raw) || r2.ID() != f.sm.ID {
		t.Fatal("reloaded manifest differs")
	}
}

func TestReset(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	r, err := s.AddFile(f.sm, writeFile(t, f.data))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Complete() {
		t.Fatal("AddFile left the release incomplete")
	}
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	if r.Count() != 0 || r.Complete() || len(r.Missing()) != r.Manifest().Manifest.NumChunks() {
		t.Fatalf("after Reset: Count %d", r.Count())
	}
	if _, err := r.ReadChunk(0, nil); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("ReadChunk after Reset: %v, want ErrNotHeld", err)
	}
	s.Close()
	if r2 := open(t, dir, f.pub).Get(f.sm.ID); r2 == nil || r2.Count() != 0 {
		t.Fatal("Reset was not kept on disk")
	}
}

func TestRemove(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	r, err := s.AddFile(f.sm, writeFile(t, f.data))
	if err != nil {
		t.Fatal(err)
	}
	s.Remove(f.sm.ID)
	if s.Get(f.sm.ID) != nil || len(s.List()) != 0 {
		t.Fatal("release still listed after Remove")
	}
	if exists(releaseDir(dir, f.sm.ID)) {
		t.Fatal("release directory left after Remove")
	}
	// A holder of the old *Release gets errors, not bytes.
	if _, err := r.ReadChunk(0, nil); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("ReadChunk after Remove: %v, want ErrNotHeld", err)
	}
	if err := r.WriteChunk(0, f.chunkData(0)); err == nil {
		t.Fatal("WriteChunk after Remove succeeded")
	}
	if _, err := r.ReadWritten(0); err == nil {
		t.Fatal("ReadWritten after Remove succeeded")
	}
	s.Remove(f.sm.ID) // removing twice is harmless
}

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "artifact")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAddFile(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	r, err := s.AddFile(f.sm, writeFile(t, f.data))
	if err != nil {
		t.Fatalf("AddFile: %v", err)
	}
	if !r.Complete() {
		t.Fatal("AddFile: not complete")
	}
	for i := range r.Manifest().Manifest.NumChunks() {
		got, err := r.ReadChunk(i, nil)
		if err != nil || !bytes.Equal(got, f.chunkData(i)) {
			t.Fatalf("ReadChunk(%d): %v", i, err)
		}
	}
	// Adding it again is a no-op, even from a path that no longer exists.
	if again, err := s.AddFile(f.sm, filepath.Join(t.TempDir(), "gone")); err != nil || again != r {
		t.Fatalf("AddFile of a held complete release: %v", err)
	}
	s.Close()
	if r2 := open(t, dir, f.pub).Get(f.sm.ID); r2 == nil || !r2.Complete() {
		t.Fatal("complete release not reloaded as complete")
	}
	noTemp(t, releaseDir(dir, f.sm.ID))
}

func TestAddFileMismatchLeavesNothing(t *testing.T) {
	f := newFixture(t)
	flip := func(off int) []byte {
		b := append([]byte(nil), f.data...)
		b[off] ^= 1
		return b
	}
	cases := []struct {
		name string
		data []byte // nil: no file at all
	}{
		{"first byte flipped", flip(0)},
		{"last byte flipped", flip(len(f.data) - 1)},
		{"middle chunk flipped", flip(2*chunk + 7)},
		{"truncated", f.data[:len(f.data)-1]},
		{"one chunk short", f.data[:3*chunk]},
		{"empty", []byte{}},
		{"another artifact", artifact(len(f.data), 9)},
		{"missing file", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, f.pub)
			path := filepath.Join(t.TempDir(), "missing")
			if c.data != nil {
				path = writeFile(t, c.data)
			}
			r, err := s.AddFile(f.sm, path)
			if err == nil {
				t.Fatalf("AddFile succeeded (complete %v)", r.Complete())
			}
			if s.Get(f.sm.ID) != nil || len(s.List()) != 0 {
				t.Fatal("release still held after a failed AddFile")
			}
			if exists(releaseDir(dir, f.sm.ID)) {
				t.Fatal("release directory left after a failed AddFile")
			}
			if c.data != nil && len(c.data) == len(f.data) && !errors.Is(err, release.ErrChunkMismatch) {
				t.Errorf("error %v does not match release.ErrChunkMismatch", err)
			}
		})
	}
}

// damage describes one way a release directory can be broken on disk.
type damage struct {
	name string
	// breakIt damages the release in rd (written for f by a healthy store).
	breakIt func(t *testing.T, f fixture, rd string)
}

func TestOpenDropsDamagedRelease(t *testing.T) {
	f := newFixture(t)
	other := signed(t, testKey(7), f.data, "1.2.3")
	write := func(t *testing.T, path string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []damage{
		{"manifest signed by another key", func(t *testing.T, f fixture, rd string) {
			// Rename so the directory name matches the foreign manifest's ID,
			// leaving the key as the only fault.
			write(t, filepath.Join(rd, "manifest"), other.Raw)
			if err := os.Rename(rd, filepath.Join(filepath.Dir(rd), other.ID.String())); err != nil {
				t.Fatal(err)
			}
		}},
		{"manifest with a bad signature", func(t *testing.T, f fixture, rd string) {
			b := append([]byte(nil), f.sm.Raw...)
			b[len(b)-1] ^= 1
			write(t, filepath.Join(rd, "manifest"), b)
		}},
		{"manifest truncated", func(t *testing.T, f fixture, rd string) {
			write(t, filepath.Join(rd, "manifest"), f.sm.Raw[:len(f.sm.Raw)/2])
		}},
		{"manifest missing", func(t *testing.T, f fixture, rd string) {
			os.Remove(filepath.Join(rd, "manifest"))
		}},
		{"data file too short", func(t *testing.T, f fixture, rd string) {
			if err := os.Truncate(filepath.Join(rd, "data"), f.sm.Manifest.Size-1); err != nil {
				t.Fatal(err)
			}
		}},
		{"data file too long", func(t *testing.T, f fixture, rd string) {
			if err := os.Truncate(filepath.Join(rd, "data"), f.sm.Manifest.Size+1); err != nil {
				t.Fatal(err)
			}
		}},
		{"data file missing", func(t *testing.T, f fixture, rd string) {
			os.Remove(filepath.Join(rd, "data"))
		}},
		{"directory name is another ID", func(t *testing.T, f fixture, rd string) {
			if err := os.Rename(rd, filepath.Join(filepath.Dir(rd), other.ID.String())); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := stored(t, f)
			c.breakIt(t, f, releaseDir(dir, f.sm.ID))

			s2 := open(t, dir, f.pub)
			if l := s2.List(); len(l) != 0 {
				t.Fatalf("damaged release loaded: %d releases", len(l))
			}
			ents, _ := os.ReadDir(filepath.Join(dir, "releases"))
			if len(ents) != 0 {
				t.Fatalf("damaged release directory %s left on disk", ents[0].Name())
			}
			// The store stays usable: the release can be added again.
			r, err := s2.AddFile(f.sm, writeFile(t, f.data))
			if err != nil || !r.Complete() {
				t.Fatalf("AddFile after dropping the damaged copy: %v", err)
			}
		})
	}
}

// TestOpenGarbageHave checks that a 'have' file of the wrong length is never
// trusted: the release is either dropped or kept with nothing verified.
func TestOpenGarbageHave(t *testing.T) {
	f := newFixture(t)
	for _, have := range [][]byte{nil, {}, {0xff, 0xff}, bytes.Repeat([]byte{0xff}, 100), []byte("garbage, not a bitfield")} {
		dir := stored(t, f)
		hp := filepath.Join(releaseDir(dir, f.sm.ID), "have")
		if have == nil {
			os.Remove(hp)
		} else if err := os.WriteFile(hp, have, 0o644); err != nil {
			t.Fatal(err)
		}
		s2 := open(t, dir, f.pub)
		r := s2.Get(f.sm.ID)
		if r == nil {
			continue // dropped: fine
		}
		if r.Count() != 0 {
			t.Errorf("have %q: %d chunks trusted", have, r.Count())
		}
		if _, err := r.ReadChunk(0, nil); !errors.Is(err, ErrNotHeld) {
			t.Errorf("have %q: ReadChunk(0) = %v, want ErrNotHeld", have, err)
		}
	}
}

// TestOpenPaddingBitsIgnored checks that bits past the last chunk in a
// 'have' file of the right length do not count.
func TestOpenPaddingBitsIgnored(t *testing.T) {
	f := newFixture(t) // 4 chunks: one byte, low 4 bits are padding
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	r, err := s.Add(f.sm)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 2} {
		if err := r.WriteChunk(i, f.chunkData(i)); err != nil {
			t.Fatal(err)
		}
		if err := r.MarkVerified(i); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(releaseDir(dir, f.sm.ID), "have"), []byte{0xef}, 0o644); err != nil {
		t.Fatal(err)
	}
	r2 := open(t, dir, f.pub).Get(f.sm.ID)
	if r2 == nil {
		t.Fatal("release dropped")
	}
	if r2.Count() != 3 || r2.Complete() || !equalInts(r2.Missing(), []int{3}) {
		t.Fatalf("Count %d, Complete %v, Missing %v; want 3, false, [3]", r2.Count(), r2.Complete(), r2.Missing())
	}
}

// TestOpenHaveNotMatchingData is the "never half-trusted" rule for a 'have'
// file of the right length whose bits claim chunks the data file does not
// hold (a crash between the rename of 'have' and the data reaching the disk,
// or a damaged file): the store must not serve those bytes as verified.
func TestOpenHaveNotMatchingData(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	if _, err := s.Add(f.sm); err != nil { // data file is all zeros
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(releaseDir(dir, f.sm.ID), "have"), []byte{0xf0}, 0o644); err != nil {
		t.Fatal(err)
	}
	r := open(t, dir, f.pub).Get(f.sm.ID)
	if r == nil {
		return // dropped: fine
	}
	for i := range r.Manifest().Manifest.NumChunks() {
		if b, err := r.ReadChunk(i, nil); err == nil {
			if verr := r.Manifest().Manifest.VerifyChunk(i, b); verr != nil {
				t.Errorf("chunk %d served as verified but does not match the manifest: %v", i, verr)
			}
		}
	}
}

// TestMarkVerifiedBadIndex checks that an index outside the manifest is
// refused, neither panicking (which would leave the release's mutex locked:
// bitfield.set panics inside r.mu) nor counting towards Complete.
func TestMarkVerifiedBadIndex(t *testing.T) {
	f := newFixture(t)
	n := f.sm.Manifest.NumChunks()
	for _, i := range []int{-1, n, n + 1, 8 * ((n + 7) / 8), 1 << 20} {
		// A fresh release each time: a panic leaves the old one locked.
		s := open(t, t.TempDir(), f.pub)
		r, err := s.Add(f.sm)
		if err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("MarkVerified(%d) panicked: %v", i, p)
				}
			}()
			if err := r.MarkVerified(i); err == nil {
				t.Errorf("MarkVerified(%d) succeeded", i)
			}
			for j := range n - 1 {
				r.MarkVerified(j)
			}
			if r.Complete() {
				t.Errorf("MarkVerified(%d): Complete with chunk %d missing (Count %d)", i, n-1, r.Count())
			}
		}()
	}
}

// TestConcurrentServeAndVerify runs readers (the swarm) against a writer
// (the downloader) and a Remove; run it with -race.
func TestConcurrentServeAndVerify(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	r, err := s.Add(f.sm)
	if err != nil {
		t.Fatal(err)
	}
	n := r.Manifest().Manifest.NumChunks()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			buf := make([]byte, chunk)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range n {
					b, err := r.ReadChunk(i, buf)
					if err == nil && !bytes.Equal(b, f.chunkData(i)) {
						t.Errorf("chunk %d served with wrong bytes", i)
						return
					}
					if err != nil && !errors.Is(err, ErrNotHeld) {
						t.Errorf("ReadChunk(%d): %v", i, err)
						return
					}
				}
				_ = r.Bitfield()
				_ = s.List()
			}
		})
	}
	for i := range n {
		if err := r.WriteChunk(i, f.chunkData(i)); err != nil {
			t.Fatal(err)
		}
		if err := r.MarkVerified(i); err != nil {
			t.Fatal(err)
		}
	}
	s.Remove(f.sm.ID)
	close(stop)
	wg.Wait()
}

// TestConcurrentMarkVerifiedPersists marks every chunk from its own
// goroutine; the 'have' file on disk must end with all of them.
func TestConcurrentMarkVerifiedPersists(t *testing.T) {
	sk := testKey(1)
	data := artifact(64*chunk, 3)
	sm := signed(t, sk, data, "1.0.0")
	pub := release.PublicKeyOf(sk)
	for round := range 5 {
		dir := t.TempDir()
		s, err := Open(dir, pub, release.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.AddFile(sm, writeFile(t, data))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Reset(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range sm.Manifest.NumChunks() {
			wg.Go(func() {
				if err := r.MarkVerified(i); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		s.Close()
		s2, err := Open(dir, pub, release.Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := s2.Get(sm.ID).Count()
		s2.Close()
		if got != sm.Manifest.NumChunks() {
			t.Fatalf("round %d: %d of %d verified chunks kept on disk", round, got, sm.Manifest.NumChunks())
		}
	}
}

func TestOpenKeepsGoodNextToDamaged(t *testing.T) {
	f := newFixture(t)
	g := fixture{sk: f.sk, pub: f.pub, data: artifact(chunk, 5)}
	g.sm = signed(t, g.sk, g.data, "2.0.0")
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	for _, x := range []fixture{f, g} {
		if _, err := s.AddFile(x.sm, writeFile(t, x.data)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := os.Truncate(filepath.Join(releaseDir(dir, g.sm.ID), "data"), 1); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir, f.pub)
	if r := s2.Get(f.sm.ID); r == nil || !r.Complete() {
		t.Fatal("good release lost next to a damaged one")
	}
	if s2.Get(g.sm.ID) != nil {
		t.Fatal("damaged release loaded")
	}
	if s2.Dir() != dir {
		t.Fatalf("Dir = %q, want %q", s2.Dir(), dir)
	}
}

func TestOpenLimits(t *testing.T) {
	f := newFixture(t)
	dir := stored(t, f)
	// A store opened with a smaller size limit does not keep the release.
	s2, err := Open(dir, f.pub, release.Limits{MaxSize: f.sm.Manifest.Size - 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(s2.List()) != 0 {
		t.Fatal("release above the size limit loaded")
	}
}

func TestOpenNotADirectory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(p, release.PublicKey{}, release.Limits{}, nil); err == nil {
		s.Close()
		t.Fatal("Open on a regular file succeeded")
	}
}

// FuzzOpenHave opens a release whose 'have' file holds arbitrary bytes: Open
// never fails or panics over it, and the chunk set stays consistent.
func FuzzOpenHave(f *testing.F) {
	for _, b := range [][]byte{{}, {0x00}, {0xf0}, {0xff}, {0xef}, {0x80, 0x00}, []byte("garbage")} {
		f.Add(b)
	}
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, have []byte) {
		dir := t.TempDir()
		s := open(t, dir, fx.pub)
		if _, err := s.Add(fx.sm); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if err := os.WriteFile(filepath.Join(releaseDir(dir, fx.sm.ID), "have"), have, 0o644); err != nil {
			t.Fatal(err)
		}
		r := open(t, dir, fx.pub).Get(fx.sm.ID)
		if r == nil {
			return
		}
		n := r.Manifest().Manifest.NumChunks()
		c, missing := r.Count(), r.Missing()
		if c < 0 || c > n || c+len(missing) != n || r.Complete() != (c == n) {
			t.Fatalf("have %x: Count %d, Missing %v, Complete %v for %d chunks", have, c, missing, r.Complete(), n)
		}
		if len(have) != len(r.Bitfield()) && c != 0 {
			t.Fatalf("have %x of the wrong length trusted for %d chunks", have, c)
		}
	})
}

// haveFile returns the release's have file as on disk.
func haveFile(t *testing.T, dir string, id release.ManifestID) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(releaseDir(dir, id), "have"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMarkVerifiedWritesInPlace: after every MarkVerified, in any order,
// the have file on disk is exactly the bitfield (same length, same bits),
// and a reopened store trusts the same chunks.
func TestMarkVerifiedWritesInPlace(t *testing.T) {
	sk := testKey(1)
	data := artifact(61*chunk+5, 4) // 62 chunks: 8 bytes, 2 padding bits
	sm := signed(t, sk, data, "1.0.0")
	pub := release.PublicKeyOf(sk)
	dir := t.TempDir()
	s := open(t, dir, pub)
	r, err := s.Add(sm)
	if err != nil {
		t.Fatal(err)
	}
	n := sm.Manifest.NumChunks()
	if got := haveFile(t, dir, sm.ID); !bytes.Equal(got, make([]byte, (n+7)/8)) {
		t.Fatalf("new have file = %x, want %d zero bytes", got, (n+7)/8)
	}
	order := rand.New(rand.NewChaCha8([32]byte{5})).Perm(n)
	for k, i := range order[:2*n/3] {
		off := sm.Manifest.ChunkOffset(i)
		if err := r.WriteChunk(i, data[off:off+int64(sm.Manifest.ChunkLen(i))]); err != nil {
			t.Fatal(err)
		}
		if err := r.MarkVerified(i); err != nil {
			t.Fatal(err)
		}
		if k == 0 {
			r.MarkVerified(i) // marking twice changes nothing
		}
		if got, want := haveFile(t, dir, sm.ID), r.Bitfield(); !bytes.Equal(got, want) {
			t.Fatalf("after %d marks: have file %x, bitfield %x", k+1, got, want)
		}
	}
	want := r.Bitfield()
	s.Close()
	if err := r.MarkVerified(order[n-1]); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("MarkVerified after Close = %v, want os.ErrClosed", err)
	}
	r2 := open(t, dir, pub).Get(sm.ID)
	if r2 == nil || !bytes.Equal(r2.Bitfield(), want) {
		t.Fatalf("reopened with bitfield %x, want %x", r2.Bitfield(), want)
	}
	noTemp(t, releaseDir(dir, sm.ID))
}

// TestOpenRewritesHave: Open writes back the chunk set it found, at the
// right length, so that in-place marks made afterwards are kept even when
// the have file was missing, of the wrong length, or claimed chunks whose
// data is wrong.
func TestOpenRewritesHave(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name string
		have []byte // nil: no file
	}{
		{"missing", nil},
		{"too short", []byte{}},
		{"too long", bytes.Repeat([]byte{0xff}, 100)},
		{"claims unwritten chunks", []byte{0xf0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, f.pub)
			if _, err := s.Add(f.sm); err != nil { // the data file is all zeros
				t.Fatal(err)
			}
			s.Close()
			hp := filepath.Join(releaseDir(dir, f.sm.ID), "have")
			if c.have == nil {
				os.Remove(hp)
			} else if err := os.WriteFile(hp, c.have, 0o644); err != nil {
				t.Fatal(err)
			}
			s2 := open(t, dir, f.pub)
			r := s2.Get(f.sm.ID)
			if r == nil || r.Count() != 0 {
				t.Fatal("release dropped, or unverified chunks trusted")
			}
			if got := haveFile(t, dir, f.sm.ID); !bytes.Equal(got, []byte{0}) {
				t.Fatalf("have file after Open = %x, want 00", got)
			}
			if err := r.WriteChunk(2, f.chunkData(2)); err != nil {
				t.Fatal(err)
			}
			if err := r.MarkVerified(2); err != nil {
				t.Fatal(err)
			}
			s2.Close()
			if r3 := open(t, dir, f.pub).Get(f.sm.ID); r3 == nil || r3.Count() != 1 || !r3.Has(2) {
				t.Fatal("a chunk marked after Open was not kept")
			}
		})
	}
}

// TestOpenHaveSymlinkReplaced: a have file that is a symbolic link is
// replaced, never written through.
func TestOpenHaveSymlinkReplaced(t *testing.T) {
	f := newFixture(t)
	dir := stored(t, f)
	outside := writeFile(t, []byte{0xf0})
	hp := filepath.Join(releaseDir(dir, f.sm.ID), "have")
	os.Remove(hp)
	if err := os.Symlink(outside, hp); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	s := open(t, dir, f.pub)
	r := s.Get(f.sm.ID)
	if r == nil {
		t.Fatal("release dropped")
	}
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(outside); !bytes.Equal(got, []byte{0xf0}) {
		t.Fatalf("the file a have symlink pointed to was written: %x", got)
	}
	if fi, err := os.Lstat(hp); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("have is not a regular file after Open: %v", err)
	}
}

// TestAddRemoveSameID runs Add and Remove of one release at once, over and
// over, starting with it absent or held; run it with -race. Whichever
// wins, the store in memory and on disk must agree afterwards, and a
// holder of a removed *Release must not write into the files of the
// release added after it.
func TestAddRemoveSameID(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	rd := releaseDir(dir, f.sm.ID)
	agree := func(round int) {
		t.Helper()
		r := s.Get(f.sm.ID)
		if r == nil {
			if exists(rd) {
				t.Fatalf("round %d: release not held but its directory is on disk", round)
			}
			return
		}
		if m, err := os.ReadFile(filepath.Join(rd, "manifest")); err != nil || !bytes.Equal(m, f.sm.Raw) {
			t.Fatalf("round %d: held release's manifest on disk: %v", round, err)
		}
		if fi, err := os.Stat(r.Path()); err != nil || fi.Size() != f.sm.Manifest.Size {
			t.Fatalf("round %d: held release's data file: %v", round, err)
		}
		if h, err := os.ReadFile(filepath.Join(rd, "have")); err != nil || !bytes.Equal(h, r.Bitfield()) {
			t.Fatalf("round %d: have file %x (%v), bitfield in memory %x", round, h, err, r.Bitfield())
		}
	}
	for round := range 300 {
		held := round%2 == 1
		var old *Release
		if held {
			var err error
			if old, err = s.Add(f.sm); err != nil {
				t.Fatal(err)
			}
			if old.Count() == 0 {
				if err := old.WriteChunk(0, f.chunkData(0)); err != nil {
					t.Fatal(err)
				}
				if err := old.MarkVerified(0); err != nil {
					t.Fatal(err)
				}
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var added *Release
		var addErr error
		wg.Go(func() { <-start; added, addErr = s.Add(f.sm) })
		wg.Go(func() { <-start; s.Remove(f.sm.ID) })
		close(start)
		wg.Wait()
		if addErr != nil {
			t.Fatalf("round %d: Add: %v", round, addErr)
		}
		if got := s.Get(f.sm.ID); got != nil && got != added {
			t.Fatalf("round %d: the store holds a release Add did not return", round)
		}
		if old != nil && s.Get(f.sm.ID) != old {
			// Removed: the old handle is closed, whatever came after.
			if err := old.MarkVerified(1); err == nil {
				t.Fatalf("round %d: MarkVerified on a removed release succeeded", round)
			}
			if err := old.Reset(); err == nil {
				t.Fatalf("round %d: Reset on a removed release succeeded", round)
			}
		}
		agree(round)
		if round%3 == 0 {
			s.Remove(f.sm.ID)
			agree(round)
		}
	}
	want := s.Get(f.sm.ID)
	var wantBits []byte
	if want != nil {
		wantBits = want.Bitfield()
	}
	s.Close()
	got := open(t, dir, f.pub).Get(f.sm.ID)
	if (got == nil) != (want == nil) || (got != nil && !bytes.Equal(got.Bitfield(), wantBits)) {
		t.Fatalf("reopened store disagrees: held %v, want %v", got != nil, want != nil)
	}
}
