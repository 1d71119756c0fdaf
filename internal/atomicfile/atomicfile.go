// Package atomicfile replaces files so that they survive a crash or a power
// loss whole: every file rpe must find intact after a restart (the install
// marker, the failed-install list, the version floor, the held record, a
// manifest, a downloaded release, the executable itself) is written through
// it.
//
// The sequence is always the same: write a temporary file beside the
// destination (same directory, hence same file system, so the rename is
// atomic), fsync it, close it, rename it over the destination, fsync the
// directory. At every instant the destination holds either its old content
// or the whole new one; after the directory sync the new one survives a
// power loss. On any error before the rename the destination is untouched
// and the temporary file removed; a crash may leave a temporary file, named
// "."+base+".rpe-new-*", which RemoveStale (called by Create) cleans up.
//
// The package has no state and no goroutines.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotDurable is returned (wrapped) when a file was renamed into place but
// its directory could not be synced: the change is visible, but a power loss
// may still undo it.
var ErrNotDurable = errors.New("atomicfile: directory sync failed")

// TempMarker is part of the name of every temporary file:
// "."+<base name>+TempMarker+<random>.
const TempMarker = ".rpe-new-"

// File is a temporary file that becomes path on Commit.
type File struct {
	*os.File
	path   string
	closed bool
	done   bool
}

// Create opens a new temporary file beside path (mode 0600 until Chmod),
// after removing the temporary files a crash left for path.
func Create(path string) (*File, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	RemoveStale(dir, base)
	f, err := os.CreateTemp(dir, "."+base+TempMarker+"*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Path is the destination the file replaces on Commit.
func (f *File) Path() string { return f.path }

// Sync fsyncs and closes the temporary file, which then waits for Commit
// (or Abort) under its temporary name.
func (f *File) Sync() error {
	if f.closed {
		return nil
	}
	err := f.File.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	f.closed = true
	return err
}

// Commit syncs the file (if Sync was not called), renames it over the
// destination and syncs the directory. If it fails before the rename, the
// temporary file is removed and the destination untouched; a failed
// directory sync after the rename returns an error wrapping ErrNotDurable.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: commit after commit or abort")
	}
	if err := f.Sync(); err != nil {
		f.Abort()
		return err
	}
	if err := os.Rename(f.Name(), f.path); err != nil {
		f.Abort()
		return err
	}
	f.done = true
	if err := SyncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("%s: %w: %w", f.path, ErrNotDurable, err)
	}
	return nil
}

// Abort removes the temporary file, unless it was committed; safe to call
// more than once and after Commit (as a deferred cleanup).
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	if !f.closed {
		f.File.Close()
		f.closed = true
	}
	os.Remove(f.Name())
}

// WriteFile replaces path with data, mode perm, as the package doc says.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}

// SyncDir fsyncs a directory, so the renames and creations in it survive a
// power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Remove removes path and syncs its directory; a missing path is no error.
func Remove(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// RemoveStale removes the temporary files a crash left for base in dir.
// Errors are ignored: a leftover only wastes space.
func RemoveStale(dir, base string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := "." + base + TempMarker
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), prefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
