package state

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/rpe-project/engine/release"
)

func mustVersion(t testing.TB, s string) *semver.Version {
	t.Helper()
	v, err := release.ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func noTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

func TestHighestEmpty(t *testing.T) {
	v, err := Highest(t.TempDir())
	if v != nil || err != nil {
		t.Fatalf("Highest of an empty dir = %v, %v; want nil, nil", v, err)
	}
}

func TestRaiseHighestOnlyUpward(t *testing.T) {
	dir := t.TempDir()
	steps := []struct{ raise, want string }{
		{"1.0.0", "1.0.0"},
		{"0.9.0", "1.0.0"}, // lower: kept
		{"1.0.0", "1.0.0"}, // equal: kept
		{"1.0.1-rc.1", "1.0.1-rc.1"},
		{"1.0.1", "1.0.1"},         // release above its pre-release
		{"1.0.1-rc.2", "1.0.1"},    // pre-release below its release
		{"1.0.1+build.7", "1.0.1"}, // build metadata does not order
		{"v2.0.0", "2.0.0"},
		{"10.0.0", "10.0.0"}, // numeric, not lexical
		{"9.99.99", "10.0.0"},
	}
	for _, s := range steps {
		if err := RaiseHighest(dir, mustVersion(t, s.raise)); err != nil {
			t.Fatalf("RaiseHighest(%s): %v", s.raise, err)
		}
		got, err := Highest(dir)
		if err != nil {
			t.Fatalf("Highest after %s: %v", s.raise, err)
		}
		if got.String() != s.want {
			t.Fatalf("after RaiseHighest(%s): Highest = %s, want %s", s.raise, got, s.want)
		}
	}
	noTemp(t, dir)
}

func TestHighestMalformed(t *testing.T) {
	for _, content := range []string{"", "\n", "1.2", "banana", "1.2.3 4.5.6", "\x00\x01", "01.2.3"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, highestFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := Highest(dir)
		if err == nil {
			t.Errorf("Highest(%q) = %v, want an error", content, v)
			continue
		}
		if !errors.Is(err, release.ErrNotSemver) {
			t.Errorf("Highest(%q): %v does not match release.ErrNotSemver", content, err)
		}
	}
	// Surrounding white space is fine.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, highestFile), []byte("  1.2.3\r\n"), 0o644)
	if v, err := Highest(dir); err != nil || v.String() != "1.2.3" {
		t.Fatalf("Highest with white space = %v, %v", v, err)
	}
}

func TestHighestUnreadable(t *testing.T) {
	dir := t.TempDir()
	// A directory where the file should be: an error, not "no floor".
	if err := os.Mkdir(filepath.Join(dir, highestFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if v, err := Highest(dir); err == nil {
		t.Fatalf("Highest = %v, nil; want an error", v)
	}
}

// TestRaiseHighestMalformedFloor checks that a damaged floor file is not
// silently replaced by a version that may be lower than the lost floor.
func TestRaiseHighestMalformedFloor(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, highestFile), []byte("garbage"), 0o644)
	if err := RaiseHighest(dir, mustVersion(t, "0.0.1")); err == nil {
		t.Fatal("RaiseHighest over a malformed floor succeeded")
	}
}

func TestRaiseHighestNoDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	if err := RaiseHighest(dir, mustVersion(t, "1.0.0")); err == nil {
		t.Fatal("RaiseHighest into a missing directory succeeded")
	}
}

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed ^ byte(i)
	}
	return ed25519.NewKeyFromSeed(s)
}

func testPacket(t testing.TB, version string, seq int64) *release.SignedPacket {
	t.Helper()
	p, err := release.NewSignedPacket(testKey(3), []release.Entry{{
		App: "app", Channel: "stable", Platform: "linux-amd64",
		Version: mustVersion(t, version), ManifestID: release.ManifestID{1, 2, 3}, Size: 12345,
	}}, seq)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if p, err := Record(dir); p != nil || err != nil {
		t.Fatalf("Record of an empty dir = %v, %v; want nil, nil", p, err)
	}
	seq := release.SeqNow(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC))
	for i, v := range []string{"1.0.0", "1.1.0"} {
		p := testPacket(t, v, seq+int64(i))
		if err := SaveRecord(dir, p); err != nil {
			t.Fatal(err)
		}
		got, err := Record(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got.PublicKey != p.PublicKey || got.Seq != p.Seq || got.Sig != p.Sig || !bytes.Equal(got.Packet, p.Packet) {
			t.Fatalf("round trip %d: packet differs", i)
		}
		e, err := got.Lookup(release.Target{App: "app", Channel: "stable", Platform: "linux-amd64"})
		if err != nil || e.Version.String() != v {
			t.Fatalf("round trip %d: entry %v, %v", i, e, err)
		}
	}
	noTemp(t, dir)
}

func TestRecordDamaged(t *testing.T) {
	p := testPacket(t, "1.0.0", release.SeqNow(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)))
	good := p.EncodeRelay()
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x10
		return b
	}
	cases := map[string][]byte{
		"empty":           {},
		"header only":     good[:release.RelayHeaderSize],
		"truncated":       good[:len(good)-1],
		"key flipped":     flip(0),
		"signature flip":  flip(release.PublicKeySize + 1),
		"seq flipped":     flip(release.PublicKeySize + ed25519.SignatureSize + 7),
		"packet flipped":  flip(len(good) - 1),
		"trailing byte":   append(append([]byte(nil), good...), 0),
		"text":            []byte("not a record at all"),
		"oversize packet": append(append([]byte(nil), good...), make([]byte, release.MaxPacketSize)...),
	}
	for name, b := range cases {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, recordFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := Record(dir); err == nil {
			t.Errorf("%s: Record = %v, want an error", name, got)
		}
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, b := range [][]byte{[]byte("first"), []byte("second, longer"), {}} {
		if err := WriteAtomic(path, b); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("after WriteAtomic(%q): %q, %v", b, got, err)
		}
		noTemp(t, dir)
	}
	// A target that cannot be replaced (a directory) fails and leaves no
	// temporary file behind.
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(filepath.Join(dir, "d"), []byte("x")); err == nil {
		t.Fatal("WriteAtomic over a non-empty directory succeeded")
	}
	noTemp(t, dir)
	if err := WriteAtomic(filepath.Join(dir, "missing", "f"), []byte("x")); err == nil {
		t.Fatal("WriteAtomic into a missing directory succeeded")
	}
}

func FuzzHighest(f *testing.F) {
	for _, s := range []string{"1.2.3\n", "v1.0.0", "1.0.0-rc.1+b", "", "1.2", "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, highestFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := Highest(dir)
		if err != nil {
			return
		}
		// What was accepted survives a raise to itself and reads back equal.
		if err := RaiseHighest(dir, v); err != nil {
			t.Fatal(err)
		}
		v2, err := Highest(dir)
		if err != nil || !v2.Equal(v) {
			t.Fatalf("Highest %v, after RaiseHighest to itself %v, %v", v, v2, err)
		}
	})
}

func FuzzRecord(f *testing.F) {
	p := testPacket(f, "1.0.0", release.SeqNow(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)))
	f.Add(p.EncodeRelay())
	f.Add([]byte{})
	f.Add(p.EncodeRelay()[:release.RelayHeaderSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, recordFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Record(dir)
		if err != nil {
			return
		}
		// Only a correctly signed record is returned, and it re-encodes to
		// exactly the bytes on disk.
		if err := got.Verify(); err != nil {
			t.Fatalf("Record returned a packet that does not verify: %v", err)
		}
		if !bytes.Equal(got.EncodeRelay(), b) {
			t.Fatal("Record's packet does not re-encode to the file's bytes")
		}
	})
}
