package engine

import (
	"context"
	"testing"
	"time"

	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
)

// TestPublishAndLookupAfterChurn is the join-and-leave case: a fresh DHT
// node, a publisher, then 8 nodes that join the DHT (and are handed out by
// the first node and held in the publisher's table) and leave. Publishing
// 2.0.0 and 3.0.0 afterwards, and looking each up, must succeed within the
// default budgets and with production query timeouts: the departed nodes
// cost one query timeout each at most once, not the whole budget.
func TestPublishAndLookupAfterChurn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dhtNode, err := network.New(ctx, network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", NoBootstrap: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dhtNode.Close()
	boot := []string{dhtNode.DHTAddr().String()}
	key := testKey(t)
	pub := release.PublicKeyOf(key)
	publish := func(version string) *Publisher {
		t.Helper()
		artifact, _ := testArtifact(t, 10_000)
		start := time.Now()
		p, err := Publish(ctx, PublishConfig{
			Key: key, Artifact: artifact, Version: version, App: "app", Bootstrap: boot,
			ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", StateDir: t.TempDir(),
			Logger: testLogger("publisher " + version),
		})
		if err != nil {
			t.Fatalf("publish %s after %v: %v", version, time.Since(start), err)
		}
		t.Logf("published %s in %v", version, time.Since(start))
		t.Cleanup(func() { p.Stop(context.Background()) })
		return p
	}
	lookup := func(want string) {
		t.Helper()
		start := time.Now()
		l, err := Lookup(ctx, LookupConfig{PublisherKey: pub.String(), Bootstrap: boot,
			ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", Logger: testLogger("lookup")})
		if err != nil {
			t.Fatalf("lookup of %s after %v: %v", want, time.Since(start), err)
		}
		if len(l.Entries) != 1 || l.Entries[0].Version.String() != want {
			t.Fatalf("lookup found %+v, want %s", l.Entries, want)
		}
		t.Logf("looked up %s in %v", want, time.Since(start))
	}

	publish("1.0.0")
	// 8 nodes join, read the record (so the publisher and the first node
	// learn them), and the first node pings its table, as `rpe dht-node`
	// does every 10 s: they are now "good" and handed out.
	var leavers []*network.Node
	for range 8 {
		n, err := network.New(ctx, network.Config{ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", Bootstrap: boot})
		if err != nil {
			t.Fatal(err)
		}
		leavers = append(leavers, n)
		if err := n.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range leavers {
		if _, _, err := n.GetRecord(ctx, pub); err != nil {
			t.Fatalf("a joining node cannot read the record: %v", err)
		}
	}
	if err := dhtNode.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if got := dhtNode.Stats().GoodNodes; got < len(leavers) {
		t.Fatalf("the first node holds %d good nodes, want the %d joiners and more", got, len(leavers))
	}
	for _, n := range leavers {
		n.Close()
	}
	publish("2.0.0")
	lookup("2.0.0")
	publish("3.0.0")
	lookup("3.0.0")
}
