package engine

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

func TestFetchAndLookup(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	pub := release.PublicKeyOf(key).String()
	artifact, want := testArtifact(t, 600_000)
	p := testPublish(t, key, boot, artifact, "1.2.0", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The publisher announces itself in the background once it holds the
	// release, so the first lookups may count no peer yet: look again.
	var l *Listing
	for {
		var err error
		l, err = Lookup(ctx, LookupConfig{PublisherKey: pub, CountPeers: true, Bootstrap: boot,
			ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Entries) != 1 || l.Entries[0].Peers >= 1 || ctx.Err() != nil {
			break
		}
	}
	if len(l.Entries) != 1 || l.Entries[0].App != "app" || l.Entries[0].Version.String() != "1.2.0" ||
		l.Entries[0].ManifestID != p.Manifest.ID || l.Entries[0].Peers < 1 || l.Packet.Seq != p.Packet.Seq {
		t.Fatalf("lookup: %+v", l.Entries)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "app.new")
	var progress int
	f, err := Fetch(ctx, FetchConfig{PublisherKey: pub, App: "app", Out: out, Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", OnEvent: func(ev Event) {
			if _, ok := ev.(Progress); ok {
				progress++
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("fetched file differs (%v)", err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("fetched file mode: %v, %v; want 0755", fi.Mode(), err)
	}
	if f.Version != "1.2.0" || f.ManifestID != p.Manifest.ID || f.Size != int64(len(want)) || progress == 0 {
		t.Fatalf("fetched %+v, %d progress events", f, progress)
	}

	// Refusals write nothing.
	_, err = Fetch(ctx, FetchConfig{PublisherKey: pub, App: "other", Out: filepath.Join(dir, "x"), Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0"})
	if !errors.Is(err, ErrUnknownApp) {
		t.Errorf("unknown app: %v", err)
	}
	otherKey := release.PublicKeyOf(testKey(t)).String()
	_, err = Fetch(ctx, FetchConfig{PublisherKey: otherKey, App: "app", Out: filepath.Join(dir, "x"), Bootstrap: boot,
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0"})
	if !errors.Is(err, ErrNoRecord) {
		t.Errorf("unknown key: %v", err)
	}
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, err = Fetch(ctx, FetchConfig{PublisherKey: pub, App: "app", Out: filepath.Join(dir, "x"),
		Bootstrap: []string{silent.LocalAddr().String()}, ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0",
		LookupTimeout: 3 * time.Second})
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("unreachable bootstrap: %v", err)
	}
	names, _ := os.ReadDir(dir)
	var left []string
	for _, n := range names {
		left = append(left, n.Name())
	}
	if !slices.Equal(left, []string{"app.new"}) {
		t.Errorf("files left: %v", left)
	}
}
