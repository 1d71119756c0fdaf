package installer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rpe-project/engine/internal/atomicfile"
)

var (
	// ErrNotRegular is returned when a target, staged file or backup is not
	// a regular file (a directory, a device, or, for the target, a symlink:
	// resolve symlinks first, or the link itself would be replaced).
	ErrNotRegular = errors.New("installer: not a regular file")
	// ErrSameFile is returned when two of target, staged file and backup
	// name the same file.
	ErrSameFile = errors.New("installer: paths name the same file")
	// ErrNoBackup is returned by Rollback when there is no backup to restore.
	ErrNoBackup = errors.New("installer: no backup")
	// ErrNotDurable is returned when a file was renamed into place but the
	// directory holding it could not be synced: the change is visible, but
	// a power loss may still undo it. It is atomicfile's.
	ErrNotDurable = atomicfile.ErrNotDurable
)

// tempMarker is part of the name of every temporary file the installer
// writes, ".<name>.rpe-new-<random>", beside the file it will replace.
const tempMarker = atomicfile.TempMarker

// BackupPath returns where the state directory keeps the previous
// executable of target: <stateDir>/backup/<base name of target>.
func BackupPath(stateDir, target string) string {
	return filepath.Join(stateDir, "backup", filepath.Base(target))
}

// hooks lets tests fail a swap at chosen points. A nil *hooks does nothing.
type hooks struct {
	// afterTemp runs once the new file is written and synced beside the
	// target, before the backup is made.
	afterTemp func(tmp string) error
	// beforeRename runs once the backup is made, before the rename over the
	// target.
	beforeRename func(tmp string) error
	// afterReadPending runs once SwapOnTrial has read the current marker,
	// before it decides on the backup and writes its own.
	afterReadPending func()
	// createdDir sees each directory mkdirDurable creates and the parent it
	// then syncs.
	createdDir func(dir, synced string)
	// step sees each step of an install by name, as it is reached; the
	// crash test (crashSteps) kills the process there.
	step func(name string)
}

func (h *hooks) fireStep(name string) {
	if h != nil && h.step != nil {
		h.step(name)
	}
}

func (h *hooks) fireAfterReadPending() {
	h.fireStep("read-pending")
	if h != nil && h.afterReadPending != nil {
		h.afterReadPending()
	}
}

func (h *hooks) fireAfterTemp(tmp string) error {
	h.fireStep("temp-written")
	if h == nil || h.afterTemp == nil {
		return nil
	}
	return h.afterTemp(tmp)
}

func (h *hooks) fireBeforeRename(tmp string) error {
	h.fireStep("before-rename")
	if h == nil || h.beforeRename == nil {
		return nil
	}
	return h.beforeRename(tmp)
}

// Swap atomically replaces target with the verified staged file, keeping the
// current target at backupPath.
//
// The staged file is copied (never moved, so the node can keep serving it)
// to a temporary file in target's directory, so the final rename stays on
// one file system; the copy gets target's mode bits (and, where the process
// may, its owner) and is fsynced. Then the current target is copied to
// backupPath (through a temporary file, fsynced and renamed, so a backup is
// always complete), the temporary file is renamed over target and target's
// directory is fsynced.
//
// On any error target is untouched and no temporary file is left behind;
// backupPath may already hold the current target. The one exception is a
// failure of the final directory sync, which is reported with ErrNotDurable
// after the rename has happened. A crash (power loss) part-way may leave a
// temporary file ".<name>.rpe-new-*" beside target or backupPath; the next
// Swap or Rollback into that directory removes it.
//
// target must be a regular file, not a symlink. Swap does not check the
// staged file's content: that is the verifier's job, done before.
func Swap(target, staged, backupPath string) error {
	return swap(target, staged, backupPath, nil)
}

func swap(target, staged, backupPath string, h *hooks) error {
	return replace(target, staged, backupPath, true, h)
}

// swapKeepingBackup is Swap without the backup step: backupPath must
// already hold a regular file, which is left as it is. It is used when the
// target being replaced was never confirmed, so the backup (the last
// confirmed version) is what a rollback must still restore. Its guarantees
// are Swap's.
func swapKeepingBackup(target, staged, backupPath string, h *hooks) error {
	return replace(target, staged, backupPath, false, h)
}

// replace is Swap; makeBackup says whether the current target is copied to
// backupPath first, or backupPath must already exist and is kept.
func replace(target, staged, backupPath string, makeBackup bool, h *hooks) error {
	tfi, err := regular(target, true)
	if err != nil {
		return fmt.Errorf("swap: target: %w", err)
	}
	sfi, err := regular(staged, false)
	if err != nil {
		return fmt.Errorf("swap: staged file: %w", err)
	}
	if os.SameFile(tfi, sfi) {
		return fmt.Errorf("swap: %s and %s: %w", target, staged, ErrSameFile)
	}
	if bfi, err := os.Stat(backupPath); err == nil && (os.SameFile(tfi, bfi) || os.SameFile(sfi, bfi)) {
		return fmt.Errorf("swap: backup %s: %w", backupPath, ErrSameFile)
	}
	if !makeBackup {
		if _, err := regular(backupPath, false); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("swap %s: keep backup: %w: %w", target, ErrNoBackup, err)
		} else if err != nil {
			return fmt.Errorf("swap %s: keep backup: %w", target, err)
		}
	}

	tmp, err := writeTemp(target, staged, tfi)
	if err != nil {
		return fmt.Errorf("swap %s: write new file: %w", target, err)
	}
	defer tmp.Abort()
	if err := h.fireAfterTemp(tmp.Name()); err != nil {
		return fmt.Errorf("swap %s: %w", target, err)
	}
	if makeBackup {
		if err := mkdirDurable(filepath.Dir(backupPath), h); err != nil {
			return fmt.Errorf("swap %s: backup: %w", target, err)
		}
		if err := replaceWithCopy(backupPath, target, tfi); err != nil {
			return fmt.Errorf("swap %s: backup: %w", target, err)
		}
		h.fireStep("backup-written")
	}
	if err := h.fireBeforeRename(tmp.Name()); err != nil {
		return fmt.Errorf("swap %s: %w", target, err)
	}
	if err := tmp.Commit(); err != nil {
		return fmt.Errorf("swap %s: %w", target, err)
	}
	h.fireStep("renamed")
	return nil
}

// Rollback puts the file at backupPath back over target with the same care
// as Swap: a synced copy beside target, renamed over it, the directory
// synced. The backup is kept, so a Rollback that is interrupted can simply be
// repeated. target may be missing; if it exists it must be a regular file.
// On error target is untouched (ErrNotDurable aside, as for Swap).
func Rollback(target, backupPath string) error {
	bfi, err := regular(backupPath, false)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rollback %s: %w: %w", target, ErrNoBackup, err)
	}
	if err != nil {
		return fmt.Errorf("rollback %s: backup: %w", target, err)
	}
	if tfi, err := regular(target, true); err == nil {
		if os.SameFile(tfi, bfi) {
			return fmt.Errorf("rollback %s: backup %s: %w", target, backupPath, ErrSameFile)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rollback: target: %w", err)
	}
	if err := replaceWithCopy(target, backupPath, bfi); err != nil {
		return fmt.Errorf("rollback %s: %w", target, err)
	}
	return nil
}

// regular stats path (without following a final symlink if noLink) and
// checks it is a regular file.
func regular(path string, noLink bool) (fs.FileInfo, error) {
	stat := os.Stat
	if noLink {
		stat = os.Lstat
	}
	fi, err := stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s (%s): %w", path, fi.Mode().Type(), ErrNotRegular)
	}
	return fi, nil
}

// replaceWithCopy atomically replaces dst with a copy of src that has the
// mode (and owner) of like: temporary file, fsync, rename, directory fsync.
func replaceWithCopy(dst, src string, like fs.FileInfo) error {
	f, err := writeTemp(dst, src, like)
	if err != nil {
		return err
	}
	return f.Commit()
}

// writeTemp copies src into a new temporary file beside dst, gives it the
// mode and, where possible, the owner of like, fsyncs and closes it. On
// error nothing is left behind. Stale temporary files for dst from an
// earlier crash are removed first.
func writeTemp(dst, src string, like fs.FileInfo) (f *atomicfile.File, err error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := atomicfile.Create(dst)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			out.Abort()
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return nil, fmt.Errorf("copy %s: %w", src, err)
	}
	if like != nil {
		keepOwner(out.File, like)
		if err := out.Chmod(like.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
			return nil, err
		}
	}
	if err := out.Sync(); err != nil {
		return nil, err
	}
	return out, nil
}

// mkdirDurable creates dir (0700) and any missing parents, syncing the
// parent of each one it creates, so the backup's directory cannot vanish in
// a power loss that keeps the target's rename (the backup's own directory
// sync covers only the file's entry, not the directory's).
func mkdirDurable(dir string, h *hooks) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent, h); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if h != nil && h.createdDir != nil {
		h.createdDir(dir, parent)
	}
	h.fireStep("backup-dir")
	return atomicfile.SyncDir(parent)
}
