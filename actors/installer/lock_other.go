//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package installer

import "os"

// flock does nothing where flock is not available: the installer's state
// changes are then not serialised (see lockState).
func flock(*os.File) error { return nil }
