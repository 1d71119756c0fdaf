//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package installer

import (
	"errors"
	"os"
	"syscall"
)

// flock takes an exclusive flock on f, waiting for it. The lock belongs to
// the open file, so a second open of the same file, even in this process,
// waits; it is released when f is closed, when the process exits or
// crashes, and across exec (Go opens files close-on-exec).
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
