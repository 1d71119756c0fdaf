package main

import (
	"fmt"
	"io"
	"os"

	"github.com/rpe-project/engine/internal/atomicfile"
)

// writeFileAtomic writes data to path so that path holds either its old
// contents or all of data, never a part, also after a power loss.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFile(path, data, perm)
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
