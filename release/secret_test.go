package release

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func testSecret(b byte) Secret {
	var s Secret
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

func testPrivate(t testing.TB, s Secret) *Private {
	t.Helper()
	p, err := NewPrivate(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecretTextAndFile(t *testing.T) {
	s, err := GenerateSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.String()) != SecretTextLen {
		t.Fatalf("text %q has %d characters", s, len(s.String()))
	}
	if got, err := ParseSecret(" " + s.String() + "\n"); err != nil || got != s {
		t.Fatalf("ParseSecret round trip: %v", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("l", SecretTextLen), s.String()[:51] + "9"} {
		if _, err := ParseSecret(bad); !errors.Is(err, ErrBadSecret) {
			t.Errorf("ParseSecret(%q) = %v, want ErrBadSecret", bad, err)
		}
	}
	path := filepath.Join(t.TempDir(), "swarm.secret")
	if err := WriteSecretFile(path, s); err != nil {
		t.Fatal(err)
	}
	if err := WriteSecretFile(path, testSecret(1)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v, want fs.ErrExist", err)
	}
	if got, err := ReadSecretFile(path); err != nil || got != s {
		t.Fatalf("ReadSecretFile: %v", err)
	}
	if runtime.GOOS != "windows" {
		for _, mode := range []fs.FileMode{0o644, 0o666} {
			os.Chmod(path, mode)
			_, err := ReadSecretFile(path)
			if !errors.Is(err, ErrKeyPermissions) || !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Errorf("mode %04o: %v, want ErrKeyPermissions with the chmod", mode, err)
			}
		}
	}
}

func TestSealedEntries(t *testing.T) {
	sk := testKey()
	priv := testPrivate(t, testSecret(1))
	secretApp := testEntry("secretapp", "linux-amd64", "4.5.6")
	secretApp.Expires = testTime.Add(time.Hour)
	public := testEntry("tool", "linux-amd64", "1.0.0")

	p, err := NewSignedPacket(sk, []Entry{public}, testSeq)
	if err != nil {
		t.Fatal(err)
	}
	if p, err = MergeSealedEntry(sk, p, secretApp, testSeq+1, priv, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(); err != nil {
		t.Fatal(err)
	}
	// What an outsider sees: a valid packet, the public entry, nothing of
	// the private one.
	for _, leak := range []string{"secretapp", "4.5.6", secretApp.ManifestID.String(), string(secretApp.ManifestID[:8])} {
		if bytes.Contains(p.Packet, []byte(leak)) {
			t.Errorf("packet shows %q", leak)
		}
	}
	if es, err := p.Entries(); err != nil || len(es) != 1 || es[0].App != "tool" {
		t.Fatalf("public entries %+v, %v; want tool only", es, err)
	}
	_, err = p.Lookup(secretApp.Target())
	if !errors.Is(err, ErrNoEntry) || !errors.Is(err, ErrNeedSecret) {
		t.Fatalf("Lookup without secret: %v, want ErrNoEntry and ErrNeedSecret", err)
	}
	// An insider opens it.
	got, err := p.LookupSealed(secretApp.Target(), priv)
	if err != nil || !entriesEqual([]Entry{got}, []Entry{secretApp}) || !got.Expires.Equal(secretApp.Expires) {
		t.Fatalf("LookupSealed: %+v, %v", got, err)
	}
	if _, err := p.LookupSealed(public.Target(), priv); !errors.Is(err, ErrNoEntry) {
		t.Fatalf("LookupSealed of the public target: %v, want ErrNoEntry", err)
	}
	// The wrong secret opens nothing, and says so.
	if _, err := p.LookupSealed(secretApp.Target(), testPrivate(t, testSecret(2))); !errors.Is(err, ErrWrongSecret) {
		t.Fatalf("wrong secret: %v, want ErrWrongSecret", err)
	}
	// A newer release for the same target replaces the sealed entry; a
	// public one for it lives beside it.
	v2 := testEntry("secretapp", "linux-amd64", "4.6.0")
	if p, err = MergeSealedEntry(sk, p, v2, testSeq+2, priv, nil); err != nil {
		t.Fatal(err)
	}
	if p, err = MergeEntry(sk, p, testEntry("secretapp", "linux-amd64", "1.0.0"), testSeq+3); err != nil {
		t.Fatal(err)
	}
	if n := p.sealedCount(); n != 1 {
		t.Fatalf("%d sealed records after replacing, want 1", n)
	}
	if got, err := p.LookupSealed(v2.Target(), priv); err != nil || got.Version.String() != "4.6.0" {
		t.Fatalf("after replacing: %v %v", got.Version, err)
	}
	if got, err := p.Lookup(v2.Target()); err != nil || got.Version.String() != "1.0.0" {
		t.Fatalf("public entry beside it: %v %v", got.Version, err)
	}
	// A flipped byte of ciphertext opens with no key.
	bad := bytes.Clone(p.Packet)
	i := bytes.Index(bad, []byte("x="))
	if bad[i+10] == 'A' { // another base64url letter, so only the ciphertext changes
		bad[i+10] = 'B'
	} else {
		bad[i+10] = 'A'
	}
	q := &SignedPacket{PublicKey: p.PublicKey, Packet: bad}
	if _, err := q.SealedEntries(priv); !errors.Is(err, ErrWrongSecret) {
		t.Fatalf("tampered sealed entry: %v, want ErrWrongSecret", err)
	}
	// A sealed value is bound to the key that signs its packet: moved into
	// another key's packet, it opens no more.
	otherPub := PublicKeyOf(otherKey())
	moved := &SignedPacket{PublicKey: otherPub, Packet: bytes.ReplaceAll(p.Packet, []byte(p.PublicKey.String()), []byte(otherPub.String()))}
	if _, err := moved.SealedEntries(priv); !errors.Is(err, ErrWrongSecret) {
		t.Fatalf("sealed entry moved to another key's packet: %v, want ErrWrongSecret", err)
	}
	// The same secret under a rotated key is the same swarm.
	rq, err := MergeSealedEntry(otherKey(), nil, v2, 1, priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rq.LookupSealed(v2.Target(), priv); err != nil || got.Version.String() != "4.6.0" {
		t.Fatalf("sealed entry under another key: %v %v", got.Version, err)
	}
}

func TestPrivateSwarmID(t *testing.T) {
	var id ManifestID
	id[0] = 7
	a, b := testPrivate(t, testSecret(1)), testPrivate(t, testSecret(2))
	ids := map[SwarmID]string{SwarmIDOf(id): "public"}
	for name, p := range map[string]*Private{"a": a, "b": b} {
		s := p.SwarmID(id)
		if prev, ok := ids[s]; ok {
			t.Errorf("swarm ID of %s equals %s's", name, prev)
		}
		ids[s] = name
	}
	if a.SwarmID(id) != testPrivate(t, testSecret(1)).SwarmID(id) {
		t.Error("swarm ID is not deterministic")
	}
	if bytes.Equal(a.ProofKey(), b.ProofKey()) {
		t.Error("two secrets give one proof key")
	}
}

func TestSealedPacketFits(t *testing.T) {
	// Three private entries with long names fit in one packet.
	priv := testPrivate(t, testSecret(1))
	var p *SignedPacket
	var err error
	for i, app := range []string{strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)} {
		e := testEntry(app, "linux-amd64", "10.20.30-rc.1")
		e.Expires = testTime
		if p, err = MergeSealedEntry(testKey(), p, e, testSeq+int64(i), priv, nil); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if es, err := p.SealedEntries(priv); err != nil || len(es) != 3 {
		t.Fatalf("%d entries, %v", len(es), err)
	}
}
