package release

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
)

// TestRollout: of 1000 node keys, a 10 % rollout takes about 100; raising
// it to 50 % takes about 500 and keeps every node of the first set; 100 %
// and no rollout take all.
func TestRollout(t *testing.T) {
	id := ManifestID(sha256.Sum256([]byte("release 2.0.0")))
	keys := make([]ed25519.PublicKey, 1000)
	for i := range keys {
		seed := sha256.Sum256([]byte{byte(i), byte(i >> 8), 'k'})
		keys[i] = ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)
	}
	in := func(pct int) map[int]bool {
		e := Entry{ManifestID: id, Rollout: pct}
		got := map[int]bool{}
		for i, k := range keys {
			if e.Includes(k) {
				got[i] = true
			}
		}
		return got
	}
	ten, fifty := in(10), in(50)
	// Binomial(1000, 0.1): sd 9.5, so 70..130 is beyond 3 sd.
	if n := len(ten); n < 70 || n > 130 {
		t.Errorf("10 %% took %d of 1000 nodes, want about 100", n)
	}
	if n := len(fifty); n < 430 || n > 570 {
		t.Errorf("50 %% took %d of 1000 nodes, want about 500", n)
	}
	for i := range ten {
		if !fifty[i] {
			t.Errorf("node %d was in at 10 %% and dropped at 50 %%", i)
		}
	}
	if len(in(100)) != 1000 || len(in(0)) != 1000 {
		t.Error("100 % or no rollout left nodes out")
	}
	// Another release picks other nodes first.
	other := Entry{ManifestID: ManifestID(sha256.Sum256([]byte("release 2.0.1"))), Rollout: 10}
	same := 0
	for i, k := range keys {
		if other.Includes(k) && ten[i] {
			same++
		}
	}
	if same == len(ten) {
		t.Error("the same nodes go first for every release")
	}
	t.Logf("10 %%: %d nodes, 50 %%: %d, both releases at 10 %%: %d", len(ten), len(fifty), same)
}

// TestRolloutInTXT: the percentage travels as "ro=" in the entry's TXT
// value and reads back; out-of-range values are refused.
func TestRolloutInTXT(t *testing.T) {
	v, _ := ParseVersion("2.0.0")
	e := Entry{App: "app", Channel: "stable", Platform: "linux-amd64", Version: v, Size: 10, Rollout: 10}
	txt := e.txt()
	got, err := parseEntry("linux-amd64.stable.app", []string{txt})
	if err != nil || got.Rollout != 10 {
		t.Fatalf("parse %q: rollout %d, %v", txt, got.Rollout, err)
	}
	for _, bad := range []string{"0", "100", "-5", "10.5", "010"} {
		if _, err := parseEntry("linux-amd64.stable.app", []string{txt[:len(txt)-2] + bad}); err == nil {
			t.Errorf("ro=%s accepted", bad)
		}
	}
}
