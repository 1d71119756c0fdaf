package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rpe-project/engine/internal/atomicfile"
)

// writeFileAtomic writes data to path so that path holds either its old
// contents or all of data, never a part, also after a power loss.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.WriteFile(path, data, perm); err != nil {
		return cannotWrite(path, err)
	}
	return nil
}

// cannotWrite names the file asked for (not the temporary file that
// failed), why, and the fix.
func cannotWrite(path string, err error) error {
	dir := filepath.Dir(path)
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot write %s: directory %s does not exist; create it or write elsewhere", path, dir)
	}
	return fmt.Errorf("cannot write %s: %w; make directory %s writable, or write elsewhere", path, err, dir)
}

// readFileLimit reads at most limit bytes of path, and fails if it is longer.
func readFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}
