package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestAcceptanceBinary runs the acceptance scenario of issue 2 against a
// built rpe binary: init, keys show, sign a 3 MB file, verify; flipping any
// one byte names its chunk; --version notsemver fails; a second init fails
// and leaves the key unchanged.
func TestAcceptanceBinary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "rpe")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != 0 && (!strings.HasPrefix(stderr.String(), "rpe: ") || strings.Count(stderr.String(), "\n") != 1) {
			t.Errorf("rpe %q: stderr %q, want one line", args, stderr.String())
		}
		return code, stdout.String(), stderr.String()
	}

	code, out, errOut := cli("init", "--out", "publisher.key")
	if code != 0 {
		t.Fatalf("init: %s", errOut)
	}
	code, pubLine, _ := cli("keys", "show", "--key", "publisher.key")
	pub := strings.TrimSpace(pubLine)
	if code != 0 || len(pub) != 52 || !strings.Contains(out, pub) {
		t.Fatalf("keys show: %q (init said %q)", pubLine, out)
	}
	art := artifact(t, dir, "app.bin", 3_000_000)
	code, out, errOut = cli("sign", "app.bin", "--key", "publisher.key", "--version", "1.2.3")
	if code != 0 || !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("sign: %d %q %q", code, out, errOut)
	}
	if code, out, errOut = cli("verify", "app.bin", "--pubkey", pub); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("verify: %d %q %q", code, out, errOut)
	}
	good, _ := os.ReadFile(art)
	for _, off := range []int{0, 100_000, 262_144, 1_234_567, 2_999_999} {
		b := bytes.Clone(good)
		b[off] ^= 0x80
		os.WriteFile(art, b, 0o644)
		code, _, errOut := cli("verify", "app.bin", "--pubkey", pub)
		want := "chunk " + strconv.Itoa(off/(256<<10)) + " "
		if code != exitRejected || !strings.Contains(errOut, want) {
			t.Errorf("flip at %d: exit %d %q, want %q", off, code, errOut, want)
		}
	}
	os.WriteFile(art, good, 0o644)
	if code, _, errOut := cli("sign", "app.bin", "--key", "publisher.key", "--version", "notsemver"); code == 0 || !strings.Contains(errOut, "notsemver") {
		t.Errorf("--version notsemver: %d %q", code, errOut)
	}
	key, _ := os.ReadFile(filepath.Join(dir, "publisher.key"))
	if code, _, _ := cli("init", "--out", "publisher.key"); code == 0 {
		t.Error("second init succeeded")
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "publisher.key")); !bytes.Equal(key, again) {
		t.Error("second init changed the key")
	}
	if code, _, _ := cli("verify", "app.bin", "--pubkey", pub); code != 0 {
		t.Error("restored artifact no longer verifies")
	}
}
