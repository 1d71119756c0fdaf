package main

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/rpe-project/engine/release"
)

// TestInitPrivate: rpe init --private writes the key and a shared secret,
// both 0600, and prints the secret for engine.Config; it refuses to
// overwrite either.
func TestInitPrivate(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "pub.key")
	code, stdout, errOut := rpe(t, "init", "--out", key, "--private")
	if code != 0 {
		t.Fatalf("init --private: %d %s", code, errOut)
	}
	m := regexp.MustCompile(`SharedSecret: "([a-z0-9]{52})"`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no SharedSecret line in %q", stdout)
	}
	s, err := release.ReadSecretFile(key + ".secret")
	if err != nil || s.String() != m[1] {
		t.Fatalf("secret file: %v, %v; printed %s", s, err, m[1])
	}
	for _, p := range []string{key, key + ".secret"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", p, fi.Mode(), err)
		}
	}
	// A second init onto the same secret refuses before writing a key.
	key2 := filepath.Join(dir, "other.key")
	code, _, errOut = rpe(t, "init", "--out", key2, "--private", "--secret-out", key+".secret")
	if code == 0 || !strings.Contains(errOut, "refusing to overwrite") {
		t.Fatalf("init onto an existing secret: %d %s", code, errOut)
	}
	if _, err := os.Stat(key2); err == nil {
		t.Error("a key was written although the secret could not be")
	}
	if code, _, _ := rpe(t, "init", "--out", key2, "--secret-out", "x"); code != 2 {
		t.Errorf("--secret-out without --private: exit %d, want 2", code)
	}
}

// TestKeyFilePermissionsRefused: a key readable by others is refused by the
// commands that read it, with the chmod to run.
func TestKeyFilePermissionsRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX mode bits")
	}
	key := filepath.Join(t.TempDir(), "pub.key")
	if code, _, errOut := rpe(t, "init", "--out", key); code != 0 {
		t.Fatal(errOut)
	}
	for _, mode := range []os.FileMode{0o644, 0o666} {
		os.Chmod(key, mode)
		code, _, errOut := rpe(t, "keys", "show", "--key", key)
		if code == 0 || !strings.Contains(errOut, "chmod 600 "+key) {
			t.Errorf("mode %04o: exit %d, %q; want a refusal naming the chmod", mode, code, errOut)
		}
	}
	os.Chmod(key, 0o600)
	if code, _, errOut := rpe(t, "keys", "show", "--key", key); code != 0 {
		t.Errorf("mode 0600: %s", errOut)
	}
}
