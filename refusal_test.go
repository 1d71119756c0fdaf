package engine

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rpe-project/engine/actors/resolver"
	"github.com/rpe-project/engine/network"
	"github.com/rpe-project/engine/release"
	"github.com/rpe-project/engine/wire"
)

// attacker is a bare node on loopback that speaks the wire protocol.
func attacker(t *testing.T, boot []string) (*network.Node, ed25519.PrivateKey) {
	t.Helper()
	n, err := network.New(context.Background(), network.Config{
		ListenDHT: "127.0.0.1:0", ListenQUIC: "127.0.0.1:0", Bootstrap: boot,
		QueryResendDelay: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	return n, testKey(t)
}

func assertUnchanged(t *testing.T, cfg Config) {
	t.Helper()
	b, err := os.ReadFile(cfg.Target)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "old version "+cfg.CurrentVersion {
		t.Fatal("target was changed")
	}
}

func TestRefuseRecordFromOtherKey(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	e := startEngine(t, cfg)
	log := collect(e)

	// A record naming a newer release, signed by somebody else, gossiped
	// straight to the node.
	mallory := testKey(t)
	v, _ := release.ParseVersion("9.9.9")
	pkt, err := release.NewSignedPacket(mallory, []release.Entry{{
		App: "app", Channel: "stable", Platform: release.DefaultPlatform(), Version: v, Size: 10,
	}}, release.SeqNow(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	gossip(t, boot, e, pkt)
	ev := log.wait(t, 20*time.Second, "Refused record", func(ev Event) bool {
		r, ok := ev.(Refused)
		return ok && r.What == RefusedRecord
	})
	if !errors.Is(ev.(Refused).Reason, resolver.ErrWrongKey) {
		t.Fatalf("refused for %v, want ErrWrongKey", ev.(Refused).Reason)
	}
	if n := log.count(func(ev Event) bool { _, ok := ev.(ReleaseFound); return ok }); n != 0 {
		t.Fatalf("%d ReleaseFound events for a foreign record", n)
	}
	assertUnchanged(t, cfg)
}

func TestRefuseManifestForOtherApp(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	artifact, _ := testArtifact(t, 300000)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	// A genuine manifest for app "other", which the record (also genuine)
	// names for app "app": mix-and-match must be refused.
	p := testPublish(t, key, boot, artifact, "1.1.0", func(pc *PublishConfig) { pc.App = "other" })
	man := p.Manifest.Manifest
	pkt, err := release.MergeEntry(key, p.Packet, release.Entry{
		App: "app", Channel: man.Channel, Platform: man.Platform, Version: man.Version,
		ManifestID: p.Manifest.ID, Size: man.Size,
	}, p.Packet.Seq+1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.node.PutRecord(ctx, pkt); err != nil {
		t.Fatal(err)
	}
	e := startEngine(t, cfg)
	log := collect(e)
	ev := log.wait(t, 60*time.Second, "Refused manifest", func(ev Event) bool {
		r, ok := ev.(Refused)
		return ok && r.What == RefusedManifest
	})
	if !errors.Is(ev.(Refused).Reason, release.ErrWrongTarget) {
		t.Fatalf("refused for %v, want ErrWrongTarget", ev.(Refused).Reason)
	}
	assertUnchanged(t, cfg)
}

func TestRefuseBelowVersionFloor(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	artifact, _ := testArtifact(t, 100000)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	// This node once accepted 2.0.0 (then was rolled back by hand): a record
	// naming 1.5.0 is a replay of an old release and must be refused.
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, "highest"), []byte("2.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testPublish(t, key, boot, artifact, "1.5.0", nil)
	e := startEngine(t, cfg)
	log := collect(e)
	ev := log.wait(t, 30*time.Second, "Refused record", func(ev Event) bool {
		r, ok := ev.(Refused)
		return ok && r.What == RefusedRecord
	})
	if !errors.Is(ev.(Refused).Reason, resolver.ErrBelowFloor) {
		t.Fatalf("refused for %v, want ErrBelowFloor", ev.(Refused).Reason)
	}
	assertUnchanged(t, cfg)
}

// corruptSeeder serves the genuine manifest and corrupted chunks.
type corruptSeeder struct{ sm *release.SignedManifest }

func (c corruptSeeder) Manifest(id release.ManifestID) ([]byte, error) {
	if id != c.sm.ID {
		return nil, wire.ErrNotFound
	}
	return c.sm.Raw, nil
}

func (c corruptSeeder) Chunk(id release.ManifestID, index uint32, buf []byte) ([]byte, error) {
	m := c.sm.Manifest
	if id != c.sm.ID {
		return nil, wire.ErrNotFound
	}
	if int(index) >= m.NumChunks() {
		return nil, wire.ErrBadIndex
	}
	b := make([]byte, m.ChunkLen(int(index)))
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b, nil
}

func (c corruptSeeder) Notify(wire.NodeID, wire.Message) {}

func TestRefuseCorruptChunk(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	artifact, want := testArtifact(t, 2<<20)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	// An honest but slow publisher, and a fast liar in the same swarm.
	p := testPublish(t, key, boot, artifact, "1.1.0", func(pc *PublishConfig) { pc.UploadRate = 512 << 10 })
	an, ak := attacker(t, boot)
	ln, err := wire.Listen(an.Transport(), ak, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			// Like any seed, the liar says first that it holds the whole
			// release, so it is asked for chunks, and keeps its peer slot.
			go func() {
				if err := c.Send(context.Background(), &wire.Hello{Releases: []wire.HaveSet{{ID: p.Manifest.ID, Complete: true}}}); err != nil {
					return
				}
				c.Serve(context.Background(), corruptSeeder{p.Manifest})
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := an.Announce(ctx, release.SwarmIDOf(p.Manifest.ID)); err != nil {
		t.Fatal(err)
	}

	e := startEngine(t, cfg)
	log := collect(e)
	ev := log.wait(t, 60*time.Second, "Refused chunk", func(ev Event) bool {
		r, ok := ev.(Refused)
		return ok && r.What == RefusedChunk
	})
	if !errors.Is(ev.(Refused).Reason, release.ErrChunkMismatch) {
		t.Fatalf("refused for %v, want ErrChunkMismatch", ev.(Refused).Reason)
	}
	log.wait(t, 90*time.Second, "Installed", isInstalled)
	got, _ := os.ReadFile(cfg.Target)
	if string(got) != string(want) {
		t.Fatal("installed bytes differ from the published artifact")
	}
}

// gossip sends a signed record to a node the way a peer would.
func gossip(t *testing.T, boot []string, e *Engine, pkt *release.SignedPacket) {
	t.Helper()
	an, ak := attacker(t, boot)
	addr, err := net.ResolveUDPAddr("udp", e.Status().QUICAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := wire.Dial(ctx, an.Transport(), addr, ak, wire.NodeID{}, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(wire.CodeNone, "") })
	if err := conn.Send(ctx, &wire.Hello{Version: wire.ProtocolVersion}); err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(ctx, &wire.Record{Relay: pkt.EncodeRelay()}); err != nil {
		t.Fatal(err)
	}
}

// TestRefuseReplayedRecord: once a node holds a record, an older one (a
// genuine record, replayed by a peer) is refused and changes nothing.
func TestRefuseReplayedRecord(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	artifact, _ := testArtifact(t, 100000)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	cfg.Apply = ApplyOnRestart
	old := testPublish(t, key, boot, artifact, "1.1.0", nil)
	oldPacket := old.Packet
	old.Stop(context.Background())
	artifact2, _ := testArtifact(t, 100000)
	testPublish(t, key, boot, artifact2, "1.2.0", nil)
	e := startEngine(t, cfg)
	log := collect(e)
	log.wait(t, 60*time.Second, "Installed 1.2.0", func(ev Event) bool {
		i, ok := ev.(Installed)
		return ok && i.Version == "1.2.0"
	})
	gossip(t, boot, e, oldPacket)
	ev := log.wait(t, 20*time.Second, "Refused record", func(ev Event) bool {
		r, ok := ev.(Refused)
		return ok && r.What == RefusedRecord
	})
	if !errors.Is(ev.(Refused).Reason, resolver.ErrOlderSeq) {
		t.Fatalf("refused for %v, want ErrOlderSeq", ev.(Refused).Reason)
	}
	if n := log.count(func(ev Event) bool { f, ok := ev.(ReleaseFound); return ok && f.Version == "1.1.0" }); n != 0 {
		t.Fatal("the replayed record started a download of 1.1.0")
	}
}
