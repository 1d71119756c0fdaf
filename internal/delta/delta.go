// Package delta makes an update cost only what changed: before a release is
// downloaded, it finds the release's chunks in a file the node already has
// (the installed program, or an earlier copy of the output) and copies them
// into the store locally.
//
// Matching is by the chunk hashes the signed manifest lists. The old file is
// cut the way the new one was: at the same fixed offsets for a manifest of
// fixed-size chunks, or by the same content-defined chunker for one whose
// chunks were cut by content (docs/FORMATS.md), so that an insertion in
// the middle of the program shifts the cut points with the bytes and the
// chunks after it still match. Each piece of the old file whose SHA-256 a
// missing chunk names is checked against the manifest
// (release.Manifest.VerifyChunk, the check the verifier makes of a chunk
// from a peer), written at the chunk's offset and marked verified, so the
// node serves it to peers from then on like any other chunk. The whole-file
// hash is still checked before anything is installed.
//
// Reuse runs once, when a download's manifest has been accepted and before
// any chunk is asked of a peer; it reads the old file once, capped at the
// largest size a release may have.
package delta

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rpe-project/engine/internal/store"
	"github.com/rpe-project/engine/release"
)

// Result says what Reuse copied.
type Result struct {
	Chunks  []int // indices of the chunks copied and marked verified
	Bytes   int64 // their bytes: what the download no longer fetches
	Scanned int64 // bytes of the old files read
}

// Reuse copies into rel every missing chunk whose bytes one of the files
// from holds at a chunk boundary, checks it and marks it verified. A file
// that does not exist is skipped; a read error ends the scan of that file
// and keeps what was copied so far. An error is returned only when the
// store could not be written.
func Reuse(rel *store.Release, from ...string) (Result, error) {
	m := rel.Manifest().Manifest
	want := map[[32]byte][]int{}
	for _, i := range rel.Missing() {
		want[m.Chunks[i]] = append(want[m.Chunks[i]], i)
	}
	var res Result
	for _, path := range from {
		if len(want) == 0 {
			break
		}
		if err := reuseFrom(rel, m, path, want, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// errStore marks a failure to write the store, which ends Reuse.
var errStore = errors.New("store")

func reuseFrom(rel *store.Release, m *release.Manifest, path string, want map[[32]byte][]int, res *Result) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // nothing to reuse
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	r := &countingReader{r: io.LimitReader(f, release.DefaultMaxSize)}
	tail := m.Chunks[m.NumChunks()-1]
	tailWanted := func() bool { _, ok := want[tail]; return ok }
	err = pieces(r, m, tailWanted, func(piece []byte) error {
		h := sha256.Sum256(piece)
		idx, ok := want[h]
		if !ok {
			return nil
		}
		delete(want, h)
		for _, i := range idx {
			if err := m.VerifyChunk(i, piece); err != nil {
				continue // same hash, other length: not this chunk
			}
			if err := rel.WriteChunk(i, piece); err != nil {
				if errors.Is(err, store.ErrVerified) {
					continue
				}
				return fmt.Errorf("%w: %w", errStore, err)
			}
			if err := rel.MarkVerified(i); err != nil {
				return fmt.Errorf("%w: %w", errStore, err)
			}
			res.Chunks = append(res.Chunks, i)
			res.Bytes += int64(len(piece))
		}
		return nil
	})
	res.Scanned += r.n
	if errors.Is(err, errStore) {
		return fmt.Errorf("reuse chunks from %s: %w", path, err)
	}
	return nil // a read error only ends the scan
}

// pieces cuts the old file as the manifest's chunks were cut and calls
// emit with each piece (valid only during the call). For fixed-size chunks
// it also offers the start of each window as the new release's short last
// chunk while tailWanted says that one is still missing.
func pieces(r io.Reader, m *release.Manifest, tailWanted func() bool, emit func([]byte) error) error {
	if m.ContentDefined() {
		return m.Split(r, emit)
	}
	// Fixed size: every aligned ChunkSize window, and a short tail.
	buf := make([]byte, m.ChunkSize)
	last := m.ChunkLen(m.NumChunks() - 1)
	for {
		n, err := io.ReadFull(r, buf)
		if n == len(buf) {
			if e := emit(buf); e != nil {
				return e
			}
			// The new release's short last chunk may begin any aligned
			// window of the old file.
			if last < len(buf) && tailWanted() {
				if e := emit(buf[:last]); e != nil {
					return e
				}
			}
			continue
		}
		if n > 0 {
			if e := emit(buf[:n]); e != nil {
				return e
			}
			if last < n && tailWanted() {
				if e := emit(buf[:last]); e != nil {
					return e
				}
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		return err
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
