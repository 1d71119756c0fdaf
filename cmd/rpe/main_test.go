package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// rpe runs one command line through run and returns the exit code and
// outputs. Every failure must print exactly one line starting "rpe: ".
func rpe(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	if code != 0 {
		if !strings.HasPrefix(stderr.String(), "rpe: ") || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("rpe %q: exit %d with stderr %q, want one line \"rpe: ...\"", args, code, stderr.String())
		}
	}
	return code, stdout.String(), stderr.String()
}

// artifact writes n deterministic random bytes.
func artifact(t *testing.T, dir, name string, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{7}).Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newKey runs rpe init and returns the key file and public key.
func newKey(t *testing.T, dir string) (string, string) {
	t.Helper()
	key := filepath.Join(dir, "publisher.key")
	code, out, errOut := rpe(t, "init", "--out", key)
	if code != 0 {
		t.Fatalf("init: %d %s", code, errOut)
	}
	m := regexp.MustCompile(`public key: ([a-z0-9]{52})\n`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, `PublisherKey: "`+m[1]+`",`) {
		t.Fatalf("init printed %q", out)
	}
	return key, m[1]
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestInitAndKeys(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKey(t, dir)
	fi, err := os.Stat(key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	before, _ := os.ReadFile(key)
	code, _, errOut := rpe(t, "init", "--out", key)
	if code != exitError || !strings.Contains(errOut, "exists") {
		t.Fatalf("second init: %d %q", code, errOut)
	}
	after, _ := os.ReadFile(key)
	if !bytes.Equal(before, after) {
		t.Fatal("second init changed the key")
	}
	code, out, _ := rpe(t, "keys", "show", "--key", key)
	if code != 0 || out != pub+"\n" {
		t.Fatalf("keys show: %d %q", code, out)
	}
	// Flags before the subcommand work too.
	if code, out, _ := rpe(t, "keys", "--key", key, "show"); code != 0 || out != pub+"\n" {
		t.Fatalf("keys --key show: %d %q", code, out)
	}
	if !slices.Equal(dirNames(t, dir), []string{"publisher.key"}) {
		t.Fatalf("files left: %v", dirNames(t, dir))
	}
}

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKey(t, dir)
	art := artifact(t, dir, "MyApp.bin", 3_000_000)
	code, out, errOut := rpe(t, "sign", art, "--key", key, "--version", "1.2.3")
	if code != 0 || !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("sign: %d %q %q", code, out, errOut)
	}
	raw, err := os.ReadFile(art + ".rpem")
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := release.ParsePublicKey(pub)
	sm, err := release.ParseManifest(raw, pk, release.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if sm.ID.String()+"\n" != out || sm.Manifest.App != "myapp" || sm.Manifest.Channel != "stable" ||
		sm.Manifest.Platform != release.DefaultPlatform() || sm.Manifest.NumChunks() != 12 {
		t.Fatalf("manifest %+v", sm.Manifest)
	}
	if d := sm.Manifest.Expires.Sub(sm.Manifest.Created); d != 90*24*time.Hour {
		t.Fatalf("default lifetime %v", d)
	}

	code, out, _ = rpe(t, "verify", art, "--pubkey", pub)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "ok: myapp 1.2.3") {
		t.Fatalf("verify: %d %q", code, out)
	}
	// Flags first, manifest elsewhere, target flags.
	moved := filepath.Join(dir, "elsewhere.rpem")
	os.Rename(art+".rpem", moved)
	if code, _, errOut := rpe(t, "verify", "--manifest", moved, "--pubkey", pub, "--app", "myapp", "--channel", "stable", art); code != 0 {
		t.Fatalf("verify --manifest: %d %q", code, errOut)
	}
	if code, _, errOut := rpe(t, "verify", art, "--manifest", moved, "--pubkey", pub, "--channel", "beta"); code != exitRejected || !strings.Contains(errOut, "wrong target") {
		t.Fatalf("verify other channel: %d %q", code, errOut)
	}
	os.Rename(moved, art+".rpem")

	// Flipping any one byte names its chunk.
	good, _ := os.ReadFile(art)
	for _, off := range []int{0, 262143, 262144, 1_500_000, 2_999_999} {
		b := bytes.Clone(good)
		b[off] ^= 0x01
		os.WriteFile(art, b, 0o644)
		code, _, errOut := rpe(t, "verify", art, "--pubkey", pub)
		want := "tampered chunk " + itoa(off/(256<<10)) + " of 12"
		if code != exitRejected || !strings.Contains(errOut, want) {
			t.Errorf("flip at %d: %d %q, want %q", off, code, errOut, want)
		}
	}
	os.WriteFile(art, good[:2_000_000], 0o644)
	if code, _, errOut := rpe(t, "verify", art, "--pubkey", pub); code != exitRejected || !strings.Contains(errOut, "truncated") {
		t.Errorf("truncated: %d %q", code, errOut)
	}
	os.WriteFile(art, append(bytes.Clone(good), 0), 0o644)
	if code, _, errOut := rpe(t, "verify", art, "--pubkey", pub); code != exitRejected || !strings.Contains(errOut, "longer") {
		t.Errorf("too long: %d %q", code, errOut)
	}
	os.WriteFile(art, good, 0o644)

	// Another publisher's key.
	other := release.PublicKeyOf(ed25519.NewKeyFromSeed(make([]byte, 32))).String()
	if code, _, errOut := rpe(t, "verify", art, "--pubkey", other); code != exitRejected || !strings.Contains(errOut, "wrong key") {
		t.Errorf("wrong key: %d %q", code, errOut)
	}
	// An altered manifest.
	bad := bytes.Clone(raw)
	bad[60] ^= 1
	os.WriteFile(art+".rpem", bad, 0o644)
	if code, _, errOut := rpe(t, "verify", art, "--pubkey", pub); code != exitRejected || !strings.Contains(errOut, "bad signature") {
		t.Errorf("altered manifest: %d %q", code, errOut)
	}
	os.WriteFile(art+".rpem", append(bytes.Clone(raw), 0), 0o644)
	if code, _, errOut := rpe(t, "verify", art, "--pubkey", pub); code != exitRejected || !strings.Contains(errOut, "malformed") {
		t.Errorf("trailing byte: %d %q", code, errOut)
	}

	// An expired manifest, signed through the package with past times.
	sk, _ := release.ReadSecretKeyFile(key)
	past := time.Now().Add(-48 * time.Hour)
	m, err := release.BuildManifest(bytes.NewReader(good), release.BuildOptions{App: "myapp", Version: "1.2.3", Created: past, Expires: past.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := release.SignManifest(m, sk)
	os.WriteFile(art+".rpem", old.Raw, 0o644)
	if code, _, errOut := rpe(t, "verify", art, "--pubkey", pub); code != exitRejected || !strings.Contains(errOut, "expired") {
		t.Errorf("expired: %d %q", code, errOut)
	}
}

func TestSignOptions(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKey(t, dir)
	art := artifact(t, dir, "tool", 100_000)
	code, _, errOut := rpe(t, "sign", "--app=tool2", art, "--key", key, "--version", "v2.0.0-rc.1",
		"--channel", "beta", "--platform", "plan9-arm", "--chunk-size", "16KiB", "--expires", "1w", "--out", filepath.Join(dir, "m"))
	if code != 0 {
		t.Fatalf("sign: %s", errOut)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "m"))
	pk, _ := release.ParsePublicKey(pub)
	sm, err := release.ParseManifest(raw, pk, release.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	m := sm.Manifest
	if m.App != "tool2" || m.Channel != "beta" || m.Platform != "plan9-arm" || m.Version.String() != "2.0.0-rc.1" ||
		m.ChunkSize != 16<<10 || m.Expires.Sub(m.Created) != 7*24*time.Hour {
		t.Fatalf("manifest %+v", m)
	}
	// "--" ends the flags.
	if code, _, errOut := rpe(t, "sign", "--key", key, "--version", "1.0.0", "--", art); code != 0 {
		t.Fatalf("sign -- ARTIFACT: %s", errOut)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKey(t, dir)
	art := artifact(t, dir, "app.bin", 50_000)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	junkKey := filepath.Join(dir, "junk.key")
	os.WriteFile(junkKey, []byte("not a key\n"), 0o600)
	before := dirNames(t, dir)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, exitUsage, ""},
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
		{[]string{"init"}, exitUsage, "missing --out"},
		{[]string{"init", "--out"}, exitUsage, "flag needs an argument"},
		{[]string{"init", "--out", filepath.Join(dir, "no", "such", "dir")}, exitError, "no such file"},
		{[]string{"init", "extra", "--out", filepath.Join(dir, "k2")}, exitUsage, "unexpected argument"},
		{[]string{"keys", "--key", key}, exitUsage, "missing subcommand"},
		{[]string{"keys", "list", "--key", key}, exitUsage, "unknown subcommand"},
		{[]string{"keys", "show"}, exitUsage, "missing --key"},
		{[]string{"keys", "show", "--key", filepath.Join(dir, "missing.key")}, exitError, "no such file"},
		{[]string{"keys", "show", "--key", junkKey}, exitError, "malformed"},
		{[]string{"sign", art, "--key", key}, exitUsage, "missing --version"},
		{[]string{"sign", "--key", key, "--version", "1.0.0"}, exitUsage, "missing ARTIFACT"},
		{[]string{"sign", art, "--key", key, "--version", "notsemver"}, exitUsage, `"notsemver"`},
		{[]string{"sign", art, "--key", key, "--version", "1.2"}, exitUsage, "not a semantic version"},
		{[]string{"sign", art, "--key", key, "--version", "1.0.0", "--chunk-size", "1KiB"}, exitUsage, "16KiB"},
		{[]string{"sign", art, "--key", key, "--version", "1.0.0", "--chunk-size", "lots"}, exitUsage, "chunk-size"},
		{[]string{"sign", art, "--key", key, "--version", "1.0.0", "--expires", "-5h"}, exitUsage, "expires"},
		{[]string{"sign", art, "--key", key, "--version", "1.0.0", "--expires", "0s"}, exitUsage, "positive"},
		{[]string{"sign", art, "--key", key, "--version", "1.0.0", "--platform", "Linux/AMD64"}, exitError, "platform"},
		{[]string{"sign", art, "--key", key, "--version", "1.0.0", "--app", "-x"}, exitError, "app"},
		{[]string{"sign", art, "--key", junkKey, "--version", "1.0.0"}, exitError, "malformed"},
		{[]string{"sign", filepath.Join(dir, "missing"), "--key", key, "--version", "1.0.0"}, exitError, "no such file"},
		{[]string{"sign", empty, "--key", key, "--version", "1.0.0"}, exitError, "empty"},
		{[]string{"sign", dir, "--key", key, "--version", "1.0.0", "--app", "x"}, exitError, "regular file"},
		{[]string{"sign", art, "--key", key, "--version", "1.0.0", "--bogus"}, exitUsage, "bogus"},
		{[]string{"sign", art, art, "--key", key, "--version", "1.0.0"}, exitUsage, "unexpected argument"},
		{[]string{"verify", art}, exitUsage, "missing --pubkey"},
		{[]string{"verify", art, "--pubkey", "abc"}, exitUsage, "52"},
		{[]string{"verify", art, "--pubkey", pub}, exitError, "no such file"},
		{[]string{"verify", art, "--pubkey", pub, "--manifest", art}, exitRejected, "malformed"},
		{[]string{"help", "nope"}, exitUsage, "unknown command"},
	} {
		code, _, errOut := rpe(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("rpe %q: exit %d %q, want %d with %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
	if after := dirNames(t, dir); !slices.Equal(before, after) {
		t.Fatalf("bad input left files: before %v, after %v", before, after)
	}
	// A name that is not an app name asks for --app.
	odd := artifact(t, dir, "My App.bin", 1000)
	if code, _, errOut := rpe(t, "sign", odd, "--key", key, "--version", "1.0.0"); code != exitUsage || !strings.Contains(errOut, "--app") {
		t.Errorf("odd name: %d %q", code, errOut)
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := rpe(t, "help")
	for _, want := range []string{"init", "keys", "sign", "verify", "exit codes", "3  verification failed"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("help lacks %q: %s", want, out)
		}
	}
	code, out, _ = rpe(t, "sign", "--help")
	if code != 0 || !strings.Contains(out, "usage: rpe sign ARTIFACT") || !strings.Contains(out, "-chunk-size") {
		t.Errorf("sign --help: %d %q", code, out)
	}
	code, out, _ = rpe(t, "help", "verify")
	if code != 0 || !strings.Contains(out, "-pubkey") {
		t.Errorf("help verify: %d %q", code, out)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
