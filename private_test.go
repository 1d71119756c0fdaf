package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

func secretText(t *testing.T) string {
	t.Helper()
	s, err := release.GenerateSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s.String()
}

func refusedWith(target error) func(Event) bool {
	return func(ev Event) bool {
		r, ok := ev.(Refused)
		return ok && r.What == RefusedRecord && errors.Is(r.Reason, target)
	}
}

// TestPrivateAndPublicUnderOneKey: one key publishes a public release and a
// private one of the same app. A public node installs the public release, a
// node with the secret the private one, and a node with the wrong secret is
// told so and installs nothing; Lookup lists each side only to its own.
func TestPrivateAndPublicUnderOneKey(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	pub := release.PublicKeyOf(key)
	secret, wrong := secretText(t), secretText(t)

	pubArt, pubWant := testArtifact(t, 200_000)
	privArt, privWant := testArtifact(t, 250_000)
	testPublish(t, key, boot, pubArt, "1.1.0", nil)
	testPublish(t, key, boot, privArt, "1.2.0", func(pc *PublishConfig) { pc.SharedSecret = secret })

	publicCfg := testConfig(t, pub, boot, "1.0.0")
	insiderCfg := testConfig(t, pub, boot, "1.0.0")
	insiderCfg.SharedSecret = secret
	wrongCfg := testConfig(t, pub, boot, "1.0.0")
	wrongCfg.SharedSecret = wrong
	publicLog := collect(startEngine(t, publicCfg))
	insiderLog := collect(startEngine(t, insiderCfg))
	wrongLog := collect(startEngine(t, wrongCfg))

	publicLog.wait(t, 60*time.Second, "Installed", isInstalled)
	insiderLog.wait(t, 60*time.Second, "Installed", isInstalled)
	for _, c := range []struct {
		cfg  Config
		want []byte
	}{{publicCfg, pubWant}, {insiderCfg, privWant}} {
		if got, _ := os.ReadFile(c.cfg.Target); !bytes.Equal(got, c.want) {
			t.Fatalf("node with secret %q installed the wrong release", c.cfg.SharedSecret)
		}
	}
	wrongLog.wait(t, 30*time.Second, "record refused for the wrong secret", refusedWith(release.ErrWrongSecret))
	if n := wrongLog.count(func(ev Event) bool { _, ok := ev.(ReleaseFound); return ok }); n != 0 {
		t.Fatalf("node with the wrong secret found %d releases", n)
	}
	assertUnchanged(t, wrongCfg)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct{ secret, version string }{{"", "1.1.0"}, {secret, "1.2.0"}} {
		l, err := Lookup(testCtx(ctx, nil), LookupConfig{PublisherKey: pub.String(), SharedSecret: c.secret, Bootstrap: boot,
			ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0"})
		if err != nil || len(l.Entries) != 1 || l.Entries[0].Version.String() != c.version {
			t.Fatalf("Lookup with secret %q: %+v, %v; want %s only", c.secret, l, err, c.version)
		}
	}
}

// TestPrivateOnlyNeedsSecret: a node without a secret, facing a record with
// private entries only, is told it needs the secret.
func TestPrivateOnlyNeedsSecret(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	art, _ := testArtifact(t, 100_000)
	testPublish(t, key, boot, art, "1.1.0", func(pc *PublishConfig) { pc.SharedSecret = secretText(t) })
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	log := collect(startEngine(t, cfg))
	log.wait(t, 30*time.Second, "record refused for want of the secret", refusedWith(release.ErrNeedSecret))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Lookup(testCtx(ctx, nil), LookupConfig{PublisherKey: release.PublicKeyOf(key).String(), Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0"})
	if !errors.Is(err, release.ErrNeedSecret) {
		t.Fatalf("Lookup without the secret: %v, want ErrNeedSecret", err)
	}
	assertUnchanged(t, cfg)
}

// TestFetchPrivate: rpe fetch of a private-only release needs the secret.
// Without it Fetch says so and writes nothing; with it the release arrives
// from the private swarm, whose seed serves only a peer that proves the
// secret.
func TestFetchPrivate(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	secret := secretText(t)
	art, want := testArtifact(t, 150_000)
	testPublish(t, key, boot, art, "1.1.0", func(pc *PublishConfig) { pc.SharedSecret = secret })
	pub := release.PublicKeyOf(key).String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	out := filepath.Join(dir, "app.new")
	fc := FetchConfig{PublisherKey: pub, App: "app", Out: out, Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0"}
	if _, err := Fetch(testCtx(ctx, nil), fc); !errors.Is(err, release.ErrNeedSecret) {
		t.Fatalf("Fetch without the secret: %v, want ErrNeedSecret", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("Fetch without the secret left %d entries in %s", len(left), dir)
	}
	fc.SharedSecret = secret
	f, err := Fetch(testCtx(ctx, nil), fc)
	if err != nil {
		t.Fatalf("Fetch with the secret: %v", err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) || f.Version != "1.1.0" {
		t.Fatalf("Fetch with the secret: %+v, file equal %v (%v)", f, bytes.Equal(got, want), err)
	}
}
