// Package state reads and writes the small files of a node's state
// directory that more than one stage needs: the highest version ever
// accepted (the rollback floor) and the newest signed record held.
//
// Each file is replaced atomically (temporary file, fsync, rename, directory
// fsync: atomicfile), so a crash or power loss leaves the old or the new
// contents, never a mix.
package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/rpe-project/engine/internal/atomicfile"
	"github.com/rpe-project/engine/release"
)

const (
	highestFile = "highest"
	recordFile  = "record"
)

// Highest returns the highest version ever accepted, or nil if none.
func Highest(dir string) (*semver.Version, error) {
	b, err := os.ReadFile(filepath.Join(dir, highestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read version floor: %w", err)
	}
	v, err := release.ParseVersion(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("read version floor %s: %w", filepath.Join(dir, highestFile), err)
	}
	return v, nil
}

// RaiseHighest records v as accepted if it is above the current floor.
func RaiseHighest(dir string, v *semver.Version) error {
	cur, err := Highest(dir)
	if err != nil {
		// Never replace a floor that cannot be read: it might be higher.
		return err
	}
	if cur != nil && !v.GreaterThan(cur) {
		return nil
	}
	return WriteAtomic(filepath.Join(dir, highestFile), []byte(v.String()+"\n"))
}

// Record returns the newest signed record held, or nil if none. A damaged
// file is an error, never a half-trusted record.
func Record(dir string) (*release.SignedPacket, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read held record: %w", err)
	}
	p, err := release.DecodeRelay(b)
	if err != nil {
		return nil, fmt.Errorf("read held record: %w", err)
	}
	return p, nil
}

// SaveRecord stores p as the newest signed record held.
func SaveRecord(dir string, p *release.SignedPacket) error {
	return WriteAtomic(filepath.Join(dir, recordFile), p.EncodeRelay())
}

// WriteAtomic replaces path with b (mode 0600) so that it survives a
// power loss whole: temporary file, fsync, rename, directory fsync
// (atomicfile).
func WriteAtomic(path string, b []byte) error {
	return atomicfile.WriteFile(path, b, 0o600)
}
