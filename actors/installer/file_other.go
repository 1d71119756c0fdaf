//go:build !unix

package installer

import (
	"io/fs"
	"os"
)

func keepOwner(*os.File, fs.FileInfo) {}

// ExecSelf would replace the running process image; this system has no
// exec, so it returns ErrExecUnsupported.
func ExecSelf(path string, argv, env []string) error { return ErrExecUnsupported }
