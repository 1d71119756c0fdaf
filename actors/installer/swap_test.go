package installer

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func modeOf(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// names lists a directory's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func noTemp(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		for _, n := range names(t, d) {
			if strings.Contains(n, tempMarker) {
				t.Errorf("temporary file %s left in %s", n, d)
			}
		}
	}
}

type swapFixture struct {
	dir, stateDir          string
	target, staged, backup string
	old, new               []byte
}

func newSwapFixture(t *testing.T) *swapFixture {
	t.Helper()
	f := &swapFixture{dir: t.TempDir(), stateDir: t.TempDir()}
	f.target = filepath.Join(f.dir, "app")
	f.staged = filepath.Join(f.stateDir, "staged")
	f.backup = BackupPath(f.stateDir, f.target)
	f.old = []byte("#!old version\x00\x01")
	f.new = make([]byte, 3<<20+17) // several copy buffers, odd length
	rand.Read(f.new)
	writeFile(t, f.target, f.old, 0o751)
	writeFile(t, f.staged, f.new, 0o600)
	return f
}

func TestSwap(t *testing.T) {
	f := newSwapFixture(t)
	before, _ := os.Stat(f.target)
	if err := Swap(f.target, f.staged, f.backup); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, f.target); !bytes.Equal(got, f.new) {
		t.Fatalf("target has %d bytes, not the staged %d", len(got), len(f.new))
	}
	if m := modeOf(t, f.target); m != 0o751 {
		t.Errorf("target mode %v, want -rwxr-x--x", m)
	}
	if got := readFile(t, f.backup); !bytes.Equal(got, f.old) {
		t.Errorf("backup = %q, want the old target %q", got, f.old)
	}
	if m := modeOf(t, f.backup); m != 0o751 {
		t.Errorf("backup mode %v, want the target's", m)
	}
	if got := readFile(t, f.staged); !bytes.Equal(got, f.new) || modeOf(t, f.staged) != 0o600 {
		t.Error("staged file changed")
	}
	after, _ := os.Stat(f.target)
	if os.SameFile(before, after) {
		t.Error("target was rewritten in place, not replaced by a rename")
	}
	noTemp(t, f.dir, filepath.Dir(f.backup))

	// A second swap replaces the backup with the then-current target.
	third := []byte("third")
	writeFile(t, f.staged, third, 0o644)
	if err := Swap(f.target, f.staged, f.backup); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, f.target), third) || !bytes.Equal(readFile(t, f.backup), f.new) {
		t.Error("second swap: wrong target or backup")
	}
	if m := modeOf(t, f.target); m != 0o751 {
		t.Errorf("second swap: target mode %v", m)
	}
}

func TestSwapKeepsSpecialModeBits(t *testing.T) {
	f := newSwapFixture(t)
	if err := os.Chmod(f.target, 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := Swap(f.target, f.staged, f.backup); err != nil {
		t.Fatal(err)
	}
	if m := modeOf(t, f.target); m != 0o755|fs.ModeSetuid {
		t.Errorf("target mode %v, want setuid 0755", m)
	}
}

func TestSwapRemovesStaleTemp(t *testing.T) {
	f := newSwapFixture(t)
	stale := filepath.Join(f.dir, ".app"+tempMarker+"123")
	writeFile(t, stale, []byte("half"), 0o600)
	other := filepath.Join(f.dir, ".other"+tempMarker+"123") // another file's: kept
	writeFile(t, other, []byte("x"), 0o600)
	if err := Swap(f.target, f.staged, f.backup); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another file's temporary file was removed: %v", err)
	}
}

var errInjected = errors.New("injected failure")

func TestSwapFailureLeavesTargetAlone(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, f *swapFixture) *hooks
		want  error // errors.Is; nil = any error
	}{
		{"staged missing", func(t *testing.T, f *swapFixture) *hooks {
			f.staged = filepath.Join(f.stateDir, "nope")
			return nil
		}, fs.ErrNotExist},
		{"staged is a directory", func(t *testing.T, f *swapFixture) *hooks {
			f.staged = f.stateDir
			return nil
		}, ErrNotRegular},
		{"staged is the target", func(t *testing.T, f *swapFixture) *hooks {
			f.staged = f.target
			return nil
		}, ErrSameFile},
		{"staged is a hard link to the target", func(t *testing.T, f *swapFixture) *hooks {
			f.staged = filepath.Join(f.stateDir, "link")
			if err := os.Link(f.target, f.staged); err != nil {
				t.Fatal(err)
			}
			return nil
		}, ErrSameFile},
		{"backup is the target", func(t *testing.T, f *swapFixture) *hooks {
			f.backup = f.target
			return nil
		}, ErrSameFile},
		{"backup's parent is a file", func(t *testing.T, f *swapFixture) *hooks {
			f.backup = filepath.Join(f.staged, "backup")
			return nil
		}, nil},
		{"backup is a directory", func(t *testing.T, f *swapFixture) *hooks {
			if err := os.MkdirAll(f.backup, 0o700); err != nil {
				t.Fatal(err)
			}
			return nil
		}, nil},
		{"injected after the new file is written", func(t *testing.T, f *swapFixture) *hooks {
			return &hooks{afterTemp: func(tmp string) error {
				// The new file is complete, synced and has the target's mode.
				if !bytes.Equal(readFile(t, tmp), f.new) || modeOf(t, tmp) != 0o751 {
					t.Error("temporary file is not the staged file with the target's mode")
				}
				if filepath.Dir(tmp) != f.dir {
					t.Errorf("temporary file %s not beside the target", tmp)
				}
				return errInjected
			}}
		}, errInjected},
		{"injected before the rename", func(t *testing.T, f *swapFixture) *hooks {
			return &hooks{beforeRename: func(string) error {
				if !bytes.Equal(readFile(t, f.backup), f.old) {
					t.Error("backup not made before the rename")
				}
				return errInjected
			}}
		}, errInjected},
		{"rename fails", func(t *testing.T, f *swapFixture) *hooks {
			return &hooks{beforeRename: func(tmp string) error {
				// Make the rename's source vanish.
				return os.Remove(tmp)
			}}
		}, fs.ErrNotExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newSwapFixture(t)
			h := c.setup(t, f)
			before, _ := os.Stat(f.target)
			err := swap(f.target, f.staged, f.backup, h)
			if err == nil {
				t.Fatal("swap succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("error %v is not %v", err, c.want)
			}
			after, serr := os.Stat(f.target)
			if serr != nil || !os.SameFile(before, after) {
				t.Fatalf("target replaced: %v", serr)
			}
			if !bytes.Equal(readFile(t, f.target), f.old) || modeOf(t, f.target) != 0o751 {
				t.Error("target changed")
			}
			noTemp(t, f.dir, f.stateDir)
			if fi, err := os.Stat(filepath.Dir(f.backup)); err == nil && fi.IsDir() {
				noTemp(t, filepath.Dir(f.backup))
			}
		})
	}
}

func TestSwapBadTarget(t *testing.T) {
	dir := t.TempDir()
	staged := filepath.Join(dir, "staged")
	writeFile(t, staged, []byte("new"), 0o755)
	file := filepath.Join(dir, "file")
	writeFile(t, file, []byte("a file"), 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, target string
		want         error
	}{
		{"missing", filepath.Join(dir, "missing"), fs.ErrNotExist},
		{"a directory", dir, ErrNotRegular},
		{"a symlink", link, ErrNotRegular},
		{"under a file", filepath.Join(file, "app"), nil},
	}
	for _, c := range cases {
		err := Swap(c.target, staged, filepath.Join(dir, "state", "backup"))
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: Swap error %v, want %v", c.name, err, c.want)
		}
	}
	if !bytes.Equal(readFile(t, file), []byte("a file")) {
		t.Error("symlink's destination changed")
	}
	if got := names(t, dir); !slices.Equal(got, []string{"file", "link", "staged"}) {
		t.Errorf("directory now holds %v", got)
	}
}

func TestRollback(t *testing.T) {
	f := newSwapFixture(t)
	if err := Swap(f.target, f.staged, f.backup); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // repeatable
		if err := Rollback(f.target, f.backup); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readFile(t, f.target), f.old) {
			t.Fatalf("rollback %d: target not restored", i)
		}
		if m := modeOf(t, f.target); m != 0o751 {
			t.Errorf("rollback %d: mode %v", i, m)
		}
		if !bytes.Equal(readFile(t, f.backup), f.old) {
			t.Errorf("rollback %d: backup changed", i)
		}
		noTemp(t, f.dir)
	}

	// A missing target is restored too.
	if err := os.Remove(f.target); err != nil {
		t.Fatal(err)
	}
	if err := Rollback(f.target, f.backup); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, f.target), f.old) {
		t.Error("missing target not restored")
	}
}

func TestRollbackFailures(t *testing.T) {
	f := newSwapFixture(t)
	err := Rollback(f.target, f.backup)
	if !errors.Is(err, ErrNoBackup) {
		t.Errorf("no backup: %v, want ErrNoBackup", err)
	}
	if err := Rollback(f.target, f.target); !errors.Is(err, ErrSameFile) {
		t.Errorf("backup is target: %v, want ErrSameFile", err)
	}
	if err := Rollback(f.target, f.stateDir); !errors.Is(err, ErrNotRegular) {
		t.Errorf("backup is a directory: %v, want ErrNotRegular", err)
	}
	if err := Rollback(f.dir, f.staged); !errors.Is(err, ErrNotRegular) {
		t.Errorf("target is a directory: %v, want ErrNotRegular", err)
	}
	if !bytes.Equal(readFile(t, f.target), f.old) {
		t.Error("target changed")
	}
	noTemp(t, f.dir, f.stateDir)
}

// A swap that creates the backup's directory syncs the directory holding
// it: the backup file's own directory sync does not make the new directory
// itself durable, and a power loss could otherwise keep the new target and
// lose the only copy of the old one.
func TestSwapCreatesBackupDirDurably(t *testing.T) {
	f := newSwapFixture(t)
	backup := filepath.Join(f.stateDir, "deep", "backup", "app")
	var synced []string
	h := &hooks{createdDir: func(dir, parent string) { synced = append(synced, dir+" in "+parent) }}
	if err := swap(f.target, f.staged, backup, h); err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(f.stateDir, "deep") + " in " + f.stateDir,
		filepath.Join(f.stateDir, "deep", "backup") + " in " + filepath.Join(f.stateDir, "deep"),
	}
	if !slices.Equal(synced, want) {
		t.Fatalf("directories created and synced %q, want %q", synced, want)
	}
	if !bytes.Equal(readFile(t, backup), f.old) {
		t.Fatal("backup is not the old version")
	}
	// An existing directory is left as it is.
	synced = nil
	if err := swap(f.target, f.staged, backup, h); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 0 {
		t.Fatalf("created %q again", synced)
	}
}
