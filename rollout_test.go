package engine

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// TestRolloutSkipsNodeOutside: a release published to 50 % of nodes is
// installed by a node whose bucket is in and skipped (NotRolledOut) by one
// whose bucket is out; publishing the same manifest at 100 % brings the
// second node in.
func TestRolloutSkipsNodeOutside(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	pub := release.PublicKeyOf(key)
	artifact, want := testArtifact(t, 200_000)
	p := testPublish(t, key, boot, artifact, "1.1.0", func(pc *PublishConfig) { pc.Rollout = 50 })
	entry := release.Entry{ManifestID: p.Manifest.ID, Rollout: 50}

	// Draw node keys until one falls inside the 50 % and one outside.
	var in, out ed25519.PrivateKey
	for in == nil || out == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if entry.Includes(k.Public().(ed25519.PublicKey)) {
			in = k
		} else {
			out = k
		}
	}
	cfgIn, cfgOut := testConfig(t, pub, boot, "1.0.0"), testConfig(t, pub, boot, "1.0.0")
	cfgIn.NodeKey, cfgOut.NodeKey = in, out
	eIn, eOut := startEngine(t, cfgIn), startEngine(t, cfgOut)
	logIn, logOut := collect(eIn), collect(eOut)

	logIn.wait(t, 60*time.Second, "Installed (inside the rollout)", isInstalled)
	skip := logOut.wait(t, 60*time.Second, "NotRolledOut", func(ev Event) bool { _, ok := ev.(NotRolledOut); return ok }).(NotRolledOut)
	if skip.ManifestID != p.Manifest.ID || skip.Rollout != 50 || skip.Version != "1.1.0" {
		t.Fatalf("NotRolledOut %+v", skip)
	}
	if n := logOut.count(func(ev Event) bool { _, ok := ev.(ReleaseFound); return ok }); n != 0 {
		t.Fatalf("the node outside the rollout started %d downloads", n)
	}
	if b, _ := os.ReadFile(cfgOut.Target); bytes.Equal(b, want) {
		t.Fatal("the node outside the rollout installed the release")
	}

	// The same manifest at 100 %: the second node comes in.
	testPublish(t, key, boot, artifact, "", func(pc *PublishConfig) {
		pc.Manifest, pc.Version, pc.Rollout, pc.Force = p.Manifest.Raw, "", 100, true
	})
	logOut.wait(t, 60*time.Second, "Installed (after the rollout was raised)", isInstalled)
	if b, _ := os.ReadFile(cfgOut.Target); !bytes.Equal(b, want) {
		t.Fatal("target differs from the release after the rollout was raised")
	}
}
