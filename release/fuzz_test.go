package release

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The seed corpora live in testdata/fuzz/<Target>; `go test -update` writes
// them from the golden encodings, and plain `go test` runs them.

func FuzzParseManifest(f *testing.F) {
	pub := PublicKeyOf(testKey())
	f.Fuzz(func(t *testing.T, raw []byte) {
		sm, err := ParseManifest(raw, pub, Limits{})
		if err == nil {
			// A valid manifest re-signs to the same bytes (ed25519 is
			// deterministic) and its fields keep their rules.
			again, err := SignManifest(sm.Manifest, testKey())
			if err != nil || !bytes.Equal(again.Raw, raw) {
				t.Fatalf("accepted manifest does not re-encode: %v", err)
			}
		} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("error matches no sentinel: %v", err)
		}
		// The layout decoder alone (no signature) must round-trip too.
		m, signer, bodyLen, err := decodeManifest(raw)
		if err != nil {
			return
		}
		if m.validate(Limits{}) != nil {
			return
		}
		if body := encodeManifestBody(m, signer); !bytes.Equal(body, raw[:bodyLen]) {
			t.Fatalf("body does not re-encode:\n%x\n%x", body, raw[:bodyLen])
		}
	})
}

func FuzzDecodeRelay(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeRelay(b)
		if err != nil {
			return
		}
		if !bytes.Equal(p.EncodeRelay(), b) {
			t.Fatal("relay form does not round-trip")
		}
		p.Entries() // must not panic
	})
}

func FuzzEntries(f *testing.F) {
	pub := PublicKeyOf(testKey())
	f.Fuzz(func(t *testing.T, packet []byte) {
		p := &SignedPacket{PublicKey: pub, Packet: packet}
		entries, err := p.Entries()
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrPacketTooLarge) {
				t.Fatalf("error matches no sentinel: %v", err)
			}
			return
		}
		q, err := NewSignedPacket(testKey(), entries, 1)
		if errors.Is(err, ErrPacketTooLarge) {
			return // fewer compressed names in the input than we write
		}
		if err != nil {
			t.Fatalf("entries do not re-encode: %v", err)
		}
		again, err := q.Entries()
		if err != nil || !entriesEqual(again, entries) {
			t.Fatalf("entries do not round-trip: %v", err)
		}
	})
}

// TestWriteFuzzCorpus writes the seed corpora with -update.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	sm, _ := testManifest(t)
	p, err := NewSignedPacket(testKey(), []Entry{
		testEntry("myapp", "linux-amd64", "1.2.3"),
		testEntry("myapp", "darwin-arm64", "1.2.3-rc.1+b2"),
	}, testSeq)
	if err != nil {
		t.Fatal(err)
	}
	foreign := packetWithOthers(t, 7)
	empty := &SignedPacket{PublicKey: PublicKeyOf(testKey()), Seq: 1}
	copy(empty.Sig[:], ed25519.Sign(testKey(), SignableBytes(1, nil)))

	// A small valid manifest with a 1-byte file.
	m := &Manifest{App: "a", Channel: "b", Platform: "c", Size: 1, ChunkSize: MinChunkSize, Chunks: make([][32]byte, 1), Created: testTime, Expires: testTime.Add(1)}
	m.Version, _ = ParseVersion("0.0.1")
	m.Expires = testTime.Add(1e9)
	small, err := SignManifest(m, testKey())
	if err != nil {
		t.Fatal(err)
	}
	seeds := map[string][][]byte{
		"FuzzParseManifest": {sm.Raw, small.Raw, sm.Raw[:100], append(bytes.Clone(sm.Raw), 1), {}},
		"FuzzDecodeRelay":   {p.EncodeRelay(), foreign.EncodeRelay(), empty.EncodeRelay(), p.EncodeRelay()[:104]},
		"FuzzEntries":       {p.Packet, foreign.Packet, {}, p.Packet[:40]},
	}
	for target, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range list {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
