package state

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rpe-project/engine/release"
)

// rotationsFile holds the key rotation statements the node has followed,
// oldest first (release.EncodeRotations).
const rotationsFile = "rotations"

// maxRotations caps the statements read back: a node that followed more
// rotations than this has a damaged file, not a busy publisher.
const maxRotations = 1024

// Rotations returns the rotation statements followed, oldest first (nil
// for none). A damaged file is an error: the caller must fail closed, as
// trusting the configured key again would let a retired key back in.
func Rotations(dir string) ([]*release.Rotation, error) {
	path := filepath.Join(dir, rotationsFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key rotations: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRotations*release.RotationSize+1))
	n := len(b)
	if err != nil {
		return nil, fmt.Errorf("read key rotations %s: %w", path, err)
	}
	if n > maxRotations*release.RotationSize {
		return nil, fmt.Errorf("read key rotations %s: more than %d statements", path, maxRotations)
	}
	chain, err := release.DecodeRotations(b[:n])
	if err != nil {
		return nil, fmt.Errorf("read key rotations %s: %w", path, err)
	}
	return chain, nil
}

// SaveRotations replaces the statements followed, durably (fsync and
// rename), before the node acts on the new key.
func SaveRotations(dir string, chain []*release.Rotation) error {
	return WriteAtomic(filepath.Join(dir, rotationsFile), release.EncodeRotations(chain))
}

// TrustedKey returns the key a node configured with key trusts now: key
// after the rotations kept in dir, and the chain itself.
func TrustedKey(dir string, key release.PublicKey) (release.PublicKey, []*release.Rotation, error) {
	chain, err := Rotations(dir)
	if err != nil {
		return key, nil, err
	}
	trusted, err := release.TrustedKey(key, chain)
	if err != nil {
		return key, nil, fmt.Errorf("key rotations in %s: %w", dir, err)
	}
	return trusted, chain, nil
}
