package release

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// A secret key file holds the 32-byte ed25519 seed as 64 lower-case hex
// digits and a newline (see docs/FORMATS.md). It is written with mode 0600.

// maxKeyFileSize caps how much of a key file is read.
const maxKeyFileSize = 1024

// GenerateSecretKey makes a new publisher key from rand (crypto/rand.Reader
// when rand is nil).
func GenerateSecretKey(rand io.Reader) (ed25519.PrivateKey, error) {
	_, sk, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return sk, nil
}

// PublicKeyOf returns the public half of sk.
func PublicKeyOf(sk ed25519.PrivateKey) PublicKey {
	var k PublicKey
	copy(k[:], sk.Public().(ed25519.PublicKey))
	return k
}

// EncodeSecretKey returns the key file contents for sk.
func EncodeSecretKey(sk ed25519.PrivateKey) []byte {
	return append([]byte(hex.EncodeToString(sk.Seed())), '\n')
}

// DecodeSecretKey parses key file contents: 64 hex digits, optionally
// followed by a newline (LF or CRLF).
func DecodeSecretKey(b []byte) (ed25519.PrivateKey, error) {
	t := bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(t) != 2*ed25519.SeedSize {
		return nil, fmt.Errorf("%w secret key: %d bytes, want %d hex digits and a newline", ErrMalformed, len(b), 2*ed25519.SeedSize)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := hex.Decode(seed, t); err != nil {
		return nil, fmt.Errorf("%w secret key: %v", ErrMalformed, err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// WriteSecretKeyFile writes sk to path with mode 0600. It never overwrites:
// if path exists it fails with an error wrapping fs.ErrExist and leaves the
// file as it was. The key is written to a temporary file in the same
// directory, synced, then linked to path, so a crash leaves either no file or
// the whole key.
func WriteSecretKeyFile(path string, sk ed25519.PrivateKey) error {
	if len(sk) != ed25519.PrivateKeySize {
		return fmt.Errorf("write key %s: secret key has %d bytes, want %d", path, len(sk), ed25519.PrivateKeySize)
	}
	return writePrivateFile(path, "key", EncodeSecretKey(sk))
}

// writePrivateFile writes data to a new file at path with mode 0600: to a
// temporary file in the same directory, synced, then linked to path, so a
// crash leaves either no file or the whole of it, and an existing file is
// never replaced (an error wrapping fs.ErrExist). what names the file in
// errors.
func writePrivateFile(path, what string, data []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("write %s %s: %w (refusing to overwrite a %s)", what, path, fs.ErrExist, what)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	// os.Link fails if path exists, so a file that appeared meanwhile is kept.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s %s: %w (refusing to overwrite a %s)", what, path, fs.ErrExist, what)
		}
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	syncDir(dir)
	return nil
}

// readPrivateFile reads at most maxKeyFileSize bytes of a file that only its
// owner may read or write. The mode is checked on the open file, so a file
// swapped in between the check and the read is still checked. what names
// the operation in errors ("key", "secret"), kind the contents.
func readPrivateFile(path, what, kind string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	if err := checkPrivateMode(path, kind, fi.Mode()); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("read %s %s: %w %s: file larger than %d bytes", what, path, ErrMalformed, kind, maxKeyFileSize)
	}
	return b, nil
}

// checkPrivateMode refuses a file mode that lets group or others read or
// write the file, as ssh refuses an unprotected private key. Windows has no
// such mode bits (os reports 0666 or 0444 for every file), so it is not
// checked there.
func checkPrivateMode(path, kind string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := mode.Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s: %w (mode %04o); run: chmod 600 %s",
			kind, path, ErrKeyPermissions, perm, shellQuote(path))
	}
	return nil
}

// shellQuote quotes p for a POSIX shell when it holds anything but plain
// path characters, so the chmod in an error can be pasted as it is.
func shellQuote(p string) string {
	plain := p != ""
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+,:@%=", c)) {
			plain = false
			break
		}
	}
	if plain {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}

// syncDir makes a new directory entry durable; failures are ignored because
// some systems cannot sync directories and the file itself is complete.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// ReadSecretKeyFile reads a key written by WriteSecretKeyFile. Like ssh
// with its keys, it refuses a file that group or others may read or write
// (ErrKeyPermissions, with the chmod to run).
func ReadSecretKeyFile(path string) (ed25519.PrivateKey, error) {
	b, err := readPrivateFile(path, "key", "secret key")
	if err != nil {
		return nil, err
	}
	sk, err := DecodeSecretKey(b)
	if err != nil {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	return sk, nil
}
