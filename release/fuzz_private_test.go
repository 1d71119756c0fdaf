package release

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Fuzz targets of the private-swarm and rotation encodings; their seed
// corpora are in testdata/fuzz and are rewritten by
// `go test -run TestWritePrivateFuzzCorpus -update`.

func FuzzParseRotation(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRotation(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("error matches no sentinel: %v", err)
			}
		} else if !bytes.Equal(r.Encode(), b) {
			t.Fatal("accepted statement does not re-encode")
		}
		chain, err := DecodeRotations(b)
		if err == nil && !bytes.Equal(EncodeRotations(chain), b) {
			t.Fatal("rotations do not round-trip")
		}
	})
}

func FuzzSealedEntries(f *testing.F) {
	priv := testPrivate(f, testSecret(1))
	pub := PublicKeyOf(testKey())
	f.Fuzz(func(t *testing.T, packet []byte) {
		p := &SignedPacket{PublicKey: pub, Packet: packet}
		p.Rotation() // must not panic
		entries, err := p.SealedEntries(priv)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrWrongSecret) && !errors.Is(err, ErrPacketTooLarge) {
				t.Fatalf("error matches no sentinel: %v", err)
			}
			return
		}
		var q *SignedPacket
		for i, e := range entries {
			if q, err = MergeSealedEntry(testKey(), q, e, int64(i+1), priv, nil); err != nil {
				if errors.Is(err, ErrPacketTooLarge) {
					return
				}
				t.Fatalf("opened entry does not seal again: %v", err)
			}
		}
		if q == nil {
			return
		}
		again, err := q.SealedEntries(priv)
		if err != nil || !entriesEqual(again, entries) {
			t.Fatalf("sealed entries do not round-trip: %v", err)
		}
	})
}

func FuzzParseSecret(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		sec, err := ParseSecret(s)
		if err != nil {
			if !errors.Is(err, ErrBadSecret) {
				t.Fatalf("error matches no sentinel: %v", err)
			}
			return
		}
		if again, err := ParseSecret(sec.String()); err != nil || again != sec {
			t.Fatalf("secret does not round-trip: %v", err)
		}
	})
}

// TestWritePrivateFuzzCorpus writes the seed corpora of the targets above
// with -update.
func TestWritePrivateFuzzCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	priv := testPrivate(t, testSecret(1))
	r1, _ := SignRotation(testKey(), otherKey(), testTime)
	r2, _ := SignRotation(otherKey(), thirdKey(), testTime.Add(time.Hour))
	p, _ := NewSignedPacket(testKey(), []Entry{testEntry("tool", "linux-amd64", "1.0.0")}, testSeq)
	e := testEntry("myapp", "linux-amd64", "1.2.3")
	e.Expires = testTime
	sealed, err := MergeSealedEntry(testKey(), p, e, testSeq+1, priv, bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := MergeRotation(testKey(), sealed, r1, testSeq+2)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := MergeSealedEntry(testKey(), nil, e, 1, testPrivate(t, testSecret(9)), bytes.NewReader(make([]byte, 64)))
	bytesSeeds := map[string][][]byte{
		"FuzzParseRotation": {r1.Encode(), EncodeRotations([]*Rotation{r1, r2}), r1.Encode()[:77], {}},
		"FuzzSealedEntries": {sealed.Packet, rotated.Packet, other.Packet, p.Packet, {}},
	}
	for target, list := range bytesSeeds {
		for i, b := range list {
			writeSeed(t, target, i, fmt.Sprintf("[]byte(%q)", b))
		}
	}
	for i, s := range []string{testSecret(1).String(), " " + testSecret(2).String() + "\n", "short", ""} {
		writeSeed(t, "FuzzParseSecret", i, fmt.Sprintf("string(%q)", s))
	}
}

func writeSeed(t *testing.T, target string, i int, value string) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	content := "go test fuzz v1\n" + value + "\n"
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
