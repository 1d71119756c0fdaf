package release

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestRotationStatement(t *testing.T) {
	k0, k1, k2 := testKey(), otherKey(), thirdKey()
	r1, err := SignRotation(k0, k1, testTime)
	if err != nil {
		t.Fatal(err)
	}
	raw := r1.Encode()
	if len(raw) != RotationSize {
		t.Fatalf("%d bytes, want %d", len(raw), RotationSize)
	}
	got, err := ParseRotation(raw)
	if err != nil || got.Old != PublicKeyOf(k0) || got.New != PublicKeyOf(k1) || !got.Time.Equal(testTime) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	golden(t, "rotation.rper", raw)
	// Every byte is covered: a flip anywhere is refused.
	for i := range raw {
		b := bytes.Clone(raw)
		b[i] ^= 0x40
		if _, err := ParseRotation(b); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := ParseRotation(raw[:100]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short: %v", err)
	}
	if _, err := SignRotation(k0, k0, testTime); !errors.Is(err, ErrRotation) {
		t.Fatalf("to itself: %v", err)
	}

	// The rules a node follows.
	r2, _ := SignRotation(k1, k2, testTime.Add(time.Hour))
	pub0, pub1, pub2 := PublicKeyOf(k0), PublicKeyOf(k1), PublicKeyOf(k2)
	if k, err := TrustedKey(pub0, []*Rotation{r1, r2}); err != nil || k != pub2 {
		t.Fatalf("chain: %s, %v; want %s", k, err, pub2)
	}
	back, _ := SignRotation(k2, k0, testTime.Add(2*time.Hour))             // back to a retired key
	stale, _ := SignRotation(k2, otherKeyN(4), testTime)                   // older than the last
	stolen, _ := SignRotation(k0, otherKeyN(5), testTime.Add(3*time.Hour)) // a retired key's statement
	for name, tc := range map[string]struct {
		trusted PublicKey
		done    []*Rotation
		r       *Rotation
	}{
		"replayed": {pub1, []*Rotation{r1}, r1},
		"back":     {pub2, []*Rotation{r1, r2}, back},
		"older":    {pub2, []*Rotation{r1, r2}, stale},
		"stolen":   {pub2, []*Rotation{r1, r2}, stolen},
	} {
		if err := FollowRotation(tc.trusted, tc.done, tc.r); !errors.Is(err, ErrRotation) {
			t.Errorf("%s: %v, want ErrRotation", name, err)
		}
	}
	if err := FollowRotation(pub1, []*Rotation{r1}, r2); err != nil {
		t.Errorf("next in line: %v", err)
	}
	if _, err := TrustedKey(pub0, []*Rotation{r2}); !errors.Is(err, ErrRotation) {
		t.Errorf("chain not from the configured key: %v", err)
	}

	chain, err := DecodeRotations(EncodeRotations([]*Rotation{r1, r2}))
	if err != nil || len(chain) != 2 || chain[1].New != pub2 {
		t.Fatalf("decode rotations: %v", err)
	}
	if _, err := DecodeRotations(raw[:RotationSize-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("cut rotations: %v", err)
	}
}

func TestRotationInRecord(t *testing.T) {
	k0, k1 := testKey(), otherKey()
	r, _ := SignRotation(k0, k1, testTime)
	p, _ := NewSignedPacket(k0, []Entry{testEntry("myapp", "linux-amd64", "1.0.0")}, testSeq)
	if got, err := p.Rotation(); got != nil || err != nil {
		t.Fatalf("packet without statement: %v, %v", got, err)
	}
	q, err := MergeRotation(k0, p, r, testSeq+1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := q.Rotation()
	if err != nil || got == nil || got.New != PublicKeyOf(k1) {
		t.Fatalf("Rotation: %v, %v", got, err)
	}
	// The entries stay, for nodes that know nothing of rotations.
	if _, err := q.Lookup(Target{"myapp", "stable", "linux-amd64"}); err != nil {
		t.Fatalf("entry lost: %v", err)
	}
	// Only the rotated key may carry its statement.
	if _, err := MergeRotation(k1, nil, r, testSeq); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("statement in the new key's packet: %v", err)
	}
	if _, err := MergeRotation(k0, q, r, testSeq); !errors.Is(err, ErrStaleSeq) {
		t.Fatalf("older seq: %v", err)
	}
}
