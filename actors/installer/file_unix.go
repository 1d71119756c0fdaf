//go:build unix

package installer

import (
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of like when they differ and the
// process is allowed to change them (typically when it runs as root). A
// failure is ignored: the file then belongs to the updating process, which
// could write the target's directory anyway.
func keepOwner(f *os.File, like fs.FileInfo) {
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	cur, err := f.Stat()
	if err != nil {
		return
	}
	if c, ok := cur.Sys().(*syscall.Stat_t); ok && c.Uid == st.Uid && c.Gid == st.Gid {
		return
	}
	_ = f.Chown(int(st.Uid), int(st.Gid))
}

// ExecSelf replaces the running process image with path, passing argv and
// env unchanged (execve). It returns only on failure; on success the new
// program starts with the same process ID, open files marked close-on-exec
// (all of Go's) closed.
func ExecSelf(path string, argv, env []string) error {
	return syscall.Exec(path, argv, env)
}
