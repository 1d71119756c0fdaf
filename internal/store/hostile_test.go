package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rpe-project/engine/release"
)

// TestOpenLocksStateDir: a second Open of a directory in use fails with
// ErrInUse and changes nothing; once the first store is closed it opens.
func TestOpenLocksStateDir(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	s := open(t, dir, f.pub)
	if _, err := s.AddFile(f.sm, writeFile(t, f.data)); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, f.pub, release.Limits{}, nil)
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a state dir in use succeeded")
	}
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "in use by another rpe process") {
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}
	if r := s.Get(f.sm.ID); r == nil || !r.Complete() {
		t.Fatal("the refused Open disturbed the store in use")
	}
	s.Close()
	s.Close() // twice is harmless
	s3 := open(t, dir, f.pub)
	if r := s3.Get(f.sm.ID); r == nil || !r.Complete() {
		t.Fatal("release lost after reopening")
	}
}

// TestOpenCapsReads: a manifest or 'have' file far larger than any valid
// one is refused without being read into memory.
func TestOpenCapsReads(t *testing.T) {
	f := newFixture(t)
	const huge = 256 << 20 // sparse: costs no disk
	for _, name := range []string{"manifest", "have"} {
		t.Run(name, func(t *testing.T) {
			dir := stored(t, f)
			if err := os.Truncate(filepath.Join(releaseDir(dir, f.sm.ID), name), huge); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			s2 := open(t, dir, f.pub)
			runtime.ReadMemStats(&after)
			if got := after.TotalAlloc - before.TotalAlloc; got > huge/4 {
				t.Fatalf("Open allocated %d MiB for a %d MiB %s file", got>>20, huge>>20, name)
			}
			if r := s2.Get(f.sm.ID); r != nil && r.Count() != 0 {
				t.Fatalf("%d chunks trusted next to an oversize %s file", r.Count(), name)
			}
		})
	}
}

// TestOpenLeavesForeignFiles: a state directory pointed by mistake at a
// directory that already has a "releases" folder must not lose the user's
// files: only directories named like a manifest ID are the store's to
// delete.
func TestOpenLeavesForeignFiles(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	mine := []string{
		filepath.Join(dir, "releases", "photos", "cat.jpg"),
		filepath.Join(dir, "releases", "v1.0", "manifest"), // not a manifest ID
		filepath.Join(dir, "releases", "notes.txt"),
	}
	for _, p := range mine {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("the user's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A directory named like an ID but holding no release is the store's.
	damaged := releaseDir(dir, f.sm.ID)
	if err := os.MkdirAll(damaged, 0o755); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, f.pub)
	if n := len(s.List()); n != 0 {
		t.Fatalf("%d releases loaded from foreign files", n)
	}
	for _, p := range mine {
		if b, err := os.ReadFile(p); err != nil || string(b) != "the user's" {
			t.Errorf("%s lost: %v", p, err)
		}
	}
	if exists(damaged) {
		t.Error("damaged release directory kept")
	}
}

// TestWriteChunkKeepsVerified: unverified bytes never replace a verified
// chunk that peers are being served (a late duplicate from a lying peer).
func TestWriteChunkKeepsVerified(t *testing.T) {
	f := newFixture(t)
	s := open(t, t.TempDir(), f.pub)
	r, err := s.AddFile(f.sm, writeFile(t, f.data))
	if err != nil {
		t.Fatal(err)
	}
	bad := make([]byte, len(f.chunkData(1)))
	if err := r.WriteChunk(1, bad); !errors.Is(err, ErrVerified) {
		t.Fatalf("WriteChunk over a verified chunk = %v, want ErrVerified", err)
	}
	got, err := r.ReadChunk(1, nil)
	if err != nil || !bytes.Equal(got, f.chunkData(1)) {
		t.Fatalf("verified chunk served with other bytes after a write (%v)", err)
	}
	// After Reset (a whole-file mismatch) the chunk may be written again.
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteChunk(1, f.chunkData(1)); err != nil {
		t.Fatalf("WriteChunk after Reset: %v", err)
	}
}

// TestOpenRemovesTempFiles: a temporary file left by a crash during an
// atomic write is removed at the next Open.
func TestOpenRemovesTempFiles(t *testing.T) {
	f := newFixture(t)
	dir := stored(t, f)
	rd := releaseDir(dir, f.sm.ID)
	if err := os.WriteFile(filepath.Join(rd, ".tmp-123456"), []byte{0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := open(t, dir, f.pub).Get(f.sm.ID); r == nil || !r.Complete() {
		t.Fatal("release lost")
	}
	noTemp(t, rd)
}

// TestOpenEmptyDir: an empty directory name (an unset flag) is an error,
// not the current directory.
func TestOpenEmptyDir(t *testing.T) {
	t.Chdir(t.TempDir())
	if s, err := Open("", release.PublicKey{}, release.Limits{}, nil); err == nil {
		s.Close()
		t.Fatal("Open(\"\") succeeded")
	}
	if exists("releases") {
		t.Fatal("Open(\"\") created releases/ in the working directory")
	}
}

// TestAddFileOverPartialDownload: a publisher's artifact added while a
// download of the same release is under way completes it, keeping the
// chunks already verified.
func TestAddFileOverPartialDownload(t *testing.T) {
	f := newFixture(t)
	s := open(t, t.TempDir(), f.pub)
	r, err := s.Add(f.sm)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WriteChunk(2, f.chunkData(2)); err != nil {
		t.Fatal(err)
	}
	if err := r.MarkVerified(2); err != nil {
		t.Fatal(err)
	}
	r2, err := s.AddFile(f.sm, writeFile(t, f.data))
	if err != nil || r2 != r || !r.Complete() {
		t.Fatalf("AddFile over a partial download: %v (complete %v)", err, r.Complete())
	}
	for i := range f.sm.Manifest.NumChunks() {
		if got, err := r.ReadChunk(i, nil); err != nil || !bytes.Equal(got, f.chunkData(i)) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
}
