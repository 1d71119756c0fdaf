package release

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// ErrChanged is returned when a file changed while it was being hashed.
var ErrChanged = errors.New("file changed while it was read")

// statFile is what hashFile needs of a file: *os.File has it all.
type statFile interface {
	io.ReaderAt
	io.Seeker
	Stat() (fs.FileInfo, error)
}

// hashInput hashes r with hashFile when r is a regular file, and with
// hashStream otherwise.
func hashInput(r io.Reader, chunkSize int, limit int64) (sums [][32]byte, whole [32]byte, n int64, err error) {
	if f, ok := r.(statFile); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return hashFile(f, fi, chunkSize, limit)
		}
	}
	return hashStream(r, chunkSize, limit)
}

// hashFile hashes a regular file from its current offset to its end, or to
// limit bytes, and leaves the offset after the bytes it hashed, as reading
// it would. Two goroutines each read the file with their own buffer, one for
// the whole-file hash and one for the chunk hashes. Reading twice from the
// page cache is cheap next to hashing, and neither goroutine waits for the
// other or touches memory the other one writes; sharing one stream of
// blocks between two cores instead costs each block a trip between their
// caches. Both reads see the same bytes only if the file holds still, so a
// file whose size or modification time changed in between is refused with
// ErrChanged.
func hashFile(f statFile, fi fs.FileInfo, chunkSize int, limit int64) (sums [][32]byte, whole [32]byte, n int64, err error) {
	start, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, whole, 0, err
	}
	n = max(fi.Size()-start, 0)
	if n >= limit {
		// Too long: say so without reading it.
		return nil, whole, limit, nil
	}

	ch := &chunkHasher{size: chunkSize, h: sha256.New(), sums: nil}
	chunkErr := make(chan error, 1)
	go func() {
		chunkErr <- readSection(f, start, n, ch.write)
	}()
	wh := sha256.New()
	err = readSection(f, start, n, func(p []byte) { wh.Write(p) })
	if cerr := <-chunkErr; err == nil {
		err = cerr
	}
	if err != nil {
		return nil, whole, 0, err
	}
	after, err := f.Stat()
	if err != nil {
		return nil, whole, 0, err
	}
	if after.Size() != fi.Size() || !after.ModTime().Equal(fi.ModTime()) {
		return nil, whole, 0, fmt.Errorf("%w (size %d, then %d)", ErrChanged, fi.Size(), after.Size())
	}
	if _, err := f.Seek(start+n, io.SeekStart); err != nil {
		return nil, whole, 0, err
	}
	wh.Sum(whole[:0])
	return ch.finish(), whole, n, nil
}

// readSection reads n bytes of f from off in blocks of streamBlock and hands
// each block to use. A file that ends early is an error.
func readSection(f io.ReaderAt, off, n int64, use func([]byte)) error {
	buf := make([]byte, min(n, streamBlock))
	for n > 0 {
		b := buf[:min(n, int64(len(buf)))]
		k, err := f.ReadAt(b, off)
		use(b[:k])
		off += int64(k)
		n -= int64(k)
		if k == len(b) {
			continue
		}
		if err == io.EOF || err == nil {
			return fmt.Errorf("%w (it ended early)", ErrChanged)
		}
		return err
	}
	return nil
}
