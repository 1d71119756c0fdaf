package release

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestPublicKeyText(t *testing.T) {
	// A key as pkarr prints it round-trips.
	const pkarrKey = "o4dksfbqk85ogzdb5osziw6befigbuxmuxkuxq8434q89uj56uyy"
	k, err := ParsePublicKey(pkarrKey)
	if err != nil {
		t.Fatal(err)
	}
	if k.String() != pkarrKey {
		t.Fatalf("round trip: %s", k)
	}
	if k2, err := ParsePublicKey("pk:" + pkarrKey); err != nil || k2 != k {
		t.Fatalf("pk: prefix: %v", err)
	}
	for i := 0; i < 50; i++ {
		var k PublicKey
		rand.Read(k[:])
		s := k.String()
		if len(s) != PublicKeyTextLen {
			t.Fatalf("%d characters", len(s))
		}
		got, err := ParsePublicKey(s)
		if err != nil || got != k {
			t.Fatalf("round trip of %x: %v", k, err)
		}
	}
}

func TestParsePublicKeyErrors(t *testing.T) {
	good := PublicKeyOf(testKey()).String()
	for _, tc := range []struct{ in, want string }{
		{"", "0 characters, want 52"},
		{good[:51], "51 characters, want 52"},
		{good + "y", "53 characters, want 52"},
		{"0" + good[1:], `character '0' at position 1`},
		{good[:10] + "l" + good[11:], `character 'l' at position 11`},
		{strings.ToUpper(good[:1]) + good[1:], "at position 1"},
		{good[:51] + "b", "non-zero padding bits"},
	} {
		_, err := ParsePublicKey(tc.in)
		if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePublicKey(%q) = %v, want ErrBadKey with %q", tc.in, err, tc.want)
		}
	}
}

func TestSecretKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "publisher.key")
	sk, err := GenerateSecretKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretKeyFile(path, sk); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := ReadSecretKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(sk) {
		t.Fatal("read back another key")
	}
	before, _ := os.ReadFile(path)

	// A second write refuses and leaves the first key.
	other, _ := GenerateSecretKey(nil)
	if err := WriteSecretKeyFile(path, other); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v, want fs.ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("key file changed")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left %d files in the directory, want 1", len(entries))
	}

	// Writing into a missing directory fails and leaves nothing.
	if err := WriteSecretKeyFile(filepath.Join(dir, "nope", "k"), sk); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestReadSecretKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := EncodeSecretKey(testKey())
	if _, err := ReadSecretKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":     {},
		"short":     good[:40],
		"not hex":   append([]byte("zz"), good[2:]...),
		"two lines": append(bytes.Clone(good), good...),
		"huge":      bytes.Repeat([]byte("a"), 5000),
	} {
		_, err := ReadSecretKeyFile(write(strings.ReplaceAll(name, " ", "_"), b))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// CRLF and no newline are accepted.
	for _, b := range [][]byte{good[:64], append(good[:64:64], "\r\n"...)} {
		sk, err := ReadSecretKeyFile(write("ok", b))
		if err != nil || !sk.Equal(testKey()) {
			t.Errorf("%q: %v", b, err)
		}
	}
	if len(testKey()) != ed25519.PrivateKeySize {
		t.Fatal("bad test key")
	}
}

func TestVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1.2.3", "1.2.3"},
		{"v1.2.3", "1.2.3"},
		{"0.0.1-rc.1+build.7", "0.0.1-rc.1+build.7"},
		{"notsemver", ""},
		{"1.2", ""},
		{"01.2.3", ""},
		{"", ""},
		{"1.2.3-" + strings.Repeat("a", 70), ""},
	} {
		v, err := ParseVersion(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrNotSemver) || !strings.Contains(err.Error(), `"`+tc.in) {
				t.Errorf("ParseVersion(%q) = %v, want ErrNotSemver quoting it", tc.in, err)
			}
			continue
		}
		if err != nil || v.String() != tc.want || v.Original() != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v, want %s", tc.in, v, err, tc.want)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "myapp", "linux-amd64", "x_y", strings.Repeat("a", 63)} {
		if err := ValidateName("app", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "_a", "My", "a.b", "a b", strings.Repeat("a", 64), "é"} {
		if err := ValidateName("app", bad); !errors.Is(err, ErrBadName) {
			t.Errorf("%q: %v, want ErrBadName", bad, err)
		}
	}
}

func TestSecretKeyFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX mode bits on Windows")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "my key")
	if err := os.WriteFile(path, EncodeSecretKey(testKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o644, false}, {0o666, false}, {0o640, false}, {0o604, false}, {0o620, false},
		{0o600, true}, {0o400, true}, {0o700, true},
	} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		sk, err := ReadSecretKeyFile(path)
		if tc.ok {
			if err != nil || !sk.Equal(testKey()) {
				t.Errorf("mode %04o: %v, want the key", tc.mode, err)
			}
			continue
		}
		if !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("mode %04o: %v, want ErrKeyPermissions", tc.mode, err)
			continue
		}
		if want := "chmod 600 '" + path + "'"; !strings.Contains(err.Error(), want) {
			t.Errorf("mode %04o: %q does not say %q", tc.mode, err, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/home/a/pub.key": "/home/a/pub.key",
		"a b":             "'a b'",
		"it's":            `'it'\''s'`,
		"$(rm)":           "'$(rm)'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
