//go:build !unix

package installer

import (
	"errors"
	"io/fs"
	"os"
)

// ErrExecUnsupported is returned by ExecSelf where the system has no exec.
var ErrExecUnsupported = errors.New("installer: exec is not supported on this system")

func keepOwner(*os.File, fs.FileInfo) {}

// ExecSelf would replace the running process image; this system cannot.
func ExecSelf(path string, argv, env []string) error { return ErrExecUnsupported }
