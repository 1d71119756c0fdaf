package release_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/rpe-project/engine/release"
)

// A publisher signs a manifest and a record; a node checks both and the file.
func Example() {
	sk := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // use GenerateSecretKey
	artifact := bytes.Repeat([]byte("rpe"), 100_000)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// Publisher.
	m, _ := release.BuildManifest(bytes.NewReader(artifact), release.BuildOptions{
		App: "myapp", Platform: "linux-amd64", Version: "1.2.3", Created: created,
	})
	sm, _ := release.SignManifest(m, sk)
	rec, _ := release.NewSignedPacket(sk, []release.Entry{{
		App: m.App, Channel: m.Channel, Platform: m.Platform, Version: m.Version, ManifestID: sm.ID, Size: m.Size,
	}}, release.SeqNow(created))

	// Node, which knows only the public key and its own target.
	pub := release.PublicKeyOf(sk)
	target := release.Target{App: "myapp", Channel: "stable", Platform: "linux-amd64"}
	got, err := release.DecodeRelay(rec.EncodeRelay())
	if err != nil || got.PublicKey != pub {
		panic(err)
	}
	entry, _ := got.Lookup(target)
	man, err := release.ParseManifest(sm.Raw, pub, release.Limits{})
	if err != nil || man.ID != entry.ManifestID {
		panic(err)
	}
	fmt.Println(man.Manifest.Check(target, created.Add(time.Hour)))
	fmt.Println(release.VerifyFile(bytes.NewReader(artifact), man.Manifest))
	fmt.Println(entry.Version, man.Manifest.NumChunks(), "chunks")
	// Output:
	// <nil>
	// <nil>
	// 1.2.3 2 chunks
}
