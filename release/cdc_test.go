package release

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func contentOptions() BuildOptions {
	o := testOptions()
	o.ChunkSize, o.Chunker = 0, ChunkContent
	return o
}

// TestContentChunking: a content-chunked manifest (format 2) round-trips,
// verifies its file, has chunks within its bounds, and shares most chunks
// with a copy that has bytes inserted near the start, where fixed-size
// chunks share none.
func TestContentChunking(t *testing.T) {
	data := patternBytes(t, 3<<20, 7)
	m, err := BuildManifest(bytes.NewReader(data), contentOptions())
	if err != nil {
		t.Fatal(err)
	}
	sm, err := SignManifest(m, testKey())
	if err != nil {
		t.Fatal(err)
	}
	if sm.Raw[4] != manifestFormatContent {
		t.Fatalf("format byte %d, want %d", sm.Raw[4], manifestFormatContent)
	}
	golden(t, "manifest-content.rpem", sm.Raw)
	got, err := ParseManifest(sm.Raw, PublicKeyOf(testKey()), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	gm := got.Manifest
	if !gm.ContentDefined() || gm.NumChunks() != len(m.Lengths) || gm.NumChunks() < 3*(3<<20)/(DefaultContentMax*4) {
		t.Fatalf("parsed: content %v, %d chunks", gm.ContentDefined(), gm.NumChunks())
	}
	var off int64
	for i := 0; i < gm.NumChunks(); i++ {
		l := gm.ChunkLen(i)
		if gm.ChunkOffset(i) != off || l > DefaultContentMax || (l < DefaultContentMin && i < gm.NumChunks()-1) {
			t.Fatalf("chunk %d at %d (want %d), %d bytes", i, gm.ChunkOffset(i), off, l)
		}
		if err := gm.VerifyChunk(i, data[off:off+int64(l)]); err != nil {
			t.Fatal(err)
		}
		off += int64(l)
	}
	if off != gm.Size || gm.Size != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes, size %d, file %d", off, gm.Size, len(data))
	}
	if err := VerifyFile(bytes.NewReader(data), gm); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 1
	var ce *ChunkError
	if err := VerifyFile(bytes.NewReader(bad), gm); !errors.As(err, &ce) {
		t.Fatalf("tampered: %v", err)
	}
	if err := VerifyFile(bytes.NewReader(data[:len(data)-1]), gm); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short: %v", err)
	}
	if err := VerifyFile(bytes.NewReader(append(bytes.Clone(data), 0)), gm); !errors.Is(err, ErrTooLong) {
		t.Fatalf("long: %v", err)
	}

	// Insert 100 bytes near the start: content cut points move with them.
	shifted := append(append(bytes.Clone(data[:1000]), bytes.Repeat([]byte{9}, 100)...), data[1000:]...)
	shared := func(o BuildOptions) (int, int) {
		a, err := BuildManifest(bytes.NewReader(data), o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := BuildManifest(bytes.NewReader(shifted), o)
		if err != nil {
			t.Fatal(err)
		}
		old := map[[32]byte]bool{}
		for _, h := range a.Chunks {
			old[h] = true
		}
		n := 0
		for _, h := range b.Chunks {
			if old[h] {
				n++
			}
		}
		return n, len(b.Chunks)
	}
	if n, total := shared(contentOptions()); n < total-2 {
		t.Errorf("content chunks: %d of %d shared after an insertion, want all but 2", n, total)
	}
	if n, _ := shared(testOptions()); n != 0 {
		t.Errorf("fixed chunks: %d shared after an insertion, want 0 (the test's premise)", n)
	}
}

// TestFormatOneStillRead: the format-1 golden manifest parses, as fixed
// chunks, after format 2 was added.
func TestFormatOneStillRead(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "manifest.rpem"))
	if err != nil {
		t.Fatal(err)
	}
	sm, err := ParseManifest(raw, PublicKeyOf(testKey()), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if sm.Manifest.ContentDefined() || sm.Manifest.Lengths != nil || raw[4] != manifestFormat {
		t.Fatalf("format 1 manifest read as content-defined")
	}
}

func TestContentManifestRules(t *testing.T) {
	m, err := BuildManifest(bytes.NewReader(patternBytes(t, 1<<20, 3)), contentOptions())
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(m *Manifest){
		"lengths do not add up":   func(m *Manifest) { m.Lengths[0]++ },
		"chunk below the minimum": func(m *Manifest) { m.Lengths[0], m.Lengths[1] = 100, m.Lengths[1]+m.Lengths[0]-100 },
		"chunk above the maximum": func(m *Manifest) { m.Lengths[0], m.Lengths[1] = m.Lengths[0]+m.Lengths[1], 0 },
		"missing length":          func(m *Manifest) { m.Lengths = m.Lengths[1:] },
		"average out of range":    func(m *Manifest) { m.AverageBits = 40 },
		"minimum below 16 KiB":    func(m *Manifest) { m.MinChunk = 1024 },
		"unknown chunker":         func(m *Manifest) { m.Chunker = 7 },
		"lengths in format 1":     func(m *Manifest) { m.Chunker = ChunkFixed },
	} {
		bad := *m
		bad.Lengths = append([]int(nil), m.Lengths...)
		f(&bad)
		if _, err := SignManifest(&bad, testKey()); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	for _, o := range []BuildOptions{
		{MinChunk: 1024}, {AverageBits: 30}, {ChunkSize: MinChunkSize, MinChunk: 2 * MinChunkSize},
	} {
		opts := contentOptions()
		opts.MinChunk, opts.AverageBits = o.MinChunk, o.AverageBits
		if o.ChunkSize != 0 {
			opts.ChunkSize = o.ChunkSize
		}
		if _, err := BuildManifest(bytes.NewReader([]byte("x")), opts); err == nil {
			t.Errorf("built with %s", fmt.Sprint(o.MinChunk, o.AverageBits, o.ChunkSize))
		}
	}
}
