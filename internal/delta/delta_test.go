package delta

import (
	"bytes"
	"crypto/ed25519"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/release"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// newRelease signs data and adds its (empty) release to a new store.
func newRelease(t *testing.T, data []byte, opts release.BuildOptions) *store.Release {
	t.Helper()
	sk := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	opts.App, opts.Version, opts.Created = "app", "2.0.0", time.Now()
	m, err := release.BuildManifest(bytes.NewReader(data), opts)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := release.SignManifest(m, sk)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir(), release.PublicKeyOf(sk), release.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rel, err := st.Add(sm)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "old")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReuseOneChangedChunk: an installed file that differs from the new
// release in one chunk leaves exactly that chunk to download; every
// reused chunk is verified and readable for serving, and the file the
// store then holds for those chunks is the new release's.
func TestReuseOneChangedChunk(t *testing.T) {
	const cs = release.MinChunkSize
	newData := randomBytes(10*cs+1234, 1)
	old := bytes.Clone(newData)
	old[4*cs+17] ^= 0xff // chunk 4 differs
	rel := newRelease(t, newData, release.BuildOptions{ChunkSize: cs})
	res, err := Reuse(rel, filepath.Join(t.TempDir(), "absent"), writeFile(t, old))
	if err != nil {
		t.Fatal(err)
	}
	if got := rel.Missing(); !slices.Equal(got, []int{4}) {
		t.Fatalf("missing after reuse: %v, want [4]", got)
	}
	if res.Bytes != int64(len(newData)-cs) || len(res.Chunks) != 10 {
		t.Fatalf("reused %d chunks, %d bytes; want 10, %d", len(res.Chunks), res.Bytes, len(newData)-cs)
	}
	m := rel.Manifest().Manifest
	for _, i := range res.Chunks {
		b, err := rel.ReadChunk(i, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.VerifyChunk(i, b); err != nil {
			t.Fatal(err)
		}
	}
	// A second pass finds nothing more.
	if res, _ := Reuse(rel, writeFile(t, old)); len(res.Chunks) != 0 {
		t.Fatalf("second pass reused %v", res.Chunks)
	}
}

// TestReuseMovedChunks: with content-defined chunks, an insertion near the
// start leaves the chunks after it reusable; with fixed chunks it would not.
func TestReuseMovedChunks(t *testing.T) {
	old := randomBytes(2<<20, 2)
	newData := append(append(bytes.Clone(old[:5000]), []byte("a new line of code")...), old[5000:]...)
	rel := newRelease(t, newData, release.BuildOptions{Chunker: release.ChunkContent})
	res, err := Reuse(rel, writeFile(t, old))
	if err != nil {
		t.Fatal(err)
	}
	n := rel.Manifest().Manifest.NumChunks()
	if missing := rel.Missing(); len(missing) > 2 || len(res.Chunks) != n-len(missing) {
		t.Fatalf("content chunks: %d of %d missing after reuse (%v), reused %d", len(missing), n, missing, len(res.Chunks))
	}
	fixed := newRelease(t, newData, release.BuildOptions{ChunkSize: release.MinChunkSize})
	if res, _ := Reuse(fixed, writeFile(t, old)); len(res.Chunks) > 1 {
		t.Fatalf("fixed chunks reused %d after an insertion", len(res.Chunks))
	}
}

// TestReuseShortTail: the new release's short last chunk is found at an
// aligned offset of a longer old file.
func TestReuseShortTail(t *testing.T) {
	const cs = release.MinChunkSize
	newData := randomBytes(3*cs+100, 3)
	old := append(bytes.Clone(newData[:3*cs+100]), randomBytes(cs, 4)...)
	old[0] ^= 1
	rel := newRelease(t, newData, release.BuildOptions{ChunkSize: cs})
	if _, err := Reuse(rel, writeFile(t, old)); err != nil {
		t.Fatal(err)
	}
	if got := rel.Missing(); !slices.Equal(got, []int{0}) {
		t.Fatalf("missing %v, want [0]", got)
	}
}
