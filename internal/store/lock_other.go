//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package store

import "os"

// lockFile does nothing where flock is not available: two processes on one
// state dir are then not detected.
func lockFile(*os.File) error { return nil }
